"""Shared command-line pieces: parent parsers, checks, device, seeding, run header, and `run_cli`. No torch or
numpy at import: the scripts import them after parsing, so that `--help` answers at once."""
import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import unicodedata

from datasets.names import DATASET_NAMES, FOLDER_DATASET
from core.errors import Interrupted, UserError
from engine.recipe import RECIPES
from networks.config import BACKBONE_HELP

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit


def runtime_parser(training=True):
    """Where the data is and what runs it; shared by training and (`training` False) evaluation."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("runtime")
    g.add_argument("--data_root", default="datasets/data",
                   help="folder holding the raw data sets (default: datasets/data, as the original)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available, else CPU (default: auto)")
    g.add_argument("--workers", type=int, default=None,
                   help="DataLoader worker processes (default: the dataset's num_workers in datasets/config.json)")
    g.add_argument("--seed", type=int, default=0,
                   help="random seed of weight init, batch order, augmentation and dropout (default: 0)" if training
                   else "random seed set before each trial; evaluation draws no random numbers (the train/validation "
                   "partition has its own fixed seed), so it changes no result (default: 0)")
    g.add_argument("--no_download", action="store_true",
                   help="never try to download missing data; fail at once with what is expected where")
    g.add_argument("--pipeline", default="resident", choices=["resident", "torchvision"],
                   help="resident (default): decode in-memory data sets once onto the device and augment whole "
                        "batches there (same distributions; TinyImageNet falls back); torchvision: per-sample "
                        "transforms in DataLoader workers, as the original")
    g.add_argument("--cache_dir", metavar="DIR", help="folder of the caches made from the data: train/validation "
                   "partitions, normalization (default: $CAC_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/cac)")
    # users' own class split and image shape (README: "Your own images")
    g.add_argument("--split_file", default=None, help="class split JSON {\"Known\": [...], \"Unknown\": [...]} used "
                   "instead of datasets/<dataset>/class_splits/<trial>.json; for --dataset ImageFolder (required) it "
                   "names class folders (default: none)")
    default = ("the dataset's in datasets/config.json; saved with the run: evaluation and predict.py read it from "
               "the checkpoint" if training else "the checkpoint's; a value that contradicts it is refused")
    g.add_argument("--im_size", type=int, default=None, help=f"image side in pixels, a multiple of 8 (default: {default})")
    g.add_argument("--im_channels", type=int, default=None, choices=[1, 3],
                   help=f"ImageFolder only: 1 = grey, 3 = RGB (default: {default.replace('dataset', 'ImageFolder')})")
    return p


def training_parser(default_name="myTest"):
    """The seed's training flags, --epochs, --backbone, --recipe, and the config's overrides (saved with the run)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("training")
    g.add_argument("--dataset", required=True, type=str,
                   help=f"dataset for training, one of: {', '.join(DATASET_NAMES)}")
    g.add_argument("--trial", default=0, type=int, help="the paper's data sets: trial number = class split file "
                   "datasets/<dataset>/class_splits/<trial>.json (0-4: standard splits, 5-9: the paper's "
                   "first-release splits); an image folder has one split, its --split_file: leave it at 0 (default: 0)")
    g.add_argument("--resume", "-r", action="store_true", help="the second phase: from the first run's best "
                   "checkpoint, at the second learning rate and epoch count")
    g.add_argument("--tensorboard", "-t", action="store_true", help="plot on tensorboardX under runs/")
    g.add_argument("--name", default=default_name, type=str,
                   help=f"name for saving and tensorboard (default: {default_name})")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs of this run (default: the config's max_epoch for this phase)")
    o = p.add_argument_group("augmentation and schedule (default: the dataset's values in datasets/config.json)")
    o.add_argument("--hflip", type=float, default=None, metavar="P",
                   help="probability of a horizontal flip of a training image; 0 turns flips off")
    o.add_argument("--rotation", type=float, default=None, metavar="DEG",
                   help="random rotation of training images, uniform in -DEG..DEG degrees; 0 turns it off")
    o.add_argument("--crop_scale", type=float, default=None, metavar="MIN",
                   help="smallest area share (0-1] of a training image's random crop; 1 turns crops off")
    o.add_argument("--lr", type=float, default=None, help="learning rate of this phase (first run or second)")
    o.add_argument("--batch_size", type=int, default=None, help="images per batch (the global batch under torchrun)")
    g.add_argument("--backbone", default="cnn", help=f"network backbone: {BACKBONE_HELP} (default: cnn)")
    g.add_argument("--pretrained", nargs="?", const="imagenet", default=None, metavar="FILE",
                   help="ResNet backbones: start from torchvision's ImageNet weights (alone: downloaded into torch "
                        "hub's cache, or read from there offline) or from FILE, a torchvision state_dict saved "
                        "with torch.save (default: none, from scratch)")
    g.add_argument("--recipe", default="paper", choices=RECIPES,
                   help="paper: the config's schedule and augmentation (the original); modern: Vaze et al. 2022's "
                        "(SGD lr 0.1, cosine warm restarts, 600 epochs, RandAugment; engine/recipe.py); vaze: modern "
                        "on the whole training set, keeping the last epoch (their protocol) (default: paper)")
    g.add_argument("--continue", dest="continue_run", action="store_true",
                   help="continue the interrupted run (first run or second phase) from its ...Last.pth: from the "
                        "start of the epoch it was stopped in, for the epochs it had planned")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing run of the same dataset, trial and name: its checkpoints and runs/ "
                        "folder are removed once every check has passed (with -r: run the second phase again)")
    return p


