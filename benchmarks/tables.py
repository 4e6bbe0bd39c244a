"""The results table of benchmarks/openset_table.py: its JSON file (read back and checked when a
table resumes, written whole or not at all) and its Markdown rendering; the reader of the results
JSONs the evaluation scripts write (also for scripts/results_table.py and benchmarks/protocol.py)."""
import json
import sys

import numpy as np

from core.errors import UserError, os_error_cause
from core.files import atomic_write, read_json
from core.values import is_finite_number

CELL_KEYS = ("accuracy", "auroc", "train_s", "eval_s", "epochs")


def read_results(path, fix):
    """A results JSON an evaluation script wrote, checked (trials, method, dataset, one finite
    accuracy and AUROC per trial), or one UserError line ending with `fix`."""
    r = read_json(path, "results file", fix)
    if not isinstance(r, dict):
        raise UserError(f"results file {path} holds a {type(r).__name__}, not an object; {fix}")
    trials = r.get("trials")
    if not (isinstance(trials, list) and trials):
        raise UserError(f"results file {path} has no list of trials; {fix}")
    for key in ("raw_top1_accuracy", "raw_auroc"):
        values = r.get(key)
        if not (isinstance(values, list) and len(values) == len(trials) and all(map(is_finite_number, values))):
            raise UserError(f"results file {path}: {key} is not {len(trials)} finite number(s), one per trial; {fix}")
    for key in ("method", "dataset"):
        if not isinstance(r.get(key), str):
            raise UserError(f"results file {path} has no {key} name; {fix}")
    return r


def read_table(path):
    """The table a previous command left in `path` (JSON): one UserError line when the file is not
    a table; a cell of the wrong shape is dropped with a warning, and run again."""
    table = read_json(path, "table file", "delete it to start the table afresh, or give another --out")
    if not isinstance(table, dict) or not isinstance(table.get("cells", {}), dict):
        raise UserError(f"table file {path} is not a table written by this script (an object with 'cells'); "
                        f"delete it to start the table afresh, or give another --out")
    table.setdefault("cells", {})
    for key, cell in list(table["cells"].items()):
        if not (isinstance(cell, dict) and all(is_finite_number(cell.get(k)) for k in CELL_KEYS)):
            print(f"warning: {path}: cell {key} is incomplete; it is run again", file=sys.stderr)
            del table["cells"][key]
    return table


def plus_minus(mean, std, n):
    """'mean ± std' to 4 places, the std only when it is over more than one value (n > 1)."""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if n > 1 else "")


def mean_std(values):
    return plus_minus(np.mean(values), np.std(values), len(values))


def markdown(table):
    """The results as Markdown: one row per trial, then mean ± std over the trials."""
    methods, trials, cells = table["methods"], table["trials"], table["cells"]
    head = "| trial | " + " | ".join(f"{m} accuracy | {m} AUROC" for m in methods) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(methods))]
    for t in trials:
        row = [cells.get(f"{t}/{m}") for m in methods]
        lines.append(f"| {t} | " + " | ".join("… | …" if c is None else f"{c['accuracy']:.4f} | {c['auroc']:.4f}"
                                             for c in row) + " |")
    done = {m: [cells[f"{t}/{m}"] for t in trials if f"{t}/{m}" in cells] for m in methods}
    lines.append("| mean ± std | " + " | ".join(
        f"{mean_std([c['accuracy'] for c in done[m]])} | {mean_std([c['auroc'] for c in done[m]])}"
        if done[m] else "… | …" for m in methods) + " |")
    times = ", ".join(f"{m} {sum(c['train_s'] for c in done[m]):.0f} s training + "
                      f"{sum(c['eval_s'] for c in done[m]):.0f} s evaluation" for m in methods)
    speed = ", ".join(f"{m} {np.mean([c['train_images_per_s'] for c in done[m]]):.0f}"
                      for m in methods if done[m] and all("train_images_per_s" in c for c in done[m]))
    epochs = sorted({c["epochs"] for m in methods for c in done[m]})
    return "\n".join([
        f"**{table['dataset']}**, trials {', '.join(map(str, trials))}; {len(cells)} of "
        f"{len(trials) * len(methods)} cells done; epochs per run: {', '.join(map(str, epochs)) or '…'}.",
        "", *lines, "",
        f"Accuracy: closed-set top-1 on the known test images (share, 0-1). AUROC: known vs unknown test "
        f"images, the paper's scores (CAC: distance x (1 - softmin); CE: maximum softmax). "
        f"Std over trials (numpy, ddof=0). Wall time: {times}. Training images/s, whole training script "
        f"(start-up and validation included): {speed or '…'}.",
        "", f"Machine: {table['machine']}. Code: git {table['git']}.", "",
        f"Command: `{table['command']}`", ""])


def write_table(table, json_path, md_path, render=markdown, kept="cells"):
    """<out>.json then <out>.md (`render(table)`), each whole or not at all (the folder made if missing);
    a failure is one UserError line saying that the finished `kept` are kept."""
    try:
        with atomic_write(json_path, "w") as f:
            json.dump(table, f, indent=1)
        with atomic_write(md_path, "w") as f:
            f.write(render(table))
    except OSError as e:
        raise UserError(f"cannot write {e.filename or json_path} {os_error_cause(e, json_path)}, then run the "
                        f"same command: finished {kept} are kept") from None
