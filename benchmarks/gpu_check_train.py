"""The GPU check's training steps (benchmarks/gpu_check.sh `fashion` and `amp`): both phases of CAC and of
the cross-entropy baseline on trial 0, then their evaluations, all in this one process (a GPU machine spends
seconds starting each script), and a Markdown table of every scorer's accuracy, AUROC and OSCR; with
--against NAME, the same cells of an earlier run of this script beside them.

    python benchmarks/gpu_check_train.py --work DIR --name fp32 [--dataset FashionMNIST] [--epochs 4 1]
    python benchmarks/gpu_check_train.py --work DIR --name amp --amp --against fp32
    python benchmarks/gpu_check_train.py --work DIR --name toy --dataset Digits --toy      # the dry run's size

--toy: one step per epoch (a batch larger than the training set, 8x8 images), 1 + 1 epochs. The runs are
the training and evaluation scripts' own `main`, with --no_download (Fashion-MNIST: the .gz files in
$CAC_SYSTEM_FASHION_MNIST). Writes networks/, runs/ and results/ under --work; one line per phase.
"""
import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run from anywhere
from engine.commands import EVAL_SCRIPTS, TRAIN_SCRIPTS  # noqa: E402 (no torch: --help stays light)

TOY = ["--batch_size", "4096", "--im_size", "8"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder of the runs (made if missing)")
    p.add_argument("--name", required=True, help="run name of this setting, e.g. fp32 or amp")
    p.add_argument("--dataset", default="FashionMNIST", help="data set (default: FashionMNIST)")
    p.add_argument("--epochs", type=int, nargs=2, default=None, metavar=("E0", "E1"),
                   help="epochs of the first and the -r phase (default: 4 1; --toy: 1 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", action="store_true", help="train with bfloat16 autocast")
    p.add_argument("--toy", action="store_true", help="one step per epoch on 8x8 images (the dry run)")
    p.add_argument("--methods", nargs="+", default=list(TRAIN_SCRIPTS), choices=list(TRAIN_SCRIPTS),
                   help="which methods (default: both)")
    p.add_argument("--against", default=None, metavar="NAME", help="an earlier --name to put beside this one")
    return p.parse_args(argv)


def run_phases(args):
    """Train both phases and evaluate each method; returns the seconds each step took."""
    import importlib

    epochs = args.epochs or ([1, 1] if args.toy else [4, 1])
    common = ["--dataset", args.dataset, "--name", args.name, "--device", args.device, "--no_download"]
    toy = TOY if args.toy else []
    seconds = {}
    for method in (m for m in TRAIN_SCRIPTS if m in args.methods):
        train, evaluate = (importlib.import_module(scripts[method].removesuffix(".py"))
                           for scripts in (TRAIN_SCRIPTS, EVAL_SCRIPTS))
        for phase, count in enumerate(epochs):
            start = time.time()
            train.main([*common, "--trial", "0", "--epochs", str(count), "--overwrite", *(["-r"] if phase else []),
                        *(["--amp"] if args.amp else []), *toy])
            seconds[f"{method} phase {phase}"] = time.time() - start
        start = time.time()
        evaluate.main([*common, "--num_trials", "1", "--start_trial", "0",
                       *(["--im_size", "8"] if args.toy else [])])
        seconds[f"{method} eval"] = time.time() - start
    return epochs, seconds


def table(args, epochs):
    """Markdown: every scorer's accuracy, AUROC, OSCR of this run (and of --against's)."""
    from benchmarks.protocol import read_scorers, results_file

    against = args.against
    if against and not all(os.path.isfile(results_file(args.work, args.dataset, against, m, 0)) for m in args.methods):
        print(f"(no results of --against {against} to put beside these: its run did not finish)")
        against = None
    names = [args.name] + ([against] if against else [])
    head = " | ".join(f"{metric} {name}" for metric in ("accuracy", "AUROC", "OSCR") for name in names)
    lines = [f"{args.dataset} trial 0, {epochs[0]} + {epochs[1]} epochs (the config's schedule shortened to fit "
             f"the slot)" if not args.toy else f"{args.dataset} trial 0, toy size ({' '.join(TOY)})", "",
             f"| method | scorer | {head} |", "|---|---|" + "---|" * (3 * len(names))]
    for method in args.methods:
        runs = [read_scorers(results_file(args.work, args.dataset, name, method, 0)) for name in names]
        for scorer in runs[0]:
            cells = [f"{run[scorer][metric]:.4f}" for metric in ("accuracy", "auroc", "oscr") for run in runs]
            lines.append(f"| {method} | {scorer} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    os.chdir(args.work)
    args.work = "."
    from core.errors import UserError

    try:
        epochs, seconds = run_phases(args)
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()), flush=True)
        print(table(args, epochs), flush=True)
    except UserError as e:  # the scripts' one line (or a results file's), as run_cli prints it
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
