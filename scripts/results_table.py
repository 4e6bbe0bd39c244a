"""Print a Markdown table of evaluation results files (written by the eval scripts): one row
per network and scorer, with top-1 accuracy, AUROC and OSCR (mean ± std over the file's
trials), then the machine each file was measured on. The README's demo table is its output.

    python scripts/results_table.py results/Digits_demoCAC_trials0-0.json results/...

A file that is missing, not JSON, or not an evaluation's results is one error line, exit 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.cli import run_cli  # noqa: E402

FIX = "give a results file that eval_cacOpenset.py or eval_closedSet.py wrote"
COLUMNS = (("accuracy", "top-1 accuracy"), ("auroc", "AUROC"), ("oscr", "OSCR"))


def cell(values):
    import numpy as np
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f}" + (f" ± {values.std():.4f}" if len(values) > 1 else "")


def scorer_rows(r):
    """(scorer label, {metric: per-trial values}) for every scorer the file holds; a file
    without per-scorer metrics (an older evaluation) gives the paper's scorer's two columns."""
    from scorers import SCORER_LABELS
    metrics = r.get("metrics")
    if isinstance(metrics, dict) and metrics and all(isinstance(m, dict) for m in metrics.values()):
        return [(SCORER_LABELS.get(s, s), m) for s, m in metrics.items()]
    return [(SCORER_LABELS.get(r.get("paper_scorer"), "paper's scorer"),
             {"accuracy": r["raw_top1_accuracy"], "auroc": r["raw_auroc"]})]


def machine_line(r):
    m = r.get("machine")
    if not isinstance(m, dict):
        return "not recorded (evaluated by an older version)"
    where = m.get("gpu") or m.get("cpu") or m.get("platform", "?")
    return (f"{where}, {m.get('cpu_count', '?')} cores, {m.get('threads', '?')} torch threads, "
            f"device {m.get('device', '?')}, torch {m.get('torch', '?')}")


def table(paths):
    from benchmarks.tables import read_results
    rows = ["| network | scorer | dataset | trials | " + " | ".join(label for _, label in COLUMNS) + " |",
            "|---" * (4 + len(COLUMNS)) + "|"]
    machines = []
    for path in paths:
        r = read_results(path, FIX)
        trials = f"{r['trials'][0]}-{r['trials'][-1]}" if len(r["trials"]) > 1 else str(r["trials"][0])
        network = "CAC" if r["method"] == "CAC" else "cross-entropy"
        for scorer, metrics in scorer_rows(r):
            cells = [cell(metrics[key]) if key in metrics else "-" for key, _ in COLUMNS]
            rows.append(f"| {network} | {scorer} | {r['dataset']} | {trials} | " + " | ".join(cells) + " |")
        machines.append((os.path.basename(path), f"{machine_line(r)}, git {str(r.get('git', '?'))[:12]}"))
    if len({m for _, m in machines}) == 1:  # the usual case: one machine measured every file
        return "\n".join(rows + ["", f"Measured on {machines[0][1]}."])
    return "\n".join(rows + [""] + [f"{name}: measured on {m}." for name, m in machines])


def main(argv=None):
    p = argparse.ArgumentParser(description="Markdown table of evaluation results files")
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="results/*.json files the eval scripts wrote")
    args = p.parse_args(argv)
    print(table(args.results))


if __name__ == "__main__":
    sys.exit(run_cli(main))
