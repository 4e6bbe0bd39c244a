"""Evaluation outputs: the mean ± std table, the results JSON and the per-sample .npz,
written as one set (ResultFiles): all of them or none, the JSON last."""
import json
import os
import tempfile

import numpy as np

from engine.errors import UserError
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


def check_result_targets(paths):
    """Before any evaluation work: each results file must be replaceable (a folder in its place
    would make the final rename fail after all the work)."""
    for path in paths:
        if os.path.isdir(path):
            raise UserError(f"cannot write results file {path}: a folder is in its place; move it away "
                            f"or evaluate under another --name")
        if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
            raise UserError(f"cannot write results file {path}: it is not a regular file; move it away")


class ResultFiles:
    """Files written as one set. `stage(path)` gives a temporary beside `path` to write; `commit()`
    renames every temporary onto its target in the order staged (stage the JSON last, as it
    names the others); `discard()` removes what is left. A failure anywhere, a rename
    included, leaves the previous set as it was: targets replaced before a failed rename are
    restored from hard links taken just before."""

    def __init__(self):
        self.staged = []  # (temporary, target)
        self.made_folders = []
        self.current = None  # the file being written or renamed: the one a failure names

    def stage(self, path):
        self.current = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder)
            self.made_folders.append(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
        os.close(fd)
        self.staged.append((tmp, path))
        return tmp

    def commit(self):
        umask = os.umask(0)
        os.umask(umask)
        replaced = []  # (target, whether it existed, hard link to its previous content or None)
        try:
            for tmp, target in self.staged:
                self.current = target
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
                replaced.append((target, os.path.isfile(target), _keep_previous(target)))
                os.replace(tmp, target)
            self.staged = []
        except BaseException:
            for target, existed, previous in reversed(replaced):
                _restore(target, existed, previous)
            raise
        finally:
            for _, _, previous in replaced:
                if previous and os.path.exists(previous):
                    os.remove(previous)

    def discard(self):
        for tmp, _ in self.staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.staged = []
        for folder in reversed(self.made_folders):  # a folder this set created, still empty
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


def _keep_previous(target):
    """A hard link to `target`'s present content (None when there is none or links fail)."""
    if not os.path.isfile(target):
        return None
    link = os.path.join(os.path.dirname(os.path.abspath(target)), f".tmp_previous_{os.path.basename(target)}")
    try:
        if os.path.lexists(link):
            os.remove(link)
        os.link(target, link)
        return link
    except OSError:
        return None


def _restore(target, existed, previous):
    try:
        if previous:
            os.replace(previous, target)
        elif not existed and os.path.isfile(target):
            os.remove(target)  # the set had no such file before
    except OSError:
        pass  # nothing better to do; the failure that brought us here is raised


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
