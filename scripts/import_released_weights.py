"""Copy the paper's released weights into networks/weights/, renumbered onto trials 5-9.

The authors trained them on their first-release class splits, which this repository
ships as trials 5-9 (trial i of theirs = trial i + 5 here), so each file is renamed to
meet its own split:

    python scripts/import_released_weights.py ~/Downloads/weights   # folders or .pth files
    python eval_cacOpenset.py -dataset CIFAR10 --start_trial 5 --num_trials 5
"""
import argparse
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
from datasets.names import DATASET_NAMES  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.files import atomic_write  # noqa: E402
from networks.weights import WEIGHTS_DIR  # noqa: E402

_NAME = re.compile(r"^(?P<dataset>.+?)_(?P<trial>\d+)_(?P<rest>.*\.pth)$")


def released_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".pth"))
        elif os.path.isfile(path):
            yield path
        else:
            raise UserError(f"{path} does not exist; give the folder or the .pth files you downloaded")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="downloaded .pth files or folders holding them")
    p.add_argument("--offset", type=int, default=5,
                   help="added to each file's trial number (default: 5, the first-release splits)")
    p.add_argument("--force", action="store_true", help="overwrite files already in networks/weights/")
    args = p.parse_args(argv)
    from networks.checkpoint import read_checkpoint  # after parsing: --help answers at once

    copied = 0
    for path in released_files(args.paths):
        match = _NAME.match(os.path.basename(path))
        if not match or match["dataset"] not in DATASET_NAMES:
            print(f"skipped {path}: not named <dataset>_<trial>_<...>.pth", file=sys.stderr)
            continue
        read_checkpoint(path)  # refuses corrupt files and files that would run code
        dataset, trial = match["dataset"], int(match["trial"]) + args.offset
        target = os.path.join(WEIGHTS_DIR, dataset, f"{dataset}_{trial}_{match['rest']}")
        if os.path.exists(target) and not args.force:
            raise UserError(f"{target} exists already; pass --force to overwrite it")
        with open(path, "rb") as src, atomic_write(target) as dst:
            shutil.copyfileobj(src, dst)
        print(f"{path} -> {target}")
        copied += 1
    if not copied:
        raise UserError("no released checkpoint found among the given paths")


if __name__ == "__main__":
    sys.exit(run_cli(main))