def accel_parser():
    """Speed flags of the training scripts; none of them changes what is computed beyond noise."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("speed")
    g.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast for forward and loss (default: off, float32); CAC distances stay float64")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network (default: off; compiling takes a minute, pays off on long GPU runs)")
    g.add_argument("--sync_bn", action="store_true", help="with torchrun: BatchNorm statistics over the global batch, "
                   "not each rank's slice (default: off, as plain DDP; CUDA only; no effect in a single process)")
    g.add_argument("--tf32", action="store_true",
                   help="CUDA: TensorFloat-32 for float32 convolutions and matmuls (faster on Ampere and newer, "
                        "10-bit mantissa); default: off, exact float32 as the paper's GPUs computed")
    g.add_argument("--drop_last", action="store_true", help="drop each epoch's partial last training batch, so "
                   "that every step has one shape (for --compile: no recompilation; default: off, as the original)")
    g.add_argument("--augment_batches", type=int, default=1, metavar="K", help="resident pipeline: draw and apply "
                   "the augmentation of K batches at once (same distributions, other draws; default: 1)")
    return p


def evaluation_parser():
    """The seed's evaluation flags; `-dataset` (the seed's spelling) and `--dataset` both work."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("evaluation")
    g.add_argument("-dataset", "--dataset", dest="dataset", default="MNIST", type=str,
                   help=f"dataset to evaluate, one of: {', '.join(DATASET_NAMES)} (default: MNIST, as the original)")
    g.add_argument("--num_trials", default=None, type=int,
                   help="number of trials to average results over (default: those of --start_trial to "
                        "--start_trial + 4 with a checkpoint: 0-4 once all five are trained, as the original's 5)")
    g.add_argument("--start_trial", default=0, type=int, help="trial number to start evaluation at (default: 0)")
    g.add_argument("--name", default="", type=str,
                   help="name the networks were trained with (default: '' = the paper's released weights)")
    g.add_argument("--plots", action="store_true", help="also draw PNGs under results/: ROC curves, score histograms, "
                   "the CAC logit space, training curves (needs matplotlib)")
    return p


def check_common_args(args):
    """The checks every script needs: data set, worker count, seed, --name."""
    if args.dataset not in DATASET_NAMES:
        raise UserError(f"unknown dataset {args.dataset!r}: choose one of {', '.join(DATASET_NAMES)}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: give 0 or more worker processes")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {args.seed}: give a whole number from 0 to {MAX_SEED}")
    check_name(args.name)


def check_name(name):
    """--name goes into file and folder names: one plain name part, so that no run writes outside its folders; no
    character a name shows as nothing (control, format such as a zero-width space, line or paragraph separator, a
    byte that was not UTF-8, whitespace but the plain space)."""
    hidden = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")
                   or (c.isspace() and c != " ")), None)
    bad = ("contains '/'" if "/" in name else "contains '\\'" if "\\" in name else "contains '..'" if ".." in name else
           "contains a control character" if hidden and unicodedata.category(hidden) == "Cc" else
           f"contains the invisible character U+{ord(hidden):04X} ({unicodedata.name(hidden, 'unnamed')})" if hidden
           else f"starts with {name[0]!r}" if name[:1] in ("-", ".") else None)
    if bad:
        raise UserError(f"--name {name!r} {bad}: it becomes part of file and folder names; give a plain "
                        f"name (letters, digits, '_', '-', not starting with '-' or '.'), e.g. --name myTest")


def with_trained_shape(args, ckpt, path):
    """`args` with the image size and channels checkpoint `path` (`ckpt`) was trained with, where not given."""
    trained, shape, wrong = ckpt.get("network") or {}, {}, []
    for flag, key in (("im_size", "im_size"), ("im_channels", "num_channels")):
        given, saved = getattr(args, flag, None), trained.get(key)
        if given is not None and saved is not None and given != saved:
            wrong.append((flag, saved, given))
        shape[flag] = saved if given is None and (flag == "im_size" or args.dataset == FOLDER_DATASET) else given
    if wrong:  # every contradiction in one line
        saved, given, drop = (" and ".join(p) for p in zip(*[(f"{f} {s}", f"--{f} {g}", f"--{f}") for f, s, g in wrong]))
        raise UserError(f"checkpoint {path} was trained with {saved}, this command gives {given}: drop {drop} (read "
                        f"from the checkpoint)")
    return argparse.Namespace(**{**vars(args), **shape})


def resolve_device(name):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed):
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA devices too


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO_DIR, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def print_header(args, device):
    """Git commit and every argument, first thing, so that a log says what produced it; returns the commit."""
    import torch

    commit = git_commit()
    print(f"git: {commit}  device: {device}  torch: {torch.__version__}", flush=True)
    print("args: " + json.dumps(vars(args), sort_keys=True), flush=True)
    return commit


@contextlib.contextmanager
def one_line_usage_errors():
    """argparse's own errors (a missing argument, `--epochs 1e3`) as a UserError: one line, not a usage block."""
    def error(parser, message):
        raise UserError(f"{message}; see {parser.prog} --help")

    previous = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = previous


def run_cli(main):
    """Run `main()`: a UserError is one line and exit status 2; a stop by a signal, 128 + its number."""
    try:
        with one_line_usage_errors():
            main()
        return 0
    except Interrupted as e:
        if str(e):  # under torchrun rank 0 alone says it
            print(f"stopped: {e}", file=sys.stderr)
        return e.exit_status
    except UserError as e:
        # raised in a DataLoader worker, it arrives wrapped in the worker's traceback: keep its own line
        message = (str(e).strip().splitlines() or ["bad input (no message)"])[-1].split("UserError: ", 1)[-1]
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
