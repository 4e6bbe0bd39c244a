"""Print a Markdown table of evaluation results files (written by the eval scripts): one row
per network and scorer, with top-1 accuracy, AUROC and OSCR (mean ± std over the file's
trials, as the file's `summary` states them), then the machine each file was measured on. A file
given twice is listed once, with a warning. The README's demo table is its output.

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


def entry(tree, *keys):
    """tree[k1][k2]... where each level is a dict, else None (a results file may be damaged)."""
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def stated(r, scorer, key, path):
    """(mean, std) of metric `key` of `scorer` as the file states it: its `summary`, else (an older evaluation) the
    mean and std of its per-trial values; None when absent. A summary its per-trial values contradict is warned of."""
    import numpy as np
    from core.values import is_finite_number

    values = entry(r, "metrics", scorer, key)
    if not (isinstance(values, list) and values and all(map(is_finite_number, values))):
        values = None
    summary = entry(r, "summary", scorer, key)
    if isinstance(summary, dict) and all(is_finite_number(summary.get(k)) for k in ("mean", "std")):
        if values is not None and not np.isclose(np.mean(values), summary["mean"], rtol=0, atol=1e-9):
            print(f"warning: {path}: its summary gives {key} {summary['mean']:.4f} for {scorer}, its per-trial "
                  f"metrics {np.mean(values):.4f}; the summary is shown", file=sys.stderr)
        return summary["mean"], summary["std"]
    return None if values is None else (float(np.mean(values)), float(np.std(values)))


def cell(mean_std, trials):
    from benchmarks.tables import plus_minus

    return "-" if mean_std is None else plus_minus(*mean_std, trials)


def scorer_rows(r, path):
    """(scorer label, [cell per column]) for every scorer the file holds; a file without per-scorer results (an
    older evaluation) gives the paper's scorer's accuracy and AUROC from its raw lists."""
    import numpy as np
    from scorers import SCORER_LABELS

    trials = len(r["trials"])
    scorers = [s for s in (entry(r, "summary") or entry(r, "metrics") or {}) if isinstance(s, str)]
    if scorers:
        return [(SCORER_LABELS.get(s, s), [cell(stated(r, s, key, path), trials) for key, _ in COLUMNS])
                for s in scorers]
    raw = {"accuracy": r["raw_top1_accuracy"], "auroc": r["raw_auroc"]}
    return [(SCORER_LABELS.get(r.get("paper_scorer"), "paper's scorer"),
             [cell((np.mean(raw[key]), np.std(raw[key])) if key in raw else None, trials) for key, _ in COLUMNS])]


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
    seen = {}
    for path in paths:
        if os.path.realpath(path) in seen:
            print(f"warning: {path} is given twice (also as {seen[os.path.realpath(path)]}); it is listed once",
                  file=sys.stderr)
            continue
        seen[os.path.realpath(path)] = path
        r = read_results(path, FIX)
        trials = f"{r['trials'][0]}-{r['trials'][-1]}" if len(r["trials"]) > 1 else str(r["trials"][0])
        network = "CAC" if r["method"] == "CAC" else "cross-entropy"
        for scorer, cells in scorer_rows(r, path):
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
