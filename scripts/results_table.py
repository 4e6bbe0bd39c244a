"""Print a Markdown table of evaluation results JSON files (written by the eval scripts).

    python scripts/results_table.py results/Digits_demoCAC_trials0-0.json results/...
"""
import json
import sys

import numpy as np


def table(paths):
    rows = ["| method | dataset | trials | top-1 accuracy | AUROC |", "|---|---|---|---|---|"]
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        acc, auc = np.array(r["raw_top1_accuracy"]), np.array(r["raw_auroc"])
        trials = f"{r['trials'][0]}-{r['trials'][-1]}" if len(r["trials"]) > 1 else str(r["trials"][0])
        spread = (lambda a: f" ± {a.std():.3f}") if len(acc) > 1 else (lambda a: "")
        method = "CAC" if r["method"] == "CAC" else "cross-entropy (max softmax)"
        rows.append(f"| {method} | {r['dataset']} | {trials} | {acc.mean():.3f}{spread(acc)} | "
                    f"{auc.mean():.3f}{spread(auc)} |")
    return "\n".join(rows)


def main(argv=None):
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python scripts/results_table.py RESULTS.json [...]", file=sys.stderr)
        return 2
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
