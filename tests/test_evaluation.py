"""Evaluation beyond the four lines, on Digits networks trained for one epoch (in-process):
every scorer's metrics recomputed from the saved .npz, anchor means cached in the checkpoint
(identical metrics, --recompute_anchors, invalidated when the weights change), the stored
threshold, --plots, and predict.py on images written as PNG files."""
import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

import eval_cacOpenset
import eval_closedSet
import predict
import train_cacOpenset
import train_closedSet
from conftest import assert_one_line_error, ok, run_main
from datasets.digits import Digits
from metrics import acceptance_threshold, all_metrics

COMMON = ["--workers", "0"]
EVAL = ["-dataset", "Digits", "--num_trials", "1", "--start_trial", "0", "--name", "t", *COMMON]
CAC_CKPT = os.path.join("networks", "weights", "Digits", "Digits_0_tCACclassifierAnchorLoss.pth")
CE_CKPT = os.path.join("networks", "weights", "Digits", "Digits_0_tclosedSetClassifier.pth")


def results(cwd, method):
    stem = os.path.join(cwd, "results", f"Digits_t{method}_trials0-0")
    with open(stem + ".json") as f:
        return json.load(f), dict(np.load(stem + ".npz"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cwd = str(tmp_path_factory.mktemp("eval"))
    torch.set_num_threads(1)
    train = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--name", "t", *COMMON]
    ok(run_main(train_cacOpenset.main, train, cwd))
    ok(run_main(train_closedSet.main, train, cwd))
    trained = torch.load(os.path.join(cwd, CAC_CKPT), weights_only=True)
    runs = {"cac_first": ok(run_main(eval_cacOpenset.main, EVAL, cwd))}
    runs["cac_first_results"] = results(cwd, "CAC")
    runs["inode_first"] = os.stat(os.path.join(cwd, CAC_CKPT)).st_ino
    runs["cac_cached"] = ok(run_main(eval_cacOpenset.main, EVAL + ["--plots"], cwd))
    runs["cac_cached_results"] = results(cwd, "CAC")
    runs["inode_cached"] = os.stat(os.path.join(cwd, CAC_CKPT)).st_ino
    runs["cac_recomputed"] = ok(run_main(eval_cacOpenset.main, EVAL + ["--recompute_anchors"], cwd))
    runs["cac_recomputed_results"] = results(cwd, "CAC")
    runs["ce"] = ok(run_main(eval_closedSet.main, EVAL + ["--plots"], cwd))
    return {"cwd": cwd, "runs": runs, "trained": trained}


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
    assert "anchor means read from the checkpoint" in runs["cac_cached"].stdout
    assert "anchor means computed" in runs["cac_recomputed"].stdout
    first, cached, recomputed = (runs[k][0] for k in ("cac_first_results", "cac_cached_results",
                                                      "cac_recomputed_results"))
    assert first["metrics"] == cached["metrics"] == recomputed["metrics"]
    assert np.array_equal(runs["cac_first_results"][1]["trial0_anchors"], runs["cac_cached_results"][1]["trial0_anchors"])
    assert runs["inode_first"] == runs["inode_cached"]  # same calibration: the file is not rewritten


def test_checkpoint_keeps_its_weights_and_gains_the_calibration(digits):
    ckpt = torch.load(os.path.join(digits["cwd"], CAC_CKPT), weights_only=True)
    trained = digits["trained"]
    assert {k: v for k, v in ckpt.items() if k != "calibration"}.keys() == trained.keys()
    assert all(torch.equal(ckpt["net"][k], trained["net"][k]) for k in trained["net"])  # training anchors too
    cal = ckpt["calibration"]
    _, z = results(digits["cwd"], "CAC")
    assert torch.equal(cal["anchor_means"]["means"], torch.from_numpy(z["trial0_anchors"]))
    for scorer in ("cac", "min_distance"):
        assert cal["thresholds"][scorer] == acceptance_threshold(z[f"trial0_{scorer}_val_score"])
    assert cal["class_names"] == [str(c) for c in sorted(json.load(open(os.path.join(
        os.path.dirname(__file__), "..", "datasets", "Digits", "class_splits", "0.json")))["Known"])]
    assert cal["preprocessing"]["im_size"] == 16 and cal["preprocessing"]["im_channels"] == 1


def test_changed_weights_invalidate_the_cached_anchor_means(digits, tmp_path):
    cwd = str(tmp_path)
    shutil.copytree(os.path.join(digits["cwd"], "networks"), os.path.join(cwd, "networks"))
    path = os.path.join(cwd, CAC_CKPT)
    ckpt = torch.load(path, weights_only=True)
    ckpt["net"]["classify.bias"] += 0.5  # other weights, same stored calibration
    torch.save(ckpt, path)
    proc = ok(run_main(eval_cacOpenset.main, EVAL, cwd))
    assert "anchor means computed" in proc.stdout


def test_plots_are_written(digits):
    for method, kinds in (("CAC", ("roc", "hist", "logits", "training")), ("ClosedSet", ("roc", "hist", "training"))):
        result = digits["runs"]["cac_cached_results"][0] if method == "CAC" else results(digits["cwd"], method)[0]
        want = [os.path.join("results", f"Digits_t{method}_trials0-0_trial0_{k}.png") for k in kinds]
        assert result["plots"] == want
        for path in want:
            with Image.open(os.path.join(digits["cwd"], path)) as image:
                assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300


@pytest.fixture(scope="module")
def pngs(digits, tmp_path_factory):
    """The first 4 known and 4 unknown Digits test images as PNG files (8 x 8, as stored)."""
    folder = tmp_path_factory.mktemp("pngs")
    test = Digits(train=False)
    with open(os.path.join(os.path.dirname(__file__), "..", "datasets", "Digits", "class_splits", "0.json")) as f:
        known = json.load(f)["Known"]
    rows = {"known": np.flatnonzero(np.isin(test.targets, known))[:4],
            "unknown": np.flatnonzero(~np.isin(test.targets, known))[:4]}
    files = {part: [] for part in rows}
    for part, idx in rows.items():
        for j, i in enumerate(idx):
            files[part].append(str(folder / f"{part}_{j}.png"))
            Image.fromarray(test.data[i]).save(files[part][-1])
    return {"folder": str(folder), "files": files, "digits": [int(test.targets[i]) for i in rows["known"]]}


@pytest.mark.parametrize("method,ckpt,scorer", [("CAC", CAC_CKPT, "cac"), ("CAC", CAC_CKPT, "min_distance"),
                                                ("ClosedSet", CE_CKPT, "max_logit")])
def test_predict_reproduces_the_evaluation(digits, pngs, method, ckpt, scorer):
    cwd = digits["cwd"]
    _, z = results(cwd, method)
    out = ok(run_main(predict.main, [ckpt, *pngs["files"]["known"], *pngs["files"]["unknown"], "--scorer", scorer], cwd))
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    threshold = torch.load(os.path.join(cwd, ckpt), weights_only=True)["calibration"]["thresholds"][scorer]
    names = torch.load(os.path.join(cwd, ckpt), weights_only=True)["calibration"]["class_names"]
    for part in ("known", "unknown"):
        mine = [r for r in rows if os.path.basename(r["image"]).startswith(part)]
        scores = z[f"trial0_{scorer}_{part}_score"][:4]
        np.testing.assert_allclose([float(r["score"]) for r in mine], scores, rtol=1e-4, atol=1e-6)
        classes = [names[c] for c in z[f"trial0_{scorer}_{part}_pred"][:4]]
        assert [r["closest_class"] for r in mine] == classes
        assert [r["prediction"] for r in mine] == [c if s <= threshold else "unknown" for c, s in zip(classes, scores)]


def test_predict_folder_json_and_threshold_override(digits, pngs, tmp_path):
    cwd, out_file = digits["cwd"], str(tmp_path / "p.json")
    ok(run_main(predict.main, [CAC_CKPT, pngs["folder"], "--format", "json", "--out", out_file, "--threshold", "-1"], cwd))
    with open(out_file) as f:
        written = json.load(f)
    assert written["threshold"] == -1 and len(written["predictions"]) == 8
    assert {r["prediction"] for r in written["predictions"]} == {"unknown"}  # scores are >= 0
    ok(run_main(predict.main, [CAC_CKPT, pngs["folder"], "--format", "json", "--out", out_file, "--threshold", "1e9"], cwd))
    with open(out_file) as f:
        assert "unknown" not in {r["prediction"] for r in json.load(f)["predictions"]}


def test_predict_errors_are_one_line(digits, pngs, tmp_path):
    cwd = digits["cwd"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    uncalibrated = os.path.join("networks", "weights", "Digits", "Digits_0_tCACclassifierCACLoss.pth")
    cases = [
        ([str(tmp_path / "none.pth"), pngs["folder"]], ["checkpoint not found", "none.pth"]),
        ([uncalibrated, pngs["folder"]], ["no calibration", "python eval_cacOpenset.py -dataset Digits --start_trial 0"]),
        ([CAC_CKPT, str(bad)], ["cannot read image", "bad.png"]),
        ([CAC_CKPT, str(tmp_path / "missing.png")], ["no such image file or folder", "missing.png"]),
        ([CAC_CKPT, str(tmp_path / "p.json"), "--scorer", "max_logit"], ["no such image"]),
        ([CAC_CKPT, pngs["folder"], "--scorer", "max_logit"], ["--scorer max_logit", "cac, min_distance"]),
    ]
    for argv, fragments in cases:
        assert_one_line_error(run_main(predict.main, argv, cwd), *fragments)


def test_anchor_cache_benchmark_runs(digits, capsys):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "eval_anchor_cache.py")
    spec = importlib.util.spec_from_file_location("eval_anchor_cache", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    old = os.getcwd()
    os.chdir(digits["cwd"])
    try:
        assert bench.main(["--name", "t", "--repeats", "1"]) == 0
    finally:
        os.chdir(old)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mode"] for r in rows] == ["cached", "recompute"] and all(r["min_s"] > 0 for r in rows)
