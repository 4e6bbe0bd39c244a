"""Print a Markdown table of evaluation results JSON files (written by the eval scripts).

    python scripts/results_table.py results/Digits_demoCAC_trials0-0.json results/...

A file that is missing, not JSON, or not an evaluation's results is one error line, exit 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.cli import run_cli  # noqa: E402

FIX = "give a results file that eval_cacOpenset.py or eval_closedSet.py wrote"


def table(paths):
    import numpy as np  # here, after parsing: --help answers at once

    from engine.report import read_results

    rows = ["| method | dataset | trials | top-1 accuracy | AUROC |", "|---|---|---|---|---|"]
    for path in paths:
        r = read_results(path, FIX)
        acc, auc = np.array(r["raw_top1_accuracy"]), np.array(r["raw_auroc"])
        trials = f"{r['trials'][0]}-{r['trials'][-1]}" if len(r["trials"]) > 1 else str(r["trials"][0])
        spread = (lambda a: f" ± {a.std():.3f}") if len(acc) > 1 else (lambda a: "")
        method = "CAC" if r["method"] == "CAC" else "cross-entropy (max softmax)"
        rows.append(f"| {method} | {r['dataset']} | {trials} | {acc.mean():.3f}{spread(acc)} | "
                    f"{auc.mean():.3f}{spread(auc)} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description="Markdown table of evaluation results files")
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="results/*.json files the eval scripts wrote")
    print(table(p.parse_args(argv).results))


if __name__ == "__main__":
    sys.exit(run_cli(main))
