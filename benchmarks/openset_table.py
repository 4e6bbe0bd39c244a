"""CAC against the cross-entropy baseline on some trials of one data set: a results table.

    python benchmarks/openset_table.py --dataset Digits --trials 0 1 2 3 4
    python benchmarks/openset_table.py --dataset FashionMNIST --trials 0 1 2 --epochs 3

Each (trial, method) cell trains with the repo's own training script (first run only,
--epochs of it) and evaluates with its own evaluation script, both as subprocesses, as a
user would. Finished cells are kept in <out>.json and skipped when the command is run
again, so an interrupted table resumes where it stopped; a cell not recorded there (trained
but not evaluated when the table stopped, or never finished) is trained again from scratch
with --overwrite, which replaces that cell's run of the table's --name (give the table a
name of its own). <out>.md gets the Markdown table (benchmarks/tables.py): per trial and
mean ± std of accuracy and AUROC, the wall times, the machine and the exact command.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.protocol import METHODS, check_workdir, command_line, machine, results_file, run  # noqa: E402
from benchmarks.tables import markdown, read_results, read_table, write_table  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.logfile import parse_log_line  # noqa: E402
from engine.cli import git_commit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train and evaluate CAC and cross-entropy on some trials; "
                                            "write a Markdown and JSON results table (resumable)")
    p.add_argument("--dataset", required=True, help="a data set of datasets/config.json, e.g. FashionMNIST")
    p.add_argument("--trials", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="trials (default: 0-4)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                   help="default: both, CAC then CE")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the first training run (default: the config's max_epoch[0]); "
                        "the -r run with the lower learning rate is not part of the table")
    p.add_argument("--name", default=None, help="run name for the weights (default: table_e<epochs>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--data_root", default="datasets/data", help="as the training scripts (default: datasets/data)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    p.add_argument("--out", default=None, help="output path without extension (default: results/table_<dataset>)")
    p.add_argument("--workdir", default=".", help="where weights/, runs/, results/ of the runs go (default: .)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
    args.name = args.name or f"table_e{args.epochs or 'config'}"
    args.out = args.out or os.path.join("results", f"table_{args.dataset}")
    return args


def run_cell(args, trial, method):
    train_script, eval_script, tag, _ = METHODS[method]
    common = ["--seed", args.seed, "--data_root", args.data_root, "--name", args.name]
    if args.workers is not None:
        common += ["--workers", args.workers]
    train_argv = ["--dataset", args.dataset, "--trial", trial, *common, "--overwrite"]  # see the docstring
    if args.epochs:
        train_argv += ["--epochs", args.epochs]
    train_s, _ = run(train_script, train_argv, args.workdir)
    eval_s, _ = run(eval_script, ["-dataset", args.dataset, "--start_trial", trial, "--num_trials", 1, *common],
                    args.workdir)
    accuracy, auroc = read_result(results_file(args.workdir, args.dataset, args.name, tag, trial))
    epochs_run = epochs_logged(os.path.join(args.workdir, "runs", f"{args.dataset}_{trial}_{args.name}{tag}",
                                            "metrics.jsonl"))
    images = epochs_run * training_set_size(args, trial)
    return {"accuracy": accuracy, "auroc": auroc, "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "epochs": epochs_run, "train_images_per_s": round(images / train_s, 1)}


def read_result(path):
    """(accuracy, AUROC) of a one-trial results JSON, or one UserError line."""
    result = read_results(path, "evaluate the trial again")
    return result["raw_top1_accuracy"][0], result["raw_auroc"][0]


def epochs_logged(path):
    """How many epochs a run's metrics.jsonl holds (whole lines), or one UserError line."""
    try:
        with open(path, "rb") as f:
            return sum(parse_log_line(line) is not None for line in f)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); train the cell again") from None


def training_set_size(args, trial):
    """Training images of one trial (its known classes, less validation), as the scripts saw them."""
    from datasets.trial import OpenSetData

    root = os.path.join(args.workdir, args.data_root)  # the runs resolve --data_root from --workdir
    return len(OpenSetData(args.dataset, trial, root, download=False).train_idx)


def main(argv=None):
    args = parse_args(argv)
    json_path, md_path = args.out + ".json", args.out + ".md"
    check_workdir(args.workdir)
    table = {"cells": {}}
    if os.path.lexists(json_path):
        table = read_table(json_path)
        same = (table.get("dataset"), table.get("name"), table.get("epochs"), table.get("seed"))
        if same != (args.dataset, args.name, args.epochs, args.seed):
            raise UserError(f"{json_path} holds another table {same}; give another --out or delete it")
    table.update(dataset=args.dataset, name=args.name, epochs=args.epochs, seed=args.seed, trials=args.trials,
                 methods=args.methods, git=git_commit(),
                 machine=machine(), command=command_line("benchmarks/openset_table.py", argv or sys.argv[1:]))
    for trial in args.trials:
        for method in args.methods:
            key = f"{trial}/{method}"
            if key in table["cells"]:
                print(f"{key}: done before, skipped", flush=True)
                continue
            table["cells"][key] = cell = run_cell(args, trial, method)
            print(f"{key}: {json.dumps(cell)}", flush=True)
            write_table(table, json_path, md_path)  # after every cell: an interruption loses one cell
    write_table(table, json_path, md_path)
    print(markdown(table))
    return table


if __name__ == "__main__":
    from engine.cli import run_cli

    sys.exit(run_cli(main))
