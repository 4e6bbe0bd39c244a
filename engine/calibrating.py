"""Making the calibration of a checkpoint that has none (predict.py on a checkpoint right after
training, any of the ones a run saves): from the data its training recorded (the saved `args`:
data set, trial, --data_root, --split_file, image size and channels), the same computation as
an evaluation's (engine/evaluation.py): the CAC anchor means over the training split, each
scorer's threshold accepting 95% of the known validation images, the class names and
preprocessing. It is then stored in the checkpoint, atomically, under the run's lock (never
while that run trains) and only if the file still holds the weights it was made from; a
failure to store is one warning: the prediction goes on with it.
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np
import torch

from core.errors import UserError
from core.lock import RunLock
from datasets.pipeline import build_loader
from datasets.trial import OpenSetData
from engine.accel import default_channels_last
from engine.calibration import SCORERS, anchor_key, calibration_record, weights_digest
from engine.cli import seed_everything
from engine.evaluation import gather_outputs, overflow_error
from engine.recipe import use_normalization
from metrics import ACCEPT_RATE, acceptance_threshold
from networks.build import build_network
from networks.config import NetworkConfig
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from networks.weights import RUN_FILES


def can_calibrate(ckpt):
    """Whether the checkpoint records the training data it was made from (this project's do)."""
    args = ckpt.get("args")
    return isinstance(args, dict) and isinstance(args.get("dataset"), str) and isinstance(args.get("trial"), int)


def _run_root(path):
    """The folder training ran in, when `path` is <root>/networks/weights/<dataset>/<file>."""
    parts = os.path.abspath(path).split(os.sep)
    return os.sep.join(parts[:-4]) if len(parts) > 4 and parts[-4:-2] == ["networks", "weights"] else None


def training_args(ckpt, path, data_root=None, split_file=None):
    """The training run's arguments, with its relative --data_root/--split_file found from the
    folder it ran in (or the working directory); `data_root`/`split_file` replace them."""
    args = argparse.Namespace(**{"workers": None, "pipeline": "torchvision", "seed": 0, "no_download": False,
                                 "split_file": None, "im_size": None, "im_channels": None,
                                 "data_root": "datasets/data", **ckpt["args"]})
    root = _run_root(path)
    for key, given in (("data_root", data_root), ("split_file", split_file)):
        value = getattr(args, key)
        if given is not None:
            setattr(args, key, given)
        elif value and root and not os.path.isabs(value) and os.path.exists(os.path.join(root, value)):
            setattr(args, key, os.path.join(root, value))
    return args


def make_calibration(path, ckpt, args, method, device):
    """The calibration record of checkpoint `path` (its dict `ckpt`) from its training data, read
    as `args` (training_args) say."""
    seed_everything(args.seed)
    start = time.perf_counter()
    try:
        data = OpenSetData.from_args(args, args.trial)
        use_normalization(data, getattr(args, "recipe", None))  # as it trained (engine/recipe.py)
    except UserError as e:
        raise UserError(f"checkpoint {path} has no calibration yet, and making it needs the data it was trained "
                        f"on: {e} (predict.py --data_root/--split_file: where that data is now)") from None
    if ckpt.get("known_classes") is not None and sorted(ckpt["known_classes"]) != sorted(data.known):
        raise UserError(f"checkpoint {path} was trained on known classes {ckpt['known_classes']} but its split "
                        f"now has {list(data.known)}: give predict.py --split_file the split training used")
    config = NetworkConfig.for_data(data.cfg, ckpt.get("backbone", "cnn"))
    net = build_network(config, method).to(device)
    load_checkpoint(path, net, ckpt)
    net.eval()
    workers = data.cfg["num_workers"] if args.workers is None else args.workers

    def loader(dataset):
        return build_loader(dataset, data.cfg["batch_size"], False, pipeline=args.pipeline, workers=workers,
                            seed=args.seed, device=device, channels_last=default_channels_last(device))

    scorers, means, key = SCORERS[method], None, None
    if hasattr(scorers, "setup"):
        key = anchor_key(data, ckpt)
        means, _ = scorers.setup(net, loader(data.anchor_dataset()), data.num_known, device,
                                 with_flipped=data.cfg["anchor_flip"])
        if not bool(torch.isfinite(means).all()):
            raise overflow_error(path, "logits on its training images (anchor means)", data.trial)
    outputs, _ = gather_outputs(net, loader(data.val_dataset()), device)
    scores = {name: s.numpy() for name, (_, s) in scorers.score(outputs).items()}
    if not all(np.isfinite(s).all() for s in scores.values()):
        raise overflow_error(path, "scores on its validation images", data.trial)
    thresholds = {name: acceptance_threshold(s, ACCEPT_RATE) for name, s in scores.items()}
    record = calibration_record(method, data, config.as_dict(), scorers.paper, thresholds, ACCEPT_RATE,
                                None if means is None else means.cpu().numpy(), key)
    print(f"calibration of {path} made in {time.perf_counter() - start:.1f} s from {len(data.train_idx)} training "
          f"and {len(data.val_idx)} validation images of {data.name} trial {data.trial}", file=sys.stderr)
    return record


def lock_for(path, method):
    """The lock of the run that wrote `path` (training holds it while it runs), beside the file."""
    folder, name = os.path.split(path)
    suffix = next((s for s in RUN_FILES[method] if name.endswith(s + ".pth")), None)
    lock_name = f".{name[:-len(suffix) - 4]}{method}.lock" if suffix else f".{name}.lock"
    return RunLock(os.path.join(folder, lock_name), f"run {name}")


def store_made_calibration(path, record, digest, method):
    """Store `record` in the checkpoint at `path` if it still holds the weights of sha1 `digest`,
    under its run's lock; returns whether it did (else one warning line says why not)."""
    lock = lock_for(path, method)
    try:
        lock.acquire()
        try:
            ckpt = read_checkpoint(path, map_location="cpu")
            if weights_digest(ckpt["net"]) != digest:
                raise UserError(f"{path} holds other weights now")
            ckpt["calibration"] = record
            save_checkpoint(ckpt, path)
        finally:
            lock.release()
    except UserError as e:
        print(f"warning: the calibration was not stored in {path} ({e}); it was used for this prediction and is "
              f"made again next time", file=sys.stderr)
        return False
    print(f"calibration stored in {path} (evaluation refreshes it)", file=sys.stderr)
    return True


def calibrate_and_store(path, ckpt, method, device, data_root=None, split_file=None):
    """make_calibration, then store_made_calibration; returns the record."""
    args = training_args(ckpt, path, data_root, split_file)
    digest = weights_digest(ckpt["net"])
    with contextlib.redirect_stdout(sys.stderr):  # predict.py's stdout is the predictions
        record = make_calibration(path, ckpt, args, method, device)
    store_made_calibration(path, record, digest, method)
    return record
