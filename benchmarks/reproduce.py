"""The paper's protocol in one command: per data set, trial and method (a cell), both training
phases (the first run, then -r at the lower learning rate, with the config's or --recipe's
schedules; one run under --recipe vaze), then the evaluation; a paper-shaped table with the
published numbers beside ours (benchmarks/protocol.py, benchmarks/published.py) as <out>.md and
<out>.json.

    python benchmarks/reproduce.py --datasets MNIST SVHN CIFAR10 --trials 0-4 --methods cac ce --download
    python benchmarks/reproduce.py --datasets FashionMNIST --trials 0-2 --budget 0.03 --workdir work
    python benchmarks/reproduce.py --datasets CIFAR10 --launcher pool --jobs 4            # 4 GPUs, a cell each
    python benchmarks/reproduce.py --datasets CIFAR10 --launcher slurm --slurm_partition gpu

--budget b runs max(1, round(b * epochs)) epochs of each phase (--epochs E0 E1: exactly these).
--launcher (benchmarks/launch.py): the cells one after another here (local, the default), --jobs
at once on this machine (pool), or one Slurm job each (slurm), through submitit.
Resumable: <out>.json records each finished phase and evaluation, which a second run of the
command skips; a phase that was interrupted (its ...Last.pth says so) goes on with --continue,
one not started or unrecorded runs with --overwrite. Script output: <out>.log (local) or
<out>_jobs/<dataset>_<trial>_<method>.log (a job's).
"""
import argparse
import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import launch  # noqa: E402
from benchmarks.cells import Cell  # noqa: E402
from benchmarks.protocol import (METHODS, Stopped, command_line, machine, markdown, sigterm_stops, trial_list,  # noqa: E402
                                 write_table)
