"""Predicting new images with a trained checkpoint (predict.py): the image files to read, the
network and its calibration (engine/calibration.py: the one kept beside the checkpoint, or made
on first use from the training data the checkpoint records, the same computation as an
evaluation's), each image converted as the trial's test images were (grey or RGB, shorter side
resized to the trained size, centre square, normalized), every scorer of scorers.py, and the
rows as CSV or JSON. An image that cannot be read (damaged, not an image, over PIL's
decompression-bomb limit) is skipped with its reason; the network's anchors are the calibration's."""
import argparse
import contextlib
import csv
import io
import json
import os
import re
import struct
import sys
import time
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from core.errors import UserError
from datasets.folder import prepare_image
from datasets.pipeline import build_loader
from datasets.trial import OpenSetData
from engine import commands
from engine.accel import default_channels_last
from engine.calibration import (SCORERS, calibration_path, calibration_record, embedded_calibration, read_calibration,
                                write_calibration)
from engine.cli import seed_everything
from engine.evaluation import anchor_pass, gather_outputs, load_network, overflow_error
from metrics import ACCEPT_RATE, acceptance_threshold
from networks.build import build_network
from networks.checkpoint import load_checkpoint, read_checkpoint
from networks.config import NetworkConfig
from networks.weights import CAC, CLOSED_SET, EVALUATED, LAST

BATCH = 64  # images per forward pass: bounds memory for folders of any size


