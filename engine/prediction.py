"""Predicting new images with a trained checkpoint (predict.py): the image files to read,
the network and the calibration stored in its checkpoint (engine/calibration.py; made from the
training data on first use, engine/calibrating.py),
each image converted as the trial's test images were (grey or RGB, shorter side resized to
the trained size, centre square, normalized), every scorer of scorers.py, and the rows as CSV
or JSON. An image that cannot be read (damaged, not an image, over PIL's decompression-bomb
limit) is skipped with its reason; the network's anchors are the calibration's."""
import csv
import io
import json
import os
import re
import struct
import sys
import warnings

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from core.errors import UserError
from datasets.folder import prepare_image
from engine.calibrating import calibrate_and_store, can_calibrate
from engine.calibration import SCORERS, calibration_problem
from engine import commands
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
    """(network in eval mode with its anchors, the checkpoint's calibration record). A checkpoint
    without one, or with an invalid one, gets one made from its training data and stored
    (engine/calibrating.py); one that does not record its data is refused with the eval command."""
    ckpt = read_checkpoint(path, map_location=device)
    method = CAC if "anchors" in ckpt["net"] or "means" in ckpt["net"] else CLOSED_SET
    if "optimizer" in ckpt and "step" in ckpt:  # engine/resume.py's schema: never rewritten here
        best = path.replace(LAST[method] + ".pth", EVALUATED[method] + ".pth")
        raise UserError(f"{path} is the state of an unfinished run that --continue reads, not a best checkpoint: "
                        f"predict with one the run saved, such as {best}")
    classify = ckpt["net"].get("classify.weight")
    num_classes = classify.shape[0] if torch.is_tensor(classify) and classify.dim() == 2 else None
    cal = ckpt.get("calibration")
    problem = None if cal is None else calibration_problem(cal, method, num_classes)
    if (cal is None or problem) and not can_calibrate(ckpt):
        what = "no calibration" if cal is None else f"an invalid calibration ({problem})"
        raise UserError(f"checkpoint {path} has {what} (class names, anchors, threshold, preprocessing) and "
                        f"does not record its training data: evaluate it once with {evaluate_command(ckpt, path)}")
    if problem:
        print(f"warning: ignoring the calibration stored in {path} ({problem}); making it again", file=sys.stderr)
    if cal is None or problem:
        cal = calibrate_and_store(path, ckpt, method, device, data_root, split_file, cache_dir)
    net = build_network(NetworkConfig(**cal["network"]), method).to(device)
    load_checkpoint(path, net, ckpt)
    if method == CAC:
        net.set_anchors(cal["anchor_means"]["means"])
    return net.eval(), cal


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
