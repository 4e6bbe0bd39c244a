"""Predicting new images with a checkpoint (predict.py): its network and calibration (made on first use), the rows."""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import struct
import sys
import time
import warnings

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from core.errors import UserError
from datasets.folder import prepare_image
from datasets.trial import OpenSetData
from engine import commands
from engine.calibration import SCORERS, calibration_path, embedded_calibration, read_calibration, write_calibration
from engine.cli import seed_everything, with_trained_shape
from engine.evaluation import TrialRun, loaded_network
from networks.checkpoint import read_checkpoint
from networks.config import NetworkConfig
from networks.weights import CAC, CROSS_ENTROPY, EVALUATED, LAST

BATCH = 64  # images per forward pass: bounds memory for folders of any size


def find_images(paths):
    """The image files of `paths` (files, and folders searched recursively in sorted order)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                found = [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
                for other in (f for f in found if not os.path.isfile(f)):  # reading a named pipe would wait forever
                    print(f"warning: {other} is not a regular file (a named pipe, socket or device); skipped",
                          file=sys.stderr)
                files += [f for f in found if os.path.isfile(f)]
        elif os.path.isfile(path):
            files.append(path)
        else:  # a named pipe that exists is not "no such" file
            raise UserError(f"{path} is not a regular file or folder (a named pipe, socket or device): give image files"
                            f" or folders" if os.path.exists(path) else f"no such image file or folder: {path}")
    if not files:
        raise UserError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in {', '.join(paths)}")
    return files


def evaluate_command(ckpt, path):
    """The eval command that calibrates checkpoint `path`: its run from the checkpoint, else from its file name."""
    method = CAC if "anchors" in ckpt["net"] or "means" in ckpt["net"] else CROSS_ENTROPY
    script, suffix = commands.EVAL_SCRIPTS[method], EVALUATED[method]
    args = ckpt["args"] if isinstance(ckpt.get("args"), dict) else {}
    named = re.fullmatch(r"(.+?)_(\d+)_(.*)" + re.escape(suffix) + r"\.pth", os.path.basename(path))
    dataset, trial = ckpt.get("dataset", named and named[1]), ckpt.get("trial", named and int(named[2]))
    if dataset is None or trial is None:
        return f"`python {script} ...` (it calibrates the {suffix}.pth file of a trial)"
    name = args.get("name", named[3] if named else "")
    return f"`{commands.evaluate_command(script, {**args, 'dataset': dataset, 'name': name}, trial)}`"


def load_predictor(path, device, data_root=None, split_file=None, cache_dir=None):
    """(network with its anchors, calibration): the one beside the checkpoint, else inside it, else made now."""
    ckpt, digest = read_checkpoint(path, map_location=device, with_digest=True)
    method = CAC if "anchors" in ckpt["net"] or "means" in ckpt["net"] else CROSS_ENTROPY
    if "optimizer" in ckpt and "end_epoch" in ckpt:  # ...Last.pth (engine/continuing.py): no calibration for it
        raise UserError(f"{path} is the state a training run keeps for --continue (finished or not), not one of the "
                        f"checkpoints it saves for use: predict with one of those, such as "
                        f"{path.replace(LAST[method] + '.pth', EVALUATED[method] + '.pth')}")
    classify = ckpt["net"].get("classify.weight")  # the network's class count, for the calibration to match
    num_classes = classify.shape[0] if torch.is_tensor(classify) and classify.dim() == 2 else None
    cal, problem = read_calibration(path, digest, method, num_classes)
    cal = cal or embedded_calibration(ckpt, method, num_classes)
    if cal is None:  # made now, with the network (and anchors) that made it
        return make_calibration(path, (ckpt, digest), method, device, problem, data_root, split_file, cache_dir)
    net = loaded_network(NetworkConfig(**cal["network"]), method, path, ckpt, device)
    if method == CAC:
        net.set_anchors(torch.tensor(cal["anchor_means"]["means"], dtype=torch.float64))
    return net, cal


def make_calibration(path, checkpoint, method, device, problem, data_root, split_file, cache_dir):
    """(network with its anchors, calibration) of checkpoint `path`, made as an evaluation would, from its data."""
    args = checkpoint[0].get("args")
    if not (isinstance(args, dict) and isinstance(args.get("dataset"), str) and isinstance(args.get("trial"), int)):
        what = f"no usable calibration ({problem})" if problem else "no calibration (class names, anchors, thresholds)"
        raise UserError(f"checkpoint {path} has {what} and does not record its training data: evaluate it once with "
                        f"{evaluate_command(checkpoint[0], path)}")
    if problem:
        print(f"warning: {problem}; making it again", file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):  # predict.py's stdout is the predictions
        args = training_args(checkpoint[0], path, data_root, split_file, cache_dir)
        seed_everything(args.seed)
        start = time.perf_counter()
        try:
            data = OpenSetData.from_args(args, args.trial)
        except UserError as e:
            raise UserError(f"checkpoint {path} has no calibration yet, and making it needs the data it was trained "
                            f"on: {e} (predict.py --data_root/--split_file: where that data is now)") from None
        run = TrialRun(args, data, method, path, device, checkpoint)
        if method == CAC:
            run.place_anchors()
        cal = run.calibrate()
    print(f"calibration of {path} made in {time.perf_counter() - start:.1f} s from {len(data.train_idx)} training "
          f"and {len(data.val_idx)} validation images of {data.name} trial {data.trial}", file=sys.stderr)
    if write_calibration(path, cal):
        print(f"calibration written to {calibration_path(path)}", file=sys.stderr)
    return run.net, cal


def training_args(ckpt, path, data_root=None, split_file=None, cache_dir=None):
    """The training run's arguments; a relative --data_root/--split_file is looked for where it ran first."""
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
    return with_trained_shape(args, ckpt, path)  # the image shape it was trained on (an older run's args lack it)


class UnreadableImage(Exception):
    """An image file that is skipped: the message says which and why."""


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
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as e:  # PIL's, on damaged files
        raise UnreadableImage(f"cannot read image {path} ({type(e).__name__}: {e})".splitlines()[0][:300]) from None


@torch.no_grad()
def predict(net, cal, files, scorer, threshold, device, checkpoint="the checkpoint"):
    """([{image, prediction, score, closest_class}] of the images read, in order; [why each other was skipped])."""
    prep, names = cal["preprocessing"], cal["class_names"]
    transform = T.Compose([T.ToTensor(), T.Normalize(prep["mean"], prep["std"])])
    rows, skipped = [], []
    for start in range(0, len(files), BATCH):
        images, readable = [], []
        for path in files[start:start + BATCH]:
            try:
                images.append(read_image(path, prep, transform))
                readable.append(path)
            except UnreadableImage as e:
                skipped.append(str(e))
        if images:
            predicted, scores = SCORERS[cal["method"]].score(net(torch.stack(images).to(device)))[scorer]
            rows += [{"image": path, "prediction": names[c] if s <= threshold else "unknown", "score": s,
                      "closest_class": names[c]} for path, c, s in zip(readable, predicted.tolist(), scores.tolist())]
    overflow = next((row["image"] for row in rows if not math.isfinite(row["score"])), None)
    if overflow:  # never print a NaN score (not JSON) or a class chosen by it
        raise UserError(f"checkpoint {checkpoint} gives a non-finite score (NaN or inf) for image {overflow}: "
                        f"its weights overflow; train it again or use another checkpoint")
    return rows, skipped


def render(rows, fmt, meta):
    if fmt == "json":
        return json.dumps({**meta, "predictions": rows}, indent=1, allow_nan=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["image", "prediction", "score", "closest_class"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