from core.errors import Interrupted, UserError  # noqa: E402
from core.files import read_json  # noqa: E402
from datasets.config import load_config  # noqa: E402
from datasets.names import DATASET_NAMES  # noqa: E402
from engine.cli import check_name, git_commit  # noqa: E402
from engine.recipe import RECIPES, Recipe  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Both training phases and the evaluation of every (data set, trial, "
                                            "method); a Markdown and JSON table (resumable)")
    p.add_argument("--datasets", nargs="+", required=True, help=f"of: {', '.join(DATASET_NAMES)}")
    p.add_argument("--trials", nargs="+", type=trial_list, default=[[0, 1, 2, 3, 4]], help="e.g. 0-4 or 0 2 (default: 0-4)")
    p.add_argument("--methods", nargs="+", type=str.upper, choices=list(METHODS), default=list(METHODS),
                   help="cac, ce (default: both)")
    p.add_argument("--recipe", choices=RECIPES, default="paper",
                   help="paper; modern: Vaze et al.'s recipe; vaze: theirs on their protocol, one run on the whole training "
                        "set, the last epoch evaluated (engine/recipe.py; default: paper)")
    p.add_argument("--budget", type=float, default=1.0, help="share of every schedule's epochs (min 1; default: 1)")
    p.add_argument("--epochs", type=int, nargs="+", default=None, metavar="E",
                   help="epochs of the first and the -r phase, E0 E1 (--recipe vaze: E0 alone); replaces --budget")
    p.add_argument("--name", default=None, help="run name of the cells (default: repro_<recipe>_<budget or epochs>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--data_root", default="datasets/data", help="as the scripts, from --workdir (default: datasets/data)")
    p.add_argument("--download", action="store_true",
                   help="download missing data (TinyImageNet: scripts/setup_tinyimagenet.py, once, first)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    p.add_argument("--workdir", default=".", help="where networks/weights, runs, results go (default: .)")
    p.add_argument("--out", default=None, help="output path without extension (default: <workdir>/results/reproduce_<name>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="of every script (default: auto)")
    p.add_argument("--amp", action="store_true", help="train with bfloat16 autocast (training scripts' --amp)")
    launch.add_arguments(p)
    args = p.parse_args(argv)
    args.trials = sorted({t for group in args.trials for t in group})
    bad = [d for d in args.datasets if d not in DATASET_NAMES]
    if bad:
        raise UserError(f"unknown data set {bad[0]!r}: choose from {', '.join(DATASET_NAMES)}")
    if not args.budget > 0 or args.budget > 1e6:
        raise UserError(f"--budget {args.budget}: give a share of the schedules' epochs above 0 (1 = the full schedule)")
    phases = 1 if args.recipe == "vaze" else 2
    given = " ".join(map(str, args.epochs or []))
    if args.epochs and len(args.epochs) != phases:
        raise UserError(f"--epochs {given}: give {phases} epoch count{'s' if phases > 1 else ''}, one per training "
                        f"phase of --recipe {args.recipe} ({'E0 E1: the first run and -r' if phases > 1 else 'E0: one run'})")
    if args.epochs and min(args.epochs) < 1:
        raise UserError(f"--epochs {given}: give positive epoch counts")
    launch.check_arguments(args)
    tag = "e" + "-".join(map(str, args.epochs)) if args.epochs else f"b{args.budget:g}".replace(".", "p")
    args.name = args.name or f"repro_{args.recipe}_{tag}"
    check_name(args.name)
    args.out = args.out or os.path.join(args.workdir, "results", f"reproduce_{args.name}")
    return args


def phase_epochs(args, dataset, method):
    """Epochs of each training phase of `method` on `dataset` under the recipe and budget."""
    if args.epochs:
        return list(args.epochs)
    cfg = load_config(dataset)
    recipe = Recipe.for_run(args.recipe, dataset, cfg, cfg[METHODS[method][3]])
    return [max(1, round(args.budget * e)) for e in recipe.max_epoch[:recipe.phases]]


def plan(args):
    """The cells of the command, in its order: data sets, then trials, then methods."""
    common = ("--seed", args.seed, "--data_root", args.data_root, "--name", args.name,
              *(["--workers", args.workers] if args.workers is not None else []),
              *([] if args.download else ["--no_download"]), "--device", args.device)
    return [Cell(ds, trial, method, tuple(phase_epochs(args, ds, method)), args.name, args.recipe,
                 os.path.abspath(args.workdir), common, args.amp)
            for ds in args.datasets for trial in args.trials for method in args.methods]


def main(argv=None):
    args = parse_args(argv)
    json_path = args.out + ".json"
    table = {"cells": {}}
    launch.check_inputs(args)  # before anything is written
    if os.path.lexists(json_path):
        table = read_json(json_path, "table file", "delete it to start afresh, or give another --out")
        if not isinstance(table, dict) or not isinstance(table.get("cells"), dict):
            raise UserError(f"{json_path} is not a table this script wrote (an object with 'cells'); delete it to "
                            f"start afresh, or give another --out")
        same = (table.get("name"), table.get("recipe"), table.get("seed"))
        if same != (args.name, args.recipe, args.seed):
            raise UserError(f"{json_path} holds another table {same}; give another --out or delete it")
    table.update(name=args.name, recipe=args.recipe, seed=args.seed, budget=args.budget, datasets=args.datasets,
                 trials=args.trials, methods=args.methods, git=git_commit(), machine=machine(),
                 command=command_line("benchmarks/reproduce.py", sys.argv[1:] if argv is None else argv),
                 epochs={ds: phase_epochs(args, ds, args.methods[0]) for ds in args.datasets},
                 planned=len(args.datasets) * len(args.trials) * len(args.methods))

    def save():
        write_table(table, args.out)

    try:
        with sigterm_stops():  # as Ctrl-C: the running scripts save their state first
            launch.fetch_data(args)  # then the table: a failed download leaves none
            save()
            launch.run_cells(args, table, plan(args), save)
    except (KeyboardInterrupt, Stopped) as e:
        name = str(e) or "SIGINT"
        raise Interrupted(f"{name}; the running phases saved their state: run the same command again to go on",
                          128 + signal.Signals[name].value) from None
    print(markdown(table))
    return table


if __name__ == "__main__":
    from engine.cli import run_cli

    sys.exit(run_cli(main))
