"""Classify new images with a trained, evaluated checkpoint: a known class by name, or `unknown`.

    python predict.py networks/weights/Digits/Digits_0_demoCACclassifierAnchorLoss.pth my_images/
    python predict.py CHECKPOINT a.png b.jpg --format json --out predictions.json

The evaluation scripts store in each checkpoint what this needs (see engine/calibration.py):
the class names, the class-mean anchors of a CAC network, the image size, channels and
normalization of the trial, and per scorer the threshold that accepts 95% of the known
validation images. An image is `unknown` when its unknown score exceeds the threshold
(`--threshold` overrides it). Images of any size and mode are converted as the test images
were: grey or RGB, shorter side resized to the trained size, centre square, normalized.

An image that cannot be read (damaged, not an image, over PIL's decompression-bomb limit)
is skipped with one warning line; the others are predicted. Everything that would stop the
run (the checkpoint, its calibration, --threshold, --out) is checked before any image is.
"""
import argparse
import csv
import io
import json
import math
import os
import re
import struct
import sys
import warnings

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from datasets.folder import prepare_image
from engine.calibration import calibration_problem
from engine.cli import resolve_device, run_cli
from core.errors import UserError
from core.files import atomic_write, ensure_writable
from networks import closedSetClassifier, load_checkpoint, openSetClassifier, read_checkpoint
from scorers import cac_scorers, ce_scorers

BATCH = 64  # images per forward pass: bounds memory for folders of any size


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Predict a known class or 'unknown' for new images")
    p.add_argument("checkpoint", help="a .pth file evaluated once by eval_cacOpenset.py / eval_closedSet.py")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--threshold", type=float, default=None,
                   help="unknown-score threshold: above it an image is 'unknown' (default: the one stored by "
                        "evaluation, accepting 95%% of the known validation images)")
    p.add_argument("--scorer", default=None,
                   help="cac or min_distance (CAC networks), max_softmax or max_logit (cross-entropy) "
                        "(default: the paper's scorer of the checkpoint's method)")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default: csv)")
    p.add_argument("--out", default=None, help="write the predictions to this file (default: print them)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available, else CPU (default: auto)")
    return p.parse_args(argv)


def find_images(paths):
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


def check_output_args(args):
    """--threshold and --out, before any work: a NaN threshold would call every image known."""
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise UserError(f"--threshold {args.threshold}: give a finite number (an image whose unknown score is "
                        f"above it is 'unknown')")
    if args.out is None:
        return
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a folder; give a file name, e.g. "
                        f"{os.path.join(args.out, 'predictions.' + args.format)}")
    try:
        ensure_writable(os.path.dirname(args.out) or ".")
    except UserError as e:
        raise UserError(f"--out {args.out}: {e}") from None


def evaluate_command(ckpt):
    """The eval command that calibrates the file `ckpt` was read from (the one a user needs)."""
    cac = "anchors" in ckpt["net"] or "means" in ckpt["net"]
    script = "eval_cacOpenset.py" if cac else "eval_closedSet.py"
    train_args = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    how = (f" -dataset {ckpt['dataset']} --start_trial {ckpt['trial']} --num_trials 1 "
           f"--name '{train_args.get('name', '')}'") if "dataset" in ckpt and "trial" in ckpt else " ..."
    return f"`python {script}{how}` (that calibrates the AnchorLoss / closedSetClassifier file of a trial)"


def load_predictor(path, device):
    """(network in eval mode with its evaluation anchors, the checkpoint's calibration record);
    a missing or invalid calibration is refused with the eval command that stores one."""
    ckpt = read_checkpoint(path, map_location=device)
    cal = ckpt.get("calibration")
    if cal is None:
        raise UserError(f"checkpoint {path} has no calibration (class names, anchors, threshold, preprocessing): "
                        f"evaluate it once with {evaluate_command(ckpt)}")
    method = "CAC" if "anchors" in ckpt["net"] or "means" in ckpt["net"] else "ClosedSet"
    classify = ckpt["net"].get("classify.weight")
    num_classes = classify.shape[0] if torch.is_tensor(classify) and classify.dim() == 2 else None
    problem = calibration_problem(cal, method, num_classes)
    if problem:
        raise UserError(f"checkpoint {path} holds an invalid calibration ({problem}): evaluate it again with "
                        f"{evaluate_command(ckpt)}, which stores a new one")
    network_class = openSetClassifier if method == "CAC" else closedSetClassifier
    net = network_class(**cal["network"]).to(device)
    load_checkpoint(path, net, ckpt)
    if method == "CAC":
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
    score_fn = (lambda out: cac_scorers(out[1])) if cal["method"] == "CAC" else ce_scorers
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
        predicted, scores = score_fn(net(torch.stack(images).to(device)))[scorer]
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
    if fmt == "json":
        return json.dumps({**meta, "predictions": rows}, indent=1, allow_nan=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["image", "prediction", "score", "closest_class"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv=None):
    args = parse_args(argv)
    check_output_args(args)
    if not os.path.isfile(args.checkpoint):
        raise UserError(f"checkpoint not found: {args.checkpoint}; give the .pth file training wrote "
                        f"under networks/weights/<dataset>/")
    files = find_images(args.images)
    device = resolve_device(args.device)
    net, cal = load_predictor(args.checkpoint, device)
    scorer = args.scorer or cal["scorer"]
    if scorer not in cal["thresholds"]:
        raise UserError(f"--scorer {scorer}: a {cal['method']} checkpoint offers {', '.join(cal['thresholds'])}")
    threshold = cal["thresholds"][scorer] if args.threshold is None else args.threshold
    rows, skipped = predict(net, cal, files, scorer, threshold, device, args.checkpoint)
    if not rows:
        raise UserError(f"{skipped[0]}; no image could be read ({len(skipped)} tried): give image files "
                        f"PIL can open")
    for reason in skipped:
        print(f"warning: {reason}; skipped", file=sys.stderr)
    meta = {"checkpoint": args.checkpoint, "scorer": scorer, "threshold": threshold,
            "threshold_source": "--threshold" if args.threshold is not None else
            f"evaluation: {100 * cal['accept_rate']:.0f}% of known validation images accepted",
            "score": "larger = more likely unknown"}
    text = render(rows, args.format, meta)
    if args.out:
        write_predictions(text, args.out)
        print(f"{len(rows)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return rows


def write_predictions(text, path):
    try:
        with atomic_write(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UserError(f"cannot write the predictions to {path} ({e.strerror or e}); its previous content is "
                        f"unchanged: free space or give another --out") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
