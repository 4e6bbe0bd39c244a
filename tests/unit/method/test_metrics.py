"""metrics.py against scikit-learn, pairwise formulas written out here, and hand-computed cases."""
import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, roc_curve

from metrics import (accuracy, acceptance_threshold, all_metrics, auroc, fpr_at_tpr,
                     open_set_predictions, oscr, oscr_curve)

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed trapz; 1.x has only trapz


def _rounded_scores(seed, n_known=150, n_unknown=60):
    """Scores on a coarse grid, so that many known and unknown scores tie."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 1, n_known), 1), np.round(rng.normal(0.8, 1, n_unknown), 1)


def _pairwise_auroc(known, unknown):
    """AUROC as a probability: an unknown image scores above a known one (ties half)."""
    total = sum((u > k) + 0.5 * (u == k) for k, u in itertools.product(known, unknown))
    return total / (len(known) * len(unknown))


def _pairwise_oscr(known, correct, unknown):
    """OSCR as a probability: a correct known image scores below an unknown one (ties half)."""
    total = sum((k < u) + 0.5 * (k == u) for (k, c), u in itertools.product(zip(known, correct), unknown) if c)
    return total / (len(known) * len(unknown))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_is_the_papers_and_matches_the_pairwise_formula(seed):
    known, unknown = _rounded_scores(seed)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])
    assert auroc(known, unknown) == pytest.approx(trapezoid(tpr, fpr), abs=1e-12)
    assert auroc(known, unknown) == pytest.approx(_pairwise_auroc(known, unknown), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oscr_matches_pairwise_definition_with_ties(seed):
    known, unknown = _rounded_scores(seed)
    correct = np.random.default_rng(seed + 10).random(len(known)) < 0.8
    value = oscr(known, correct, unknown)
    assert value == pytest.approx(_pairwise_oscr(known, correct, unknown), abs=1e-12)
    assert value <= correct.mean() + 1e-12  # at most the closed-set accuracy


def test_oscr_hand_cases():
    # perfect separator: OSCR = accuracy (every correct known accepted before any unknown)
    assert oscr([0.1, 0.2, 0.3, 0.4], [True, True, False, True], [1.0, 2.0]) == pytest.approx(0.75)
    # all correct and all tied with the unknowns: a straight line from (0, 0) to (1, 1) -> 0.5
    assert oscr([1, 1], [True, True], [1, 1, 1]) == pytest.approx(0.5)
    # known 0 (correct), 2 (wrong); unknown 1: CCR 1/2 at FPR 0, then FPR 1 -> 0.5
    assert oscr([0, 2], [True, False], [1]) == pytest.approx(0.5)
    # inverted separator: every unknown accepted before any known -> 0
    assert oscr([5, 6], [True, True], [1, 2]) == 0.0


def test_oscr_curve_points():
    # known 0 (correct), 2 (wrong), 3 (correct); unknown 1, 3: thresholds 0, 1, 2, 3
    x, y = oscr_curve([0, 2, 3], [True, False, True], [1, 3])
    assert x.tolist() == [0, 0, 0.5, 0.5, 1] and y.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert oscr([0, 2, 3], [True, False, True], [1, 3]) == pytest.approx(trapezoid(y, x))


def test_perfect_separator_gives_auroc_1_and_oscr_equal_to_accuracy():
    rng = np.random.default_rng(3)
    known, unknown = rng.uniform(0, 1, 50), rng.uniform(2, 3, 20)
    correct = rng.random(50) < 0.9
    assert auroc(known, unknown) == 1.0
    assert oscr(known, correct, unknown) == pytest.approx(correct.mean(), abs=1e-12)


def test_average_precision_hand_cases():
    """AP = sum over thresholds, high to low, of (recall gain) x precision, written out."""
    # unknown (positive for AUPR-out) 3, 1; known 2: ranks 3(P) 2(N) 1(P) -> precision 1 at recall 1/2,
    # 2/3 at recall 1; for AUPR-in (known positive, -score) the ranks are -1(N) -2(P) -3(N): 1/2 at recall 1
    m = all_metrics([0], [2.0], [0], [0, 0], [3.0, 1.0], [2.0], 1)
    assert m["aupr_out"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3) and m["aupr_in"] == pytest.approx(0.5)
    m = all_metrics([0, 0], [1.0, 1.0], [0, 0], [0], [1.0], [1.0], 1)  # all tied: one threshold
    assert m["aupr_out"] == pytest.approx(1 / 3) and m["aupr_in"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fpr_at_95_tpr_is_the_unknowns_accepted_at_the_threshold_accepting_95_percent_of_knowns(seed):
    known, unknown = _rounded_scores(seed)
    t = np.sort(known)[int(np.ceil(0.95 * len(known))) - 1]  # the smallest score accepting 95% of knowns
    assert fpr_at_tpr(known, unknown) == np.mean(unknown <= t)


def test_open_set_predictions_reject_above_threshold():
    assert open_set_predictions([0, 1, 2], [0.1, 0.5, 0.4], 0.4, 3).tolist() == [0, 3, 2]


def test_acceptance_threshold_accepts_at_least_the_share():
    scores = np.arange(20.0)[::-1]
    assert acceptance_threshold(scores, 0.95) == 18.0  # 19 of 20 accepted (score <= 18)
    assert acceptance_threshold([5.0], 0.95) == 5.0
    assert acceptance_threshold([1, 1, 1, 2], 0.5) == 1.0  # ties: 3 of 4 accepted
    rng = np.random.default_rng(0)
    for n in (7, 100, 333):
        s = rng.normal(size=n)
        t = acceptance_threshold(s)
        assert np.mean(s <= t) >= 0.95 and np.mean(s < t) < 0.95


def test_all_metrics_hand_case():
    # 2 known classes; known test: (pred, label, score); unknown scores; validation scores
    known_pred, known_labels = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    known_scores = np.array([0.1, 0.2, 0.3, 0.9])
    unknown_pred, unknown_scores = np.array([0, 1]), np.array([0.5, 1.0])
    val_scores = np.arange(1, 21) / 20 * 0.6  # 95% of them (19) are <= 0.57 -> threshold 0.57
    m = all_metrics(known_pred, known_scores, known_labels, unknown_pred, unknown_scores, val_scores, 2)
    assert m["threshold"] == pytest.approx(0.57)
    assert m["accuracy"] == 0.75
    # accepted at 0.57: known 0.1 (0 ok), 0.2 (1 ok), 0.3 (pred 1, wrong); 0.9 rejected -> unknown (wrong);
    # unknown 0.5 accepted as class 0 (wrong), 1.0 rejected (right): 3 right of 6
    assert m["open_set_accuracy"] == pytest.approx(3 / 6)
    # open-set predictions [0, 1, 1, 2, 0, 2] for labels [0, 1, 0, 0, 2, 2]: F1 = 2 TP / (2 TP + FP + FN)
    # class 0: TP 1, FP 1, FN 2 -> 2/5; class 1: TP 1, FP 1 -> 2/3; class 2: TP 1, FP 1, FN 1 -> 1/2
    assert m["open_set_macro_f1"] == pytest.approx((2 / 5 + 2 / 3 + 1 / 2) / 3)
    assert m["auroc"] == pytest.approx((4 + 3) / 8)  # unknown 0.5 beats 3 knowns, 1.0 beats all 4
    assert m["oscr"] == pytest.approx(_pairwise_oscr(known_scores, known_pred == known_labels, unknown_scores))
    assert m["fpr95"] == 0.5  # accepting 95% of 4 knowns = all (t = 0.9) also accepts unknown 0.5
    # unknown = positive, scores high to low: 1.0 (P) 0.9 (N) 0.5 (P) ...: precision 1 and 2/3
    assert m["aupr_out"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_auroc_matches_sklearn_roc_curve_and_hand_cases():
    rng = np.random.default_rng(0)
    known, unknown = rng.normal(0, 1, 200), rng.normal(1, 1, 70)
    labels = np.r_[np.zeros(200), np.ones(70)]
    fpr, tpr, _ = roc_curve(labels, np.r_[known, unknown])  # the original's computation
    assert auroc(known, unknown) == pytest.approx(auc(fpr, tpr), abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0  # every unknown scores higher
    assert auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5  # ties count half
    # pairs (known, unknown): (0,1)>,(0,0)=,(2,1)<,(2,0)< -> (1 + 0.5) / 4
    assert auroc([0, 2], [1, 0]) == pytest.approx(0.375)


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75
