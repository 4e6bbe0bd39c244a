"""The paper's protocol in one command: per data set, trial and method, both training phases
(the first run, then -r at the lower learning rate, with the config's or --recipe's schedules),
then the evaluation; a paper-shaped table (benchmarks/protocol.py) as <out>.md and <out>.json.

    python benchmarks/reproduce.py --datasets MNIST SVHN CIFAR10 --trials 0-4 --methods cac ce
    python benchmarks/reproduce.py --datasets FashionMNIST --trials 0-2 --budget 0.03 --workdir work

--budget b runs max(1, round(b * epochs)) epochs of each phase (--epochs E0 E1: exactly these).
Resumable: <out>.json records each finished phase and evaluation, which a second run of the
command skips; a phase that was interrupted (its ...Last.pth says so) goes on with --continue,
one not started or unrecorded runs with --overwrite. Each script's output goes to <out>.log.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.protocol import (METHODS, command_line, machine, markdown, phase_state, read_scorers, run,  # noqa: E402
                                 trial_list, write_table)
from core.errors import UserError  # noqa: E402
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
    p.add_argument("--recipe", choices=RECIPES, default="paper", help="training recipe (engine/recipe.py; default: paper)")
    p.add_argument("--budget", type=float, default=1.0, help="share of every schedule's epochs (min 1; default: 1)")
    p.add_argument("--epochs", type=int, nargs=2, default=None, metavar=("E0", "E1"),
                   help="epochs of the first and the -r phase (replaces --budget)")
    p.add_argument("--name", default=None, help="run name of the cells (default: repro_<recipe>_<budget or epochs>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--data_root", default="datasets/data", help="as the scripts, from --workdir (default: datasets/data)")
    p.add_argument("--download", action="store_true", help="let the scripts download missing data")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    p.add_argument("--workdir", default=".", help="where networks/weights, runs, results go (default: .)")
    p.add_argument("--out", default=None, help="output path without extension (default: <workdir>/results/reproduce_<name>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="of every script (default: auto)")
    p.add_argument("--amp", action="store_true", help="train with bfloat16 autocast (training scripts' --amp)")
    args = p.parse_args(argv)
    args.trials = sorted({t for group in args.trials for t in group})
    bad = [d for d in args.datasets if d not in DATASET_NAMES]
    if bad:
        raise UserError(f"unknown data set {bad[0]!r}: choose from {', '.join(DATASET_NAMES)}")
    if not args.budget > 0 or args.budget > 1e6:
        raise UserError(f"--budget {args.budget}: give a share of the schedules' epochs above 0 (1 = the full schedule)")
    if args.epochs and min(args.epochs) < 1:
        raise UserError(f"--epochs {args.epochs[0]} {args.epochs[1]}: give positive epoch counts")
    tag = f"e{args.epochs[0]}-{args.epochs[1]}" if args.epochs else f"b{args.budget:g}".replace(".", "p")
    args.name = args.name or f"repro_{args.recipe}_{tag}"
    check_name(args.name)
    args.out = args.out or os.path.join(args.workdir, "results", f"reproduce_{args.name}")
    return args


def phase_epochs(args, dataset, method):
    """[first run, -r] epochs of `method` on `dataset` under the recipe and budget."""
    if args.epochs:
        return list(args.epochs)
    cfg = load_config(dataset)
    recipe = Recipe.for_run(args.recipe, dataset, cfg, cfg[METHODS[method][3]])
    return [max(1, round(args.budget * e)) for e in recipe.max_epoch]


def run_cell(args, table, ds, trial, method, save, log):
    """Both phases and the evaluation of one cell, each skipped when recorded as done."""
    cell = table["cells"].setdefault(f"{ds}/{trial}/{method}", {})
    train_script, eval_script, tag, _ = METHODS[method]
    common = ["--seed", args.seed, "--data_root", args.data_root, "--name", args.name,
              *(["--workers", args.workers] if args.workers is not None else []),
              *([] if args.download else ["--no_download"]), "--device", args.device]
    for phase, epochs in enumerate(phase_epochs(args, ds, method)):
        key = f"phase{phase}"
        if key in cell:
            continue
        state = phase_state(args.workdir, ds, trial, args.name, method, phase)
        if state != "done":
            argv = ["--dataset", ds, "--trial", trial, *common, "--recipe", args.recipe, "--epochs", epochs,
                    *(["-r"] if phase else []), "--continue" if state == "stopped" else "--overwrite", *(["--amp"] if args.amp else [])]
            print(f"{ds} trial {trial} {method}: phase {phase} ({epochs} epochs"
                  f"{', continued' if state == 'stopped' else ''})", flush=True)
            seconds, _ = run(train_script, argv, args.workdir, log)
            cell[key] = {"epochs": epochs, "train_s": round(seconds, 1)}
        else:
            cell[key] = {"epochs": epochs, "train_s": None}  # finished before it was recorded
        save()
    if "result" not in cell:
        seconds, _ = run(eval_script, ["-dataset", ds, "--start_trial", trial, "--num_trials", 1, *common],
                         args.workdir, log)
        path = os.path.join(args.workdir, "results", f"{ds}_{args.name}{tag}_trials{trial}-{trial}.json")
        cell.update(result=read_scorers(path), eval_s=round(seconds, 1))
        save()


def main(argv=None):
    args = parse_args(argv)
    json_path = args.out + ".json"
    table = {"cells": {}}
    if os.path.lexists(json_path):
        table = read_json(json_path, "table file", "delete it to start afresh, or give another --out")
        same = (table.get("name"), table.get("recipe"), table.get("seed"))
        if not isinstance(table.get("cells"), dict) or same != (args.name, args.recipe, args.seed):
            raise UserError(f"{json_path} holds another table {same}; give another --out or delete it")
    table.update(name=args.name, recipe=args.recipe, seed=args.seed, budget=args.budget, datasets=args.datasets,
                 trials=args.trials, methods=args.methods, git=git_commit(), machine=machine(),
                 command=command_line("benchmarks/reproduce.py", sys.argv[1:] if argv is None else argv),
                 epochs={ds: phase_epochs(args, ds, args.methods[0]) for ds in args.datasets},
                 planned=len(args.datasets) * len(args.trials) * len(args.methods))

    def save():
        write_table(table, args.out)

    save()
    with open(args.out + ".log", "a") as log:
        for ds in args.datasets:
            for trial in args.trials:
                for method in args.methods:
                    run_cell(args, table, ds, trial, method, save, log)
    print(markdown(table))
    return table


if __name__ == "__main__":
    from engine.cli import run_cli

    sys.exit(run_cli(main))
