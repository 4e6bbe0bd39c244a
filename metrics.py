"""The open-set metrics from per-image scores, top-1 accuracy and the OSCR curve: scikit-learn's where it has
them, OSCR and the operating threshold written here. Every score is an *unknown* score, larger = more likely no
known class (the CAC score min_i s_i; minus the max softmax; ...); an image is accepted as known when its score
<= a threshold; ties count half wherever a known and an unknown score are compared (as sklearn's ROC does)."""
import math

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

ACCEPT_RATE = 0.95  # share of known validation images the operating threshold accepts

METRIC_LABELS = {  # metric key -> label in tables and plots, in the order they are printed
    "accuracy": "top-1 accuracy (closed set)", "auroc": "AUROC", "oscr": "OSCR",
    "aupr_in": "AUPR-in (known = positive)", "aupr_out": "AUPR-out (unknown = positive)", "fpr95": "FPR at 95% TPR",
    "open_set_accuracy": "open-set accuracy @ threshold", "open_set_macro_f1": "open-set macro-F1 @ threshold",
    "threshold": "threshold (95% of known val)",
}


def _scores(x):
    return np.asarray(x, dtype=np.float64).ravel()


def auroc(known_scores, unknown_scores):
    """AUROC of telling unknown (positive) from known images: the paper's computation, sklearn's."""
    scores = np.concatenate([_scores(known_scores), _scores(unknown_scores)])
    is_unknown = np.r_[np.zeros(len(known_scores)), np.ones(len(unknown_scores))]
    return float(roc_auc_score(is_unknown, scores))


def acceptance_threshold(scores, accept_rate=ACCEPT_RATE):
    """The smallest threshold t with at least `accept_rate` of `scores` <= t (one of the scores)."""
    s = np.sort(_scores(scores))
    if len(s) == 0:
        raise ValueError("no score to calibrate a threshold on")
    k = max(1, math.ceil(round(accept_rate * len(s), 9)))  # round: 0.95 * 20 must be 19, not 19.000001
    return float(s[k - 1])


def accuracy(predicted, labels):
    return float(np.mean(np.asarray(predicted).ravel() == np.asarray(labels).ravel()))


def oscr_curve(known_scores, known_correct, unknown_scores):
    """The OSCR curve (Dhamija et al. 2018): (FPR, CCR) points from (0, 0), as the threshold sweeps every
    score: CCR = share of known images accepted and correctly classified, FPR = of unknown images accepted."""
    known, unknown = _scores(known_scores), _scores(unknown_scores)
    correct = np.asarray(known_correct, dtype=bool).ravel()
    thresholds = np.unique(np.concatenate([known, unknown]))  # ascending
    ccr = np.searchsorted(np.sort(known[correct]), thresholds, side="right") / len(known)
    fpr = np.searchsorted(np.sort(unknown), thresholds, side="right") / len(unknown)
    return np.r_[0.0, fpr], np.r_[0.0, ccr]


def oscr(known_scores, known_correct, unknown_scores):
    """Open-set classification rate, the area under oscr_curve: at most the closed-set accuracy."""
    x, y = oscr_curve(known_scores, known_correct, unknown_scores)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))  # trapezoids: a tie moves both at once


def fpr_at_tpr(known_scores, unknown_scores, tpr=ACCEPT_RATE):
    """Share of unknown test images accepted at the first ROC point (scikit-learn's, every threshold kept)
    accepting `tpr` of the known ones (known = positive, as in the out-of-distribution literature)."""
    is_known = np.r_[np.ones(len(known_scores)), np.zeros(len(unknown_scores))]
    fpr, tprs, _ = roc_curve(is_known, -np.r_[_scores(known_scores), _scores(unknown_scores)],
                             drop_intermediate=False)
    return float(fpr[np.argmax(tprs >= tpr)])


def open_set_predictions(predicted, scores, threshold, unknown_label):
    """Closed-set predictions, with every image scoring above `threshold` set to `unknown_label`."""
    return np.where(_scores(scores) <= threshold, np.asarray(predicted).ravel(), unknown_label)


def all_metrics(known_pred, known_scores, known_labels, unknown_pred, unknown_scores, val_scores, num_known,
                accept_rate=ACCEPT_RATE):
    """Every metric of METRIC_LABELS for one scorer on one trial. The operating threshold accepts
    `accept_rate` of the known *validation* images (no test image chooses it)."""
    known_pred, known_labels = np.asarray(known_pred).ravel(), np.asarray(known_labels).ravel()
    known_scores, unknown_scores = _scores(known_scores), _scores(unknown_scores)
    correct = known_pred == known_labels
    threshold = acceptance_threshold(val_scores, accept_rate)
    # an accepted unknown image keeps its closed-set class: a false positive of that class
    open_pred = np.r_[open_set_predictions(known_pred, known_scores, threshold, num_known),
                      open_set_predictions(unknown_pred, unknown_scores, threshold, num_known)]
    open_labels = np.r_[known_labels, np.full(len(unknown_scores), num_known)]
    both = np.r_[known_scores, unknown_scores]
    is_unknown = np.r_[np.zeros(len(known_scores)), np.ones(len(unknown_scores))]
    return {
        "accuracy": accuracy(known_pred, known_labels),
        "auroc": auroc(known_scores, unknown_scores),
        "oscr": oscr(known_scores, correct, unknown_scores),
        "aupr_in": float(average_precision_score(1 - is_unknown, -both)),  # known = positive
        "aupr_out": float(average_precision_score(is_unknown, both)),
        "fpr95": fpr_at_tpr(known_scores, unknown_scores),
        "open_set_accuracy": float(np.mean(open_pred == open_labels)),
        "open_set_macro_f1": float(f1_score(open_labels, open_pred, labels=range(num_known + 1), average="macro",
                                            zero_division=0)),
        "threshold": threshold,
    }
