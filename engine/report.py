"""The report of an evaluation, from its typed per-trial results: the original's four lines,
the mean ± std table of every metric of every scorer, and the results files written as one
set (core.files.FileSet): the results JSON, the per-image .npz and the plots; also the
reader of results JSONs."""
import json
from dataclasses import dataclass, fields

import numpy as np

from core.errors import UserError
from core.files import FileSet, read_json
from core.values import is_finite_number
from datasets.classnames import TrialClasses
from engine.accel import describe_machine
from metrics import ACCEPT_RATE, METRIC_LABELS
from networks.weights import CAC
from scorers import SCORER_LABELS


@dataclass
class ScorerOutput:
    """One scorer on one trial, per image (numpy arrays; score: larger = more likely unknown)."""
    known_pred: np.ndarray
    known_score: np.ndarray
    unknown_pred: np.ndarray
    unknown_score: np.ndarray
    val_score: np.ndarray

    def arrays(self):
        """{field: array}, in the order of the fields (the .npz's order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    """{"scorers": [...], "metrics": {scorer: {metric: [per trial]}}, "summary": {scorer: {metric:
    {"mean", "std"}}}} (std over trials, population, 0 for one trial)."""
    scorers = list(scorers)
    per_trial = {s: {m: [float(r.metrics[s][m]) for r in results] for m in METRIC_LABELS} for s in scorers}
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


def class_arrays(classes, t):
    """The .npz arrays naming the classes of trial key `t`: trial<T>_class_names (of labels
    0..N-1), per test image trial<T>_{known,unknown}_classes (original class id),
    trial<T>_{known,unknown}_class_names and, for image files, trial<T>_{known,unknown}_paths."""
    arrays = {f"{t}_class_names": np.asarray(classes.known_names, dtype=str)}
    for part in ("known", "unknown"):
        arrays[f"{t}_{part}_classes"] = np.asarray(getattr(classes, f"{part}_image_classes"), dtype=np.int64)
        arrays[f"{t}_{part}_class_names"] = np.asarray(classes.image_names(part), dtype=str)
        paths = getattr(classes, f"{part}_paths")
        if paths is not None:
            arrays[f"{t}_{part}_paths"] = np.asarray(paths, dtype=str)
    return arrays


def write_scores(results, path):
    """One .npz for all trials; keys trial<T>_<array> (known_labels, unknown_labels = N,
    known_logits, unknown_logits, anchors for CAC), trial<T>_<scorer>_<array> (known_pred,
    known_score, unknown_pred, unknown_score, val_score) and the class arrays (class_arrays).
    Scores: larger = more likely unknown. Strings are numpy str arrays: no pickle to load."""
    arrays = {}
    for r in results:
        t = f"trial{r.trial}"
        arrays[f"{t}_known_labels"] = np.asarray(r.known_labels)
        arrays[f"{t}_unknown_labels"] = np.full(len(r.unknown_logits), r.num_known, dtype=np.int64)
        arrays[f"{t}_known_logits"] = np.asarray(r.known_logits)
        arrays[f"{t}_unknown_logits"] = np.asarray(r.unknown_logits)
        if r.anchors is not None:
            arrays[f"{t}_anchors"] = np.asarray(r.anchors)
        for scorer, output in r.scores.items():
            for key, value in output.arrays().items():
                arrays[f"{t}_{scorer}_{key}"] = np.asarray(value)
        if r.classes is not None:
            arrays.update(class_arrays(r.classes, t))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def result_targets(stem, trials, method, plots):
    """Every file an evaluation may write, to check before any work."""
    paths = [stem + ".npz", stem + ".json"]
    if plots:
        from engine.figures import planned_plots  # matplotlib is needed only here

        paths += planned_plots(stem, trials, cac=method == CAC)
    return paths


def write_result_set(result, results, stem, method, args):
    """The .npz, the plots and the JSON, as one set: each written to a temporary beside it,
    then all renamed, the JSON last; any failure (a full disk) leaves the previous set whole
    and is one line naming the file."""
    files = FileSet()
    try:
        result["scores_file"] = stem + ".npz"
        write_scores(results, files.stage(stem + ".npz"))
        if args.plots:
            from engine.figures import draw_evaluation

            result["plots"] = draw_evaluation(results, stem, method, args, files.stage)
        write_results(result, files.stage(stem + ".json"))
        files.commit()
    except OSError as e:
        raise UserError(f"cannot write {files.current} ({e.strerror or e}); the previous results are unchanged: "
                        f"free space or fix the folder's permissions, then evaluate again") from None
    finally:
        files.discard()


def report(evaluation, results):
    """Print the original's four lines for the paper's scorer, then a table of every metric of
    every scorer; write results/*.json and *.npz and the optional plots as one set. Returns
    the results JSON's content. `evaluation`: an engine.evaluation.Evaluation."""
    args, scorers, trials, stem = evaluation.args, evaluation.scorers, evaluation.trials, evaluation.stem
    paper = scorers.paper
    all_accuracy = [r.metrics[paper]["accuracy"] for r in results]
    all_auroc = [r.metrics[paper]["auroc"] for r in results]
    mean_acc, mean_auroc = float(np.mean(all_accuracy)), float(np.mean(all_auroc))
    print(f"Raw Top-1 Accuracy: {all_accuracy}")
    print(f"Raw AUROC: {all_auroc}")
    print(f"Average Top-1 Accuracy: {mean_acc}")
    print(f"Average AUROC: {mean_auroc}")
    summary = summarize(results, scorers.names)
    print_table(summary, paper, trials)
    result = {"dataset": args.dataset, "method": evaluation.method, "name": args.name, "trials": trials,
              "raw_top1_accuracy": all_accuracy, "raw_auroc": all_auroc,
              "average_top1_accuracy": mean_acc, "average_auroc": mean_auroc,
              "args": vars(args), "git": evaluation.commit, **summary, "paper_scorer": paper,
              "accept_rate": ACCEPT_RATE, "seconds_per_trial": [round(r.seconds, 3) for r in results],
              "machine": describe_machine(evaluation.device),
              "classes": [{"trial": r.trial, **r.classes.as_json()} for r in results if r.classes is not None]}
    write_result_set(result, results, stem, evaluation.method, args)
    for path in result.get("plots", []):
        print(f"plot written to {path}")
    print(f"scores written to {result['scores_file']}")
    print(f"results written to {stem}.json")
    return result
