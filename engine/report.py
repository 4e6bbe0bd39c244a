"""The report of an evaluation from its per-trial results: the original's four lines, the table of every
metric of every scorer, and the results JSON, the per-image .npz and the plots written as one set."""
import json
from dataclasses import dataclass

import numpy as np

from core.errors import UserError, os_error_cause
from core.files import FileSet
from datasets.classnames import TrialClasses
from engine.accel import describe_machine
from metrics import ACCEPT_RATE, METRIC_LABELS
from scorers import SCORER_LABELS


@dataclass
class ScorerOutput:
    """One scorer on one trial, per image (score: larger = more likely unknown), in the .npz's order."""
    known_pred: np.ndarray
    known_score: np.ndarray
    unknown_pred: np.ndarray
    unknown_score: np.ndarray
    val_score: np.ndarray


@dataclass
class TrialResult:
    """What one trial's evaluation hands to the report."""
    trial: int
    num_known: int
    class_names: list
    known_labels: np.ndarray  # of the known test images (the unknown ones are all num_known)
    known_logits: np.ndarray
    unknown_logits: np.ndarray
    scores: dict  # scorer name -> ScorerOutput, in the scorers' order
    metrics: dict  # scorer name -> {metric of METRIC_LABELS: value}
    seconds: float
    anchors: np.ndarray | None = None  # the class-mean anchors of a CAC network
    classes: TrialClasses | None = None  # the classes by id and name, each test image's own class and file


def summarize(results, scorers):
    """The per-trial values and mean and population std of every metric of every scorer."""
    scorers = list(scorers)
    per_trial = {s: {m: [float(r.metrics[s][m]) for r in results] for m in METRIC_LABELS} for s in scorers}
    summary = {s: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in per_trial[s].items()}
               for s in scorers}
    return {"scorers": scorers, "metrics": per_trial, "summary": summary}


def print_table(summary, paper, trials):
    scorers, cells = summary["scorers"], summary["summary"]
    over = f"mean ± std over trials {trials}" if len(trials) > 1 else f"trial {trials[0]}"
    print(f"\nOpen-set metrics, {over} (the paper's scorer: {SCORER_LABELS[paper]}):")
    print("| metric | " + " | ".join(SCORER_LABELS.get(s, s) for s in scorers) + " |")
    print("|---" * (len(scorers) + 1) + "|")
    for metric, label in METRIC_LABELS.items():
        fmt = ".4g" if metric == "threshold" else ".4f"  # thresholds have any scale
        print(f"| {label} | " + " | ".join(f"{cells[s][metric]['mean']:{fmt}}" + (
            f" ± {cells[s][metric]['std']:{fmt}}" if len(trials) > 1 else "") for s in scorers) + " |")
    print()


def write_results(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)


def write_scores(results, path):
    """One .npz for all trials, keys trial<T>_<array>, trial<T>_<scorer>_<ScorerOutput field>, the class names
    of the labels and each test image's original class (and path); str arrays, no pickle to load."""
    arrays = {}
    for r in results:
        t, classes = f"trial{r.trial}", r.classes
        arrays.update({f"{t}_known_labels": np.asarray(r.known_labels),
                       f"{t}_unknown_labels": np.full(len(r.unknown_logits), r.num_known, dtype=np.int64),
                       f"{t}_known_logits": np.asarray(r.known_logits),
                       f"{t}_unknown_logits": np.asarray(r.unknown_logits)})
        if r.anchors is not None:
            arrays[f"{t}_anchors"] = np.asarray(r.anchors)
        for scorer, output in r.scores.items():
            arrays.update({f"{t}_{scorer}_{key}": np.asarray(value) for key, value in vars(output).items()})
        if classes is not None:
            arrays[f"{t}_class_names"] = np.asarray(classes.known_names, dtype=str)
            for part in ("known", "unknown"):
                arrays[f"{t}_{part}_classes"] = np.asarray(getattr(classes, f"{part}_image_classes"), dtype=np.int64)
                arrays[f"{t}_{part}_class_names"] = np.asarray(classes.image_names(part), dtype=str)
                if getattr(classes, f"{part}_paths") is not None:
                    arrays[f"{t}_{part}_paths"] = np.asarray(getattr(classes, f"{part}_paths"), dtype=str)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def report(evaluation, results):
    """Print the original's four lines and the table; write the results files as one set, each to a temporary
    renamed at the end, the JSON last, so that a failure leaves the previous set whole. Returns the JSON's content."""
    args, paper, stem = evaluation.args, evaluation.scorers.paper, evaluation.stem
    summary = summarize(results, evaluation.scorers.names)
    all_accuracy, all_auroc = (summary["metrics"][paper][m] for m in ("accuracy", "auroc"))  # the paper scorer's
    mean_acc, mean_auroc = (summary["summary"][paper][m]["mean"] for m in ("accuracy", "auroc"))
    rounded = ["[" + ", ".join(f"{v:.4f}" for v in values) + "]" for values in (all_accuracy, all_auroc)]  # as the
    print(f"Raw Top-1 Accuracy: {rounded[0]}\nRaw AUROC: {rounded[1]}")  # table; the results JSON keeps every digit
    print(f"Average Top-1 Accuracy: {mean_acc:.4f}\nAverage AUROC: {mean_auroc:.4f}")
    print_table(summary, paper, evaluation.trials)
    result = {"dataset": args.dataset, "method": evaluation.method, "name": args.name, "trials": evaluation.trials,
              "raw_top1_accuracy": all_accuracy, "raw_auroc": all_auroc,
              "average_top1_accuracy": mean_acc, "average_auroc": mean_auroc,
              "args": vars(args), "git": evaluation.commit, **summary, "paper_scorer": paper,
              "accept_rate": ACCEPT_RATE, "seconds_per_trial": [round(r.seconds, 3) for r in results],
              "machine": describe_machine(evaluation.device),
              "classes": [{"trial": r.trial, **r.classes.as_json()} for r in results if r.classes is not None],
              "scores_file": stem + ".npz"}
    files = FileSet()
    try:
        write_scores(results, files.stage(stem + ".npz"))
        if args.plots:
            from engine.figures import draw_evaluation  # matplotlib is needed only here

            result["plots"] = draw_evaluation(results, stem, evaluation.method, args, files.stage)
        write_results(result, files.stage(stem + ".json"))
        files.commit()
    except OSError as e:
        raise UserError(f"cannot write {files.current} {os_error_cause(e, files.current)}, then evaluate again; "
                        f"the previous results are unchanged") from None
    finally:
        files.discard()
    for path in result.get("plots", []):
        print(f"plot written to {path}")
    print(f"scores written to {stem}.npz\nresults written to {stem}.json")
    return result
