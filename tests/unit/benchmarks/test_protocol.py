"""benchmarks/protocol.py: the reproduce table's mean ± std equal numpy's over the per-cell
results files (fake ones here), its Markdown shows them, and a cell's phase state is read
from its ...Last.pth."""
import json

import numpy as np
import pytest
import torch

from benchmarks.protocol import markdown, phase_state, read_scorers, summarize, trial_list, write_table
from networks.weights import LAST, CROSS_ENTROPY, weights_path

SCORERS = {"CAC": ("cac", "min_distance"), "CE": ("max_softmax", "max_logit")}


def fake_result(path, rng, method):
    scorers = SCORERS[method]
    metrics = {s: {m: [float(rng.uniform(0.5, 1))] for m in ("accuracy", "auroc", "oscr", "fpr95")} for s in scorers}
    path.write_text(json.dumps({"dataset": "MNIST", "method": method, "trials": [0], "scorers": list(scorers),
                                "raw_top1_accuracy": metrics[scorers[0]]["accuracy"],
                                "raw_auroc": metrics[scorers[0]]["auroc"], "metrics": metrics}))
    return metrics


def test_table_is_numpys_mean_and_std_of_the_results_files(tmp_path):
    rng = np.random.default_rng(1)
    cells, truth = {}, {}
    for ds in ("MNIST", "SVHN"):
        for trial in (0, 1, 2):
            for method in ("CAC", "CE"):
                path = tmp_path / f"{ds}{trial}{method}.json"
                truth[ds, trial, method] = fake_result(path, rng, method)
                cells[f"{ds}/{trial}/{method}"] = {"result": read_scorers(str(path)), "eval_s": 1.0,
                                                   "phase0": {"epochs": 1, "train_s": 2.0}}
    del cells["SVHN/2/CE"]["result"]  # a cell not evaluated yet: not counted
    table = {"cells": cells, "datasets": ["MNIST", "SVHN"], "trials": [0, 1, 2], "methods": ["CAC", "CE"],
             "recipe": "paper", "budget": 0.1, "epochs": {"MNIST": [4, 4], "SVHN": [5, 2]}, "planned": 12,
             "machine": "m", "git": "g", "command": "c"}
    write_table(table, str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out.json").read_text())
    text = (tmp_path / "out.md").read_text()
    assert saved["done"] == 11 and saved["wall_s"] == 12 * 1.0 + 12 * 2.0
    for (ds, method), trials in {("MNIST", "CAC"): 3, ("MNIST", "CE"): 3, ("SVHN", "CAC"): 3, ("SVHN", "CE"): 2}.items():
        for scorer in SCORERS[method]:
            for metric in ("accuracy", "auroc", "oscr"):
                values = [truth[ds, t, method][scorer][metric][0] for t in range(trials)]
                mean = sum(values) / trials
                std = (sum((v - mean) ** 2 for v in values) / trials) ** 0.5  # population std, written out
                got = saved["summary"][ds][method][scorer][metric]
                assert got["mean"] == pytest.approx(mean, abs=1e-12) and got["std"] == pytest.approx(std, abs=1e-12)
                assert got["n"] == trials and f"{mean:.4f} ± {std:.4f} (n={trials})" in text
    assert "| data set | CAC cac | CAC min_distance | CE max_softmax | CE max_logit |" in text
    assert "MNIST 4 + 4; SVHN 5 + 2" in text and "11 of 12 cells done" in text
    assert markdown(saved) == text
    assert summarize(cells, ["MNIST"], [5], ["CAC"]) == {}
    # the paper's CAC AUROC beside ours (SPEC section 7's values, written out here), and the difference
    for ds, paper in (("MNIST", 0.991), ("SVHN", 0.941)):
        mine = [truth[ds, t, "CAC"]["cac"]["auroc"][0] for t in range(3)]
        row = next(r for r in saved["published"] if r["dataset"] == ds)
        assert (row["method"], row["scorer"], row["metric"], row["published"]) == ("CAC", "cac", "auroc", paper)
        assert row["difference"] == pytest.approx(sum(mine) / 3 - paper, abs=1e-12)
        assert f"| {ds} | AUROC | CAC `cac` | {sum(mine) / 3:.4f} ±" in text and f"{sum(mine) / 3 - paper:+.4f}" in text
    assert len(saved["published"]) == 2 and "Miller et al., WACV 2021" in text and "not re-read" in text
    assert "Vaze" not in text.split("Scorers:")[0]  # their TinyImageNet numbers: not for this table


def test_vaze_numbers_under_the_modern_recipes_and_the_one_phase_header(tmp_path):
    table = {"cells": {}, "datasets": ["TinyImageNet", "Digits"], "trials": [0], "methods": ["CAC", "CE"],
             "recipe": "vaze", "budget": 1.0, "epochs": {"TinyImageNet": [600], "Digits": [600]}, "planned": 4,
             "machine": "m", "git": "g", "command": "c"}
    write_table(table, str(tmp_path / "out"))
    text = (tmp_path / "out.md").read_text()
    rows = {(r["method"], r["metric"]): r for r in table["published"]}
    assert set(rows) == {("CAC", "auroc"), ("CE", "auroc"), ("CE", "accuracy")}
    assert rows["CE", "accuracy"]["published"] == 0.842 and rows["CE", "auroc"]["ours"] is None
    assert "README.md line 82" in text and "| TinyImageNet | accuracy | CE `max_logit` | … | 0.842 | … | [2] |" in text
    assert "one training run on the whole training set" in text and "TinyImageNet 600;" in text


def test_phase_state_from_the_last_checkpoint(tmp_path):
    path = tmp_path / weights_path("Digits", 0, "x", LAST[CROSS_ENTROPY])
    assert phase_state(str(tmp_path), "Digits", 0, "x", "CE", 0) == "none"
    path.parent.mkdir(parents=True)
    for saved, want in (((0, 3, 5), ("stopped", "none")), ((0, 5, 5), ("done", "none")),
                        ((1, 6, 8), ("done", "stopped")), ((1, 8, 8), ("done", "done"))):
        phase, epoch, end = saved
        torch.save({"net": {}, "phase": phase, "epoch": epoch, "end_epoch": end}, path)
        assert (phase_state(str(tmp_path), "Digits", 0, "x", "CE", 0),
                phase_state(str(tmp_path), "Digits", 0, "x", "CE", 1)) == want, saved
    path.write_bytes(b"not a checkpoint")
    assert phase_state(str(tmp_path), "Digits", 0, "x", "CE", 0) == "none"


def test_trial_list():
    assert (trial_list("0-4"), trial_list("3")) == ([0, 1, 2, 3, 4], [3])
    for bad in ("4-2", "-1", "a"):
        with pytest.raises(ValueError):
            trial_list(bad)
