"""Classify new images with a trained checkpoint: a known class by name, or `unknown`.

    python predict.py networks/weights/Digits/Digits_0_demoCACclassifierAnchorLoss.pth my_images/
    python predict.py CHECKPOINT a.png b.jpg --format json --out predictions.json

The calibration beside the checkpoint X.pth, X.calibration.json (engine/calibration.py; made on first use
when no evaluation made it), gives class names, anchors, preprocessing and per scorer the threshold above
which an image is `unknown` (accepting 95% of the known validation images). An image that cannot be read
is skipped with a warning; the checkpoint, its calibration, --threshold and --out are checked first."""
import argparse
import math
import os
import sys

from core.errors import UserError, os_error_cause
from core.files import atomic_write, ensure_writable
from engine.cli import resolve_device, run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Predict a known class or 'unknown' for new images")
    p.add_argument("checkpoint", help="a .pth file a training run saved (any of them)")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--threshold", type=float, default=None,
                   help="unknown-score threshold: above it an image is 'unknown' (default: the calibration's, "
                        "accepting 95%% of the known validation images)")
    p.add_argument("--scorer", default=None,
                   help="cac or min_distance (CAC networks), max_softmax or max_logit (the cross-entropy baseline) "
                        "(default: the paper's scorer of the checkpoint's method)")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default: csv)")
    p.add_argument("--out", default=None, help="write the predictions to this file (default: print them)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available, else CPU (default: auto)")
    p.add_argument("--data_root", default=None,
                   help="where the training data is now, when the checkpoint has no calibration yet and its "
                        "data moved (default: the --data_root training recorded)")
    p.add_argument("--split_file", default=None,
                   help="where training's class split file is now, as --data_root (default: the one training recorded)")
    p.add_argument("--cache_dir", metavar="DIR", help="folder of the data caches (default: $CAC_CACHE_DIR, else "
                   "${XDG_CACHE_HOME:-~/.cache}/cac)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from engine.prediction import find_images, load_predictor, predict, render  # after parsing: --help at once

    if args.threshold is not None and not math.isfinite(args.threshold):  # NaN would call every image known
        raise UserError(f"--threshold {args.threshold}: give a finite number (an image whose unknown score is "
                        f"above it is 'unknown')")
    if args.out is not None:
        if os.path.isdir(args.out):
            raise UserError(f"--out {args.out} is a folder; give a file name, e.g. "
                            f"{os.path.join(args.out, 'predictions.' + args.format)}")
        try:
            ensure_writable(os.path.dirname(args.out) or ".")
        except UserError as e:
            raise UserError(f"--out {args.out}: {e}") from None
    files = find_images(args.images)
    device = resolve_device(args.device)
    net, cal = load_predictor(args.checkpoint, device, args.data_root, args.split_file, args.cache_dir)
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
    source = ("--threshold" if args.threshold is not None else f"the checkpoint's calibration, which accepts "
              f"{100 * cal['accept_rate']:.0f}% of the known validation images")
    meta = {"checkpoint": args.checkpoint, "scorer": scorer, "threshold": threshold, "threshold_source": source,
            "score": "larger = more likely unknown"}
    text = render(rows, args.format, meta)
    if not args.out:
        sys.stdout.write(text)
    try:
        if args.out:
            with atomic_write(args.out, "w") as f:
                f.write(text)
    except OSError as e:
        raise UserError(f"cannot write the predictions to {args.out} {os_error_cause(e, args.out)}, or give "
                        f"another --out; its previous content is unchanged") from None
    print(f"threshold {threshold:.6g} for scorer {scorer}, from {source}: an image scoring above it is 'unknown'"
          + (f"; {len(rows)} predictions written to {args.out}" if args.out else ""), file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(run_cli(main))
