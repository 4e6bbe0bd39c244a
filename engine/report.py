"""Evaluation outputs: the mean ± std table, the results JSON and the per-sample .npz (the
evaluation writes them as one set: core.files.FileSet), and the reader of results JSONs."""
import json

import numpy as np

from core.errors import UserError
from core.files import read_json
from core.values import is_finite_number
from metrics import METRIC_LABELS
from scorers import SCORER_LABELS


def summarize(records):
    """{"scorers": [...], "metrics": {scorer: {metric: [per trial]}}, "summary": {scorer: {metric:
    {"mean", "std"}}}} (std over trials, population, 0 for one trial)."""
    scorers = list(records[0]["metrics"])
    per_trial = {s: {m: [float(r["metrics"][s][m]) for r in records] for m in METRIC_LABELS} for s in scorers}
    summary = {s: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in per_trial[s].items()}
               for s in scorers}
    return {"scorers": scorers, "metrics": per_trial, "summary": summary}


def print_table(summary, paper, trials):
    """A Markdown table, one row per metric, one column per scorer."""
    scorers = summary["scorers"]
    print(f"\nOpen-set metrics, mean ± std over trials {trials} (the paper's scorer: {SCORER_LABELS[paper]}):")
    print("| metric | " + " | ".join(SCORER_LABELS.get(s, s) for s in scorers) + " |")
    print("|---" * (len(scorers) + 1) + "|")
    for metric, label in METRIC_LABELS.items():
        fmt = ".4g" if metric == "threshold" else ".4f"  # thresholds have any scale
        cells = [f"{summary['summary'][s][metric]['mean']:{fmt}} ± {summary['summary'][s][metric]['std']:{fmt}}"
                 for s in scorers]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


def read_results(path, fix):
    """A results JSON that write_results wrote, checked (trials, method, dataset, one finite
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


def write_results(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)


def write_scores(records, path):
    """One .npz for all trials; keys trial<T>_<array> (known_labels, unknown_labels = N,
    known_logits, unknown_logits, anchors for CAC) and trial<T>_<scorer>_<array> (known_pred,
    known_score, unknown_pred, unknown_score, val_score). Scores: larger = more likely unknown."""
    arrays = {}
    for r in records:
        t = f"trial{r['trial']}"
        arrays[f"{t}_known_labels"] = np.asarray(r["known_labels"])
        arrays[f"{t}_unknown_labels"] = np.full(len(r["unknown_logits"]), r["num_known"], dtype=np.int64)
        arrays[f"{t}_known_logits"] = np.asarray(r["known_logits"])
        arrays[f"{t}_unknown_logits"] = np.asarray(r["unknown_logits"])
        if r.get("anchors") is not None:
            arrays[f"{t}_anchors"] = np.asarray(r["anchors"])
        for scorer, outputs in r["scorers"].items():
            for key, value in outputs.items():
                arrays[f"{t}_{scorer}_{key}"] = np.asarray(value)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
