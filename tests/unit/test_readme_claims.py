"""The README's demo claim against the measured files it rests on (docs/results/Digits_<n>thread_*_trials0-4.json:
the five Digits trials evaluated at 1 and 2 threads): its table equals the files' summaries, and the two
statements it makes hold at both thread counts. An edit of either side that breaks the claim fails here."""
import json
import os
import re

import pytest

from conftest import REPO

THREADS = (1, 2)
ROWS = {"CAC: CAC score (paper)": ("CAC", "cac"), "CAC: min distance": ("CAC", "min_distance"),
        "cross-entropy: max softmax (paper baseline)": ("ClosedSet", "max_softmax"),
        "cross-entropy: max logit (MLS)": ("ClosedSet", "max_logit")}


def measured(threads, method):
    with open(os.path.join(REPO, "docs", "results", f"Digits_{threads}thread_{method}_trials0-4.json")) as f:
        result = json.load(f)
    assert result["trials"] == [0, 1, 2, 3, 4] and result["machine"]["threads"] == threads
    return result["metrics"]


def mean_std(values):
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5  # population std, as the files


def readme_table():
    """{row label: [cells]} of the README's five-trial table."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    head = "| scorer | AUROC, 1 thread | AUROC, 2 threads | top-1 accuracy, 1 thread | top-1 accuracy, 2 threads |"
    assert text.count(head) == 1
    lines = text.split(head, 1)[1].strip().splitlines()[1:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in lines[:len(ROWS)])}


def test_the_readme_table_is_the_measured_files():
    table = readme_table()
    assert list(table) == list(ROWS)
    for label, (method, scorer) in ROWS.items():
        expected = [f"{m:.4f} ± {s:.4f}" for metric in ("auroc", "accuracy") for threads in THREADS
                    for m, s in [mean_std(measured(threads, method)[scorer][metric])]]
        assert table[label] == expected, label


@pytest.mark.parametrize("threads", THREADS)
def test_what_the_readme_says_holds_at_this_thread_count(threads):
    """Accuracy within noise (the means differ by less than the sum of the spreads); CAC's mean AUROC above both
    cross-entropy scorers' by more than either's spread across trials."""
    cac, ce = measured(threads, "CAC"), measured(threads, "ClosedSet")
    (cac_acc, cac_acc_std), (ce_acc, ce_acc_std) = mean_std(cac["cac"]["accuracy"]), mean_std(ce["max_softmax"]["accuracy"])
    assert abs(cac_acc - ce_acc) < cac_acc_std + ce_acc_std
    cac_auroc, cac_std = mean_std(cac["cac"]["auroc"])
    for scorer in ("max_softmax", "max_logit"):
        auroc, std = mean_std(ce[scorer]["auroc"])
        assert cac_auroc - auroc > max(cac_std, std), scorer
    with open(os.path.join(REPO, "README.md")) as f:
        said = " ".join(f.read().split())
    assert re.search(r"What holds at both thread counts: closed-set accuracy is within noise", said)
    assert "CAC's mean AUROC is above both cross-entropy scorers' by more than either's spread" in said
