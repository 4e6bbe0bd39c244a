"""Classify new images with a trained, evaluated checkpoint: a known class by name, or `unknown`.

    python predict.py networks/weights/Digits/Digits_0_demoCACclassifierAnchorLoss.pth my_images/
    python predict.py CHECKPOINT a.png b.jpg --format json --out predictions.json

The evaluation scripts store in each checkpoint what this needs (see engine/calibration.py):
the class names, the class-mean anchors of a CAC network, the image size, channels and
normalization of the trial, and per scorer the threshold that accepts 95% of the known
validation images. An image is `unknown` when its unknown score exceeds the threshold
(`--threshold` overrides it). Images of any size and mode are converted as the test images
were: grey or RGB, shorter side resized to the trained size, centre square, normalized.
"""
import argparse
import csv
import io
import json
import os
import sys

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from datasets.folder import prepare_image
from engine.cli import resolve_device, run_cli
from engine.errors import UserError
from engine.files import atomic_write
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


def load_predictor(path, device):
    """(network in eval mode with its evaluation anchors, the checkpoint's calibration record)."""
    ckpt = read_checkpoint(path, map_location=device)
    cal = ckpt.get("calibration")
    if not isinstance(cal, dict):
        script = "eval_closedSet.py" if "anchors" not in ckpt["net"] and "means" not in ckpt["net"] else "eval_cacOpenset.py"
        how = (f" -dataset {ckpt['dataset']} --start_trial {ckpt['trial']} --num_trials 1 "
               f"--name '{ckpt.get('args', {}).get('name', '')}'") if "dataset" in ckpt and "trial" in ckpt else " ..."
        raise UserError(f"checkpoint {path} has no calibration (class names, anchors, threshold, preprocessing): "
                        f"evaluate it once with `python {script}{how}` (that calibrates the AnchorLoss / "
                        f"closedSetClassifier file of a trial)")
    network_class = openSetClassifier if cal["method"] == "CAC" else closedSetClassifier
    net = network_class(**cal["network"]).to(device)
    load_checkpoint(path, net, ckpt)
    if cal["method"] == "CAC":
        net.set_anchors(cal["anchor_means"]["means"])
    return net.eval(), cal


def read_image(path, prep, transform):
    try:
        with Image.open(path) as image:
            return transform(prepare_image(image, prep["im_size"], prep["im_channels"]))
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read image {path} ({type(e).__name__}: {e})".splitlines()[0][:300]) from None


@torch.no_grad()
def predict(net, cal, files, scorer, threshold, device):
    """[{image, prediction (class name or 'unknown'), score, closest_class}] in the order of `files`."""
    prep = cal["preprocessing"]
    transform = T.Compose([T.ToTensor(), T.Normalize(prep["mean"], prep["std"])])
    score_fn = (lambda out: cac_scorers(out[1])) if cal["method"] == "CAC" else ce_scorers
    rows = []
    for start in range(0, len(files), BATCH):
        batch = files[start:start + BATCH]
        images = torch.stack([read_image(f, prep, transform) for f in batch]).to(device)
        predicted, scores = score_fn(net(images))[scorer]
        for path, c, s in zip(batch, predicted.tolist(), scores.tolist()):
            name = cal["class_names"][c]
            rows.append({"image": path, "prediction": name if s <= threshold else "unknown", "score": s,
                         "closest_class": name})
    return rows


def render(rows, fmt, meta):
    if fmt == "json":
        return json.dumps({**meta, "predictions": rows}, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["image", "prediction", "score", "closest_class"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv=None):
    args = parse_args(argv)
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
    rows = predict(net, cal, files, scorer, threshold, device)
    meta = {"checkpoint": args.checkpoint, "scorer": scorer, "threshold": threshold,
            "threshold_source": "--threshold" if args.threshold is not None else
            f"evaluation: {100 * cal['accept_rate']:.0f}% of known validation images accepted",
            "score": "larger = more likely unknown"}
    text = render(rows, args.format, meta)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(text)
        print(f"{len(rows)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return rows


if __name__ == "__main__":
    sys.exit(run_cli(main))
