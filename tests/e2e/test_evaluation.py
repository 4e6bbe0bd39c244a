"""Evaluation beyond the four lines, on Digits networks trained for one epoch (conftest's
`evaluated_digits`, evaluated again here from the CAC checkpoint as training left it): every
scorer's metrics recomputed from the saved .npz, anchor means kept in the calibration beside
the checkpoint (identical metrics, --recompute_anchors, made again when the weights change),
its thresholds, the checkpoint never written, --plots, and the anchor-cache benchmark."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from conftest import (DIGITS_CAC, DIGITS_CE, DIGITS_EVAL, DIGITS_STEM, REPO, ok, read_calibration_file,
                      run_script, sha256, stderr_lines, work)
from metrics import acceptance_threshold, all_metrics


def results(cwd, method):
    stem = os.path.join(cwd, DIGITS_STEM[method])
    with open(stem + ".json") as f:
        return json.load(f), dict(np.load(stem + ".npz"))


@pytest.fixture(scope="module")
def digits(evaluated_digits, tmp_path_factory):
    """The evaluations of the CAC checkpoint as training left it: first (the anchor pass),
    again with --plots (anchor means read back), with --recompute_anchors; then the
    cross-entropy one with --plots. `digests`: the SHA-256 of both checkpoints before and after each."""
    cwd = work(evaluated_digits, tmp_path_factory.mktemp("eval"), uncalibrated=True)
    shutil.rmtree(os.path.join(cwd, "results"))
    checkpoints = [os.path.join(cwd, DIGITS_CAC), os.path.join(cwd, DIGITS_CE)]
    digests = [[sha256(path) for path in checkpoints]]
    runs = {}
    for name, script, extra in (("cac_first", "eval_cacOpenset.py", []), ("cac_cached", "eval_cacOpenset.py", ["--plots"]),
                                ("cac_recomputed", "eval_cacOpenset.py", ["--recompute_anchors"]),
                                ("ce", "eval_closedSet.py", ["--plots"])):
        runs[name] = ok(run_script(script, *DIGITS_EVAL + extra, cwd=cwd, in_process=True))
        runs[f"{name}_results"] = results(cwd, "CAC" if name.startswith("cac") else "ClosedSet")
        digests.append([sha256(path) for path in checkpoints])
    return {"cwd": cwd, "runs": runs, "digests": digests}


def test_four_lines_come_first_and_match_the_npz(digits):
    out = digits["runs"]["cac_first"].stdout
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Raw Top-1 Accuracy")))
    assert [line.split(":")[0] for line in lines[start:start + 4]] == [
        "Raw Top-1 Accuracy", "Raw AUROC", "Average Top-1 Accuracy", "Average AUROC"]
    assert "| OSCR |" in out and out.index("| OSCR |") > out.index("Average AUROC")
    result, z = digits["runs"]["cac_first_results"]
    truth = np.r_[np.zeros(len(z["trial0_cac_known_score"])), np.ones(len(z["trial0_cac_unknown_score"]))]
    auroc = roc_auc_score(truth, np.r_[z["trial0_cac_known_score"], z["trial0_cac_unknown_score"]])
    assert result["raw_auroc"] == [pytest.approx(auroc, abs=1e-12)]
    assert result["raw_top1_accuracy"] == [np.mean(z["trial0_cac_known_pred"] == z["trial0_known_labels"])]


def test_npz_scores_follow_from_the_saved_logits(digits):
    _, z = digits["runs"]["cac_first_results"]
    for part in ("known", "unknown"):
        d = np.linalg.norm(z[f"trial0_{part}_logits"][:, None, :].astype(np.float64) - z["trial0_anchors"][None], axis=2)
        softmin = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
        s = d * (1 - softmin)  # SPEC 1, written out
        np.testing.assert_allclose(z[f"trial0_cac_{part}_score"], s.min(1), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(z[f"trial0_min_distance_{part}_score"], d.min(1), rtol=1e-9)
        assert np.array_equal(z[f"trial0_cac_{part}_pred"], s.argmin(1))
    _, z = results(digits["cwd"], "ClosedSet")
    logits = z["trial0_known_logits"].astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(z["trial0_max_softmax_known_score"], -probs.max(1), rtol=1e-5)
    np.testing.assert_allclose(z["trial0_max_logit_known_score"], -logits.max(1), rtol=1e-6)
    assert (z["trial0_unknown_labels"] == 6).all() and set(np.unique(z["trial0_known_labels"])) <= set(range(6))


@pytest.mark.parametrize("method,scorers", [("CAC", ["cac", "min_distance"]),
                                            ("ClosedSet", ["max_softmax", "max_logit"])])
def test_json_holds_every_metric_of_every_scorer(digits, method, scorers):
    result, z = results(digits["cwd"], method)
    assert result["scorers"] == scorers and result["paper_scorer"] == scorers[0]
    for scorer in scorers:
        want = all_metrics(z[f"trial0_{scorer}_known_pred"], z[f"trial0_{scorer}_known_score"],
                           z["trial0_known_labels"], z[f"trial0_{scorer}_unknown_pred"],
                           z[f"trial0_{scorer}_unknown_score"], z[f"trial0_{scorer}_val_score"], 6)
        for metric, value in want.items():
            assert result["metrics"][scorer][metric] == [pytest.approx(value, abs=1e-12)], (scorer, metric)
            assert result["summary"][scorer][metric] == {"mean": pytest.approx(value, abs=1e-12), "std": 0.0}
        assert 0 <= want["oscr"] <= want["accuracy"] + 1e-12


def test_anchor_means_are_cached_with_identical_metrics(digits):
    runs = digits["runs"]
    assert "anchor means computed" in runs["cac_first"].stdout
    assert "anchor means read from the calibration" in runs["cac_cached"].stdout
    assert "anchor means computed" in runs["cac_recomputed"].stdout
    first, cached, recomputed = (runs[k][0] for k in ("cac_first_results", "cac_cached_results",
                                                      "cac_recomputed_results"))
    assert first["metrics"] == cached["metrics"] == recomputed["metrics"]
    assert np.array_equal(runs["cac_first_results"][1]["trial0_anchors"], runs["cac_cached_results"][1]["trial0_anchors"])


def test_checkpoints_stay_byte_identical_and_the_calibration_is_beside_them(digits):
    assert all(after == digits["digests"][0] for after in digits["digests"][1:]), digits["digests"]
    cal = read_calibration_file(os.path.join(digits["cwd"], DIGITS_CAC))
    assert cal["checkpoint_sha256"] == digits["digests"][0][0] and cal["method"] == "CAC"
    _, z = results(digits["cwd"], "CAC")
    assert np.array_equal(np.array(cal["anchor_means"]["means"]), z["trial0_anchors"])  # float64, bit for bit
    for scorer in ("cac", "min_distance"):
        assert cal["thresholds"][scorer] == acceptance_threshold(z[f"trial0_{scorer}_val_score"])
    assert cal["class_names"] == [str(c) for c in sorted(json.load(open(os.path.join(
        REPO, "datasets", "Digits", "class_splits", "0.json")))["Known"])]
    assert cal["preprocessing"]["im_size"] == 16 and cal["preprocessing"]["im_channels"] == 1
    closed = read_calibration_file(os.path.join(digits["cwd"], DIGITS_CE))
    assert closed["checkpoint_sha256"] == digits["digests"][0][1] and set(closed["thresholds"]) == {"max_softmax",
                                                                                                    "max_logit"}


def test_changed_weights_invalidate_the_cached_anchor_means(digits, tmp_path):
    cwd = str(tmp_path)
    shutil.copytree(os.path.join(digits["cwd"], "networks"), os.path.join(cwd, "networks"))
    path = os.path.join(cwd, DIGITS_CAC)
    ckpt = torch.load(path, weights_only=True)
    ckpt["net"]["classify.bias"] += 0.5  # other weights, the same calibration file beside them
    torch.save(ckpt, path)
    proc = ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    assert "anchor means computed" in proc.stdout and stderr_lines(proc) == []  # stale, not damaged: no warning
    assert read_calibration_file(path)["checkpoint_sha256"] == sha256(path)


def test_plots_are_written(digits):
    for method, kinds in (("CAC", ("roc", "hist", "logits", "training")), ("ClosedSet", ("roc", "hist", "training"))):
        result = digits["runs"]["cac_cached_results"][0] if method == "CAC" else results(digits["cwd"], method)[0]
        want = [f"{DIGITS_STEM[method]}_trial0_{k}.png" for k in kinds]
        assert result["plots"] == want
        for path in want:
            with Image.open(os.path.join(digits["cwd"], path)) as image:
                assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300


def test_anchor_cache_benchmark_runs(digits, capsys):
    import importlib.util

    path = os.path.join(REPO, "benchmarks", "eval_anchor_cache.py")
    spec = importlib.util.spec_from_file_location("eval_anchor_cache", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    old = os.getcwd()
    os.chdir(digits["cwd"])
    try:
        assert bench.main(["--name", "s", "--repeats", "1"]) == 0
    finally:
        os.chdir(old)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mode"] for r in rows] == ["cached", "recompute"] and all(r["min_s"] > 0 for r in rows)