def find_images(paths):
    """The image files of `paths` (files, and folders searched recursively in sorted order)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"no such image file or folder: {path}")
    if not files:
        raise UserError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in {', '.join(paths)}")
    return files


def evaluate_command(ckpt, path):
    """The eval command that calibrates the file `ckpt` was read from (`path`), for a checkpoint
    that does not record its training data: data set, trial and name from the checkpoint, else
    from the file's name <dataset>_<trial>_<name><suffix>.pth (the original code's files)."""
    cac = "anchors" in ckpt["net"] or "means" in ckpt["net"]
    script = "eval_cacOpenset.py" if cac else "eval_closedSet.py"
    suffix = EVALUATED[CAC if cac else CLOSED_SET]
    args = ckpt["args"] if isinstance(ckpt.get("args"), dict) else {}
    named = re.fullmatch(r"(.+?)_(\d+)_(.*)" + re.escape(suffix) + r"\.pth", os.path.basename(path))
    dataset = ckpt.get("dataset", named[1] if named else None)
    trial = ckpt.get("trial", int(named[2]) if named else None)
    if dataset is None or trial is None:
        return f"`python {script} ...` (it calibrates the {suffix}.pth file of a trial)"
    name = args.get("name", named[3] if named else "")
    return f"`{commands.evaluate_command(script, {**args, 'dataset': dataset, 'name': name}, trial)}`"


def load_predictor(path, device, data_root=None, split_file=None, cache_dir=None):
    """(network in eval mode with its anchors, its calibration): the one kept beside the checkpoint,
    else one an earlier version stored inside it, else one made now from the training data the
    checkpoint records (and written beside it); without any of these, the eval command that makes it."""
    ckpt, digest = read_checkpoint(path, map_location=device, with_digest=True)
    method = CAC if "anchors" in ckpt["net"] or "means" in ckpt["net"] else CLOSED_SET
    if "optimizer" in ckpt and "end_epoch" in ckpt:  # ...Last.pth (engine/continuing.py): no calibration for it
        best = path.replace(LAST[method] + ".pth", EVALUATED[method] + ".pth")
        raise UserError(f"{path} is the state of an unfinished run that --continue reads, not a best checkpoint: "
                        f"predict with one the run saved, such as {best}")
    classify = ckpt["net"].get("classify.weight")
    num_classes = classify.shape[0] if torch.is_tensor(classify) and classify.dim() == 2 else None
    cal, problem = read_calibration(path, digest, method, num_classes)
    cal = cal or embedded_calibration(ckpt, method, num_classes)
    if cal is None and not can_calibrate(ckpt):
        what = f"no usable calibration ({problem})" if problem else "no calibration (class names, anchors, thresholds)"
        raise UserError(f"checkpoint {path} has {what} and does not record its training data: evaluate it once with "
                        f"{evaluate_command(ckpt, path)}")
    if cal is None:
        if problem:
            print(f"warning: {problem}; making it again", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):  # predict.py's stdout is the predictions
            args = training_args(ckpt, path, data_root, split_file, cache_dir)
            cal = make_calibration(path, ckpt, digest, args, method, device)
        if write_calibration(path, cal):
            print(f"calibration written to {calibration_path(path)}", file=sys.stderr)
    net = build_network(NetworkConfig(**cal["network"]), method).to(device)
    load_checkpoint(path, net, ckpt)
    if method == CAC:
        net.set_anchors(torch.tensor(cal["anchor_means"]["means"], dtype=torch.float64))
    return net.eval(), cal


def can_calibrate(ckpt):
    """Whether the checkpoint records the training data it was made from (this project's do)."""
    args = ckpt.get("args")
    return isinstance(args, dict) and isinstance(args.get("dataset"), str) and isinstance(args.get("trial"), int)


def training_args(ckpt, path, data_root=None, split_file=None, cache_dir=None):
    """The training run's arguments, with its relative --data_root/--split_file found from the
    folder it ran in (<root>/networks/weights/<dataset>/<file>) or the working directory;
    `data_root`/`split_file` replace them; the caches go to this machine's cache folder
    (`cache_dir`, else its default), not the one training used."""
    args = argparse.Namespace(**{"workers": None, "pipeline": "torchvision", "seed": 0, "no_download": False,
                                 "split_file": None, "im_size": None, "im_channels": None,
                                 "data_root": "datasets/data", **ckpt["args"], "cache_dir": cache_dir})
    parts = os.path.abspath(path).split(os.sep)
    root = os.sep.join(parts[:-4]) if len(parts) > 4 and parts[-4:-2] == ["networks", "weights"] else None
    for key, given in (("data_root", data_root), ("split_file", split_file)):
        value = getattr(args, key)
        if given is not None:
            setattr(args, key, given)
        elif value and root and not os.path.isabs(value) and os.path.exists(os.path.join(root, value)):
            setattr(args, key, os.path.join(root, value))
    return args


def make_calibration(path, ckpt, digest, args, method, device):
    """The calibration of checkpoint `path` (its dict `ckpt`, its bytes' SHA-256 `digest`) from its
    training data, read as `args` (training_args) say: an evaluation's anchor pass and validation
    thresholds (engine/evaluation.py), without the test images."""
    seed_everything(args.seed)
    start = time.perf_counter()
    try:
        data = OpenSetData.from_args(args, args.trial)
    except UserError as e:
        raise UserError(f"checkpoint {path} has no calibration yet, and making it needs the data it was trained "
                        f"on: {e} (predict.py --data_root/--split_file: where that data is now)") from None
    net, config = load_network(path, ckpt, data, method, device)
    workers = data.cfg["num_workers"] if args.workers is None else args.workers

    def loader(dataset):
        return build_loader(dataset, data.cfg["batch_size"], False, pipeline=args.pipeline, workers=workers,
                            seed=args.seed, device=device, channels_last=default_channels_last(device))

    scorers = SCORERS[method]
    means = anchor_pass(net, data, loader, device, path)[0] if method == CAC else None
    outputs, _ = gather_outputs(net, loader(data.val_dataset()), device)
    scores = {name: s.numpy() for name, (_, s) in scorers.score(outputs).items()}
    if not all(np.isfinite(s).all() for s in scores.values()):
        raise overflow_error(path, "scores on its validation images", data.trial)
    thresholds = {name: acceptance_threshold(s, ACCEPT_RATE) for name, s in scores.items()}
    print(f"calibration of {path} made in {time.perf_counter() - start:.1f} s from {len(data.train_idx)} training "
          f"and {len(data.val_idx)} validation images of {data.name} trial {data.trial}", file=sys.stderr)
    return calibration_record(digest, method, data, config.as_dict(), scorers.paper, thresholds, ACCEPT_RATE, means)


class UnreadableImage(Exception):
    """An image file that is skipped: the message says which and why."""


# what PIL's decoders raise on damaged files, besides OSError (UnidentifiedImageError included)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)


def read_image(path, prep, transform):
    try:
        with warnings.catch_warnings():  # PIL only warns between 1x and 2x its limit: refuse both alike
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return transform(prepare_image(image, prep["im_size"], prep["im_channels"]))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"has {int(pixels[1]):,} pixels, " if pixels else "is "
        raise UnreadableImage(f"image {path} {size}over PIL's decompression-bomb limit of "
                              f"{Image.MAX_IMAGE_PIXELS:,} pixels (downscale it first)") from None
    except DECODE_ERRORS as e:
        raise UnreadableImage(f"cannot read image {path} ({type(e).__name__}: {e})".splitlines()[0][:300]) from None


@torch.no_grad()
def predict(net, cal, files, scorer, threshold, device, checkpoint="the checkpoint"):
    """([{image, prediction (class name or 'unknown'), score, closest_class}] for the images that
    could be read, in the order of `files`; [why each other image was skipped])."""
    prep = cal["preprocessing"]
    transform = T.Compose([T.ToTensor(), T.Normalize(prep["mean"], prep["std"])])
    scorers = SCORERS[cal["method"]]
    rows, skipped = [], []
    for start in range(0, len(files), BATCH):
        images, readable = [], []
        for path in files[start:start + BATCH]:
            try:
                images.append(read_image(path, prep, transform))
                readable.append(path)
            except UnreadableImage as e:
                skipped.append(str(e))
        if not images:
            continue
        predicted, scores = scorers.score(net(torch.stack(images).to(device)))[scorer]
        finite = torch.isfinite(scores)
        if not bool(finite.all()):  # never print a NaN score (not JSON) or a class chosen by it
            first = readable[int((~finite).nonzero()[0])]
            raise UserError(f"checkpoint {checkpoint} gives a non-finite score (NaN or inf) for image {first}: "
                            f"its weights overflow; train it again or use another checkpoint")
        for path, c, s in zip(readable, predicted.tolist(), scores.tolist()):
            name = cal["class_names"][c]
            rows.append({"image": path, "prediction": name if s <= threshold else "unknown", "score": s,
                         "closest_class": name})
    return rows, skipped


def render(rows, fmt, meta):
    """The predictions as a CSV table, or as a JSON object of `meta` and the rows."""
    if fmt == "json":
        return json.dumps({**meta, "predictions": rows}, indent=1, allow_nan=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["image", "prediction", "score", "closest_class"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
