"""Evaluation and predict.py under faults (issue 11): the results set is written all or
nothing, a failed calibration store is a warning, non-finite weights and outputs are one
line, a stored calibration or anchor cache of the wrong shape is checked when read, and
predict.py skips what it cannot read and never prints a NaN.

Digits networks trained for one epoch and evaluated once (module fixture, in-process); each
test works in a copy of that folder."""
import contextlib
import copy
import csv
import errno
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import engine.calibration as calibration
import engine.evaluation as evaluation
import eval_cacOpenset
import eval_closedSet
import plots
import predict
import train_cacOpenset
import train_closedSet
from conftest import assert_one_line_error, ok, run_main
from datasets.digits import Digits
from core.errors import UserError
from core.files import FileSet
from networks import load_checkpoint, openSetClassifier, save_checkpoint

FAST = ["--workers", "0"]
EVAL = ["-dataset", "Digits", "--num_trials", "1", "--start_trial", "0", "--name", "s", *FAST]
WEIGHTS = os.path.join("networks", "weights", "Digits")
CAC_CKPT = os.path.join(WEIGHTS, "Digits_0_sCACclassifierAnchorLoss.pth")
CE_CKPT = os.path.join(WEIGHTS, "Digits_0_sclosedSetClassifier.pth")
STEM = {"CAC": os.path.join("results", "Digits_sCAC_trials0-0"),
        "ClosedSet": os.path.join("results", "Digits_sClosedSet_trials0-0")}


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("trained"))
    torch.set_num_threads(1)
    train = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--name", "s", *FAST]
    ok(run_main(train_cacOpenset.main, train, base))
    ok(run_main(train_closedSet.main, train, base))
    shutil.copy(os.path.join(base, CAC_CKPT), os.path.join(base, "uncalibrated_cac.pth"))
    ok(run_main(eval_cacOpenset.main, EVAL, base))
    ok(run_main(eval_closedSet.main, EVAL, base))
    images = os.path.join(base, "images")  # the first 3 Digits test images as 8 x 8 PNG files
    os.makedirs(images)
    test = Digits(train=False)
    for i in range(3):
        Image.fromarray(test.data[i]).save(os.path.join(images, f"digit_{i}.png"))
    return base


def mark_previous_results(cwd, method):
    """Make the results files differ from what a new evaluation writes (it would write the same
    bytes again), so that a replaced file shows."""
    stem = os.path.join(cwd, STEM[method])
    arrays = dict(np.load(stem + ".npz"))
    np.savez_compressed(stem + ".npz", previous=np.ones(1), **arrays)
    with open(stem + ".json") as f:
        result = json.load(f)
    with open(stem + ".json", "w") as f:
        json.dump({**result, "previous": True}, f)


def work(trained, tmp_path, uncalibrated=False):
    """A private copy of the trained folder (weights, results, runs); optionally with the CAC
    checkpoint as training left it (no calibration yet)."""
    cwd = str(tmp_path / "w")
    shutil.copytree(trained, cwd)
    if uncalibrated:
        shutil.copy(os.path.join(cwd, "uncalibrated_cac.pth"), os.path.join(cwd, CAC_CKPT))
    return cwd


def edit_checkpoint(cwd, path, change):
    ckpt = torch.load(os.path.join(cwd, path), weights_only=True)
    change(ckpt)
    torch.save(ckpt, os.path.join(cwd, path))


def images(cwd):
    return sorted(os.path.join(cwd, "images", n) for n in os.listdir(os.path.join(cwd, "images")))


# --- 1, 2: the results set -------------------------------------------------------------------------

def test_full_disk_writing_the_json_keeps_the_previous_results(trained, tmp_path, monkeypatch):
    """The JSON write fails half-way (ENOSPC): one line naming it; the previous .json and .npz
    stay byte for byte (today's fault: the .npz was replaced, then a traceback)."""
    cwd = work(trained, tmp_path)
    mark_previous_results(cwd, "CAC")
    before = snapshot(os.path.join(cwd, "results"))

    def full_disk(result, path):
        with open(path, "w") as f:
            f.write('{"dataset": "Dig')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(evaluation, "write_results", full_disk)
    proc = run_main(eval_cacOpenset.main, EVAL, cwd)
    assert_one_line_error(proc, STEM["CAC"] + ".json", "No space left on device", "previous results are unchanged")
    assert snapshot(os.path.join(cwd, "results")) == before


def test_failed_rename_restores_the_set_already_replaced(tmp_path, monkeypatch):
    """A rename that fails after the .npz was replaced (the JSON's) puts the old .npz back."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("r.npz", "r.json"):
        (folder / name).write_text(f"old {name}")
    files = FileSet()
    for name in ("r.npz", "r.json"):
        with open(files.stage(str(folder / name)), "w") as f:
            f.write(f"new {name}")
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("r.json"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        files.commit()
    monkeypatch.undo()
    files.discard()
    assert sorted(os.listdir(folder)) == ["r.json", "r.npz"]
    assert [(folder / n).read_text() for n in ("r.npz", "r.json")] == ["old r.npz", "old r.json"]


@pytest.mark.parametrize("target,flags", [(".json", []), (".npz", []), ("_trial0_roc.png", ["--plots"])])
def test_folder_in_place_of_a_results_file_is_refused_before_work(trained, tmp_path, target, flags):
    cwd = work(trained, tmp_path, uncalibrated=True)
    if os.path.exists(os.path.join(cwd, STEM["CAC"] + target)):
        os.remove(os.path.join(cwd, STEM["CAC"] + target))
    os.makedirs(os.path.join(cwd, STEM["CAC"] + target))
    before = snapshot(cwd)
    proc = run_main(eval_cacOpenset.main, EVAL + flags, cwd)
    assert_one_line_error(proc, STEM["CAC"] + target, "a folder is in its place", "move it away")
    assert "Evaluating" not in proc.stdout and "anchor means" not in proc.stdout  # refused before the work
    assert snapshot(cwd) == before  # the checkpoint did not gain a calibration either


def test_no_results_folder_is_left_by_a_failed_first_write(trained, tmp_path, monkeypatch):
    cwd = work(trained, tmp_path)
    shutil.rmtree(os.path.join(cwd, "results"))

    def full_disk(records, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(evaluation, "write_scores", full_disk)
    assert_one_line_error(run_main(eval_closedSet.main, EVAL, cwd), STEM["ClosedSet"] + ".npz", "No space left")
    assert not os.path.exists(os.path.join(cwd, "results"))


# --- 3: storing the calibration ------------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4160 vs 4054"),  # torch, disk full
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    UserError("cannot write checkpoint x.pth (No space left on device); free space"),
])
def test_failed_calibration_store_is_one_warning_and_results_are_written(trained, tmp_path, monkeypatch, fault):
    cwd = work(trained, tmp_path, uncalibrated=True)
    shutil.rmtree(os.path.join(cwd, "results"))
    with open(os.path.join(cwd, CAC_CKPT), "rb") as f:
        untouched = f.read()

    def failing_save(state, path):
        raise fault

    monkeypatch.setattr(calibration, "save_checkpoint", failing_save)
    proc = ok(run_main(eval_cacOpenset.main, EVAL, cwd))
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"warning: could not store the calibration in {CAC_CKPT}"), lines
    with open(os.path.join(cwd, STEM["CAC"] + ".json")) as f:
        assert json.load(f)["scores_file"] == STEM["CAC"] + ".npz"
    assert "trial0_cac_known_score" in np.load(os.path.join(cwd, STEM["CAC"] + ".npz"))
    with open(os.path.join(cwd, CAC_CKPT), "rb") as f:
        assert f.read() == untouched


# --- 4: non-finite weights and outputs -----------------------------------------------------------

def nan_weight(ckpt):
    ckpt["net"]["classify.weight"][0, 0] = float("nan")


def overflowing_weights(ckpt):
    ckpt["net"]["classify.weight"].fill_(3e38)  # finite, but the logits overflow to inf


def test_nan_weights_are_refused_at_load(tmp_path):
    net = openSetClassifier(6, 1, 16)
    state = net.state_dict()
    state["encoder.bn2.running_var"][1] = float("inf")
    path = str(tmp_path / "inf.pth")
    save_checkpoint({"net": state, "acc": 0, "epoch": 0}, path)
    with pytest.raises(UserError, match=r"inf\.pth holds non-finite weights .*1 of \d+ values of "
                                        r"encoder\.bn2\.running_var"):
        load_checkpoint(path, openSetClassifier(6, 1, 16))


@pytest.mark.parametrize("main,ckpt", [(eval_cacOpenset.main, CAC_CKPT), (eval_closedSet.main, CE_CKPT)])
def test_nan_weights_stop_evaluation_in_one_line(trained, tmp_path, main, ckpt):
    cwd = work(trained, tmp_path)
    edit_checkpoint(cwd, ckpt, nan_weight)
    before = snapshot(cwd)
    assert_one_line_error(run_main(main, EVAL, cwd), ckpt, "non-finite weights", "classify.weight", "train it again")
    assert snapshot(cwd) == before


@pytest.mark.parametrize("main,ckpt,fragment", [
    (eval_cacOpenset.main, CAC_CKPT, "non-finite logits on its training images (anchor means)"),
    (eval_closedSet.main, CE_CKPT, "non-finite known test logits for")])
def test_overflowing_outputs_stop_evaluation_in_one_line(trained, tmp_path, main, ckpt, fragment):
    cwd = work(trained, tmp_path)
    edit_checkpoint(cwd, ckpt, overflowing_weights)
    before = snapshot(cwd)
    assert_one_line_error(run_main(main, EVAL, cwd), ckpt, fragment, "overflow")
    assert snapshot(cwd) == before  # no NaN threshold stored, no results


@pytest.mark.parametrize("change,fragments", [(nan_weight, ["non-finite weights", "classify.weight"]),
                                              (overflowing_weights, ["non-finite score", "digit_0.png"])])
def test_predict_never_prints_a_nan(trained, tmp_path, change, fragments):
    cwd = work(trained, tmp_path)
    edit_checkpoint(cwd, CAC_CKPT, change)
    proc = run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images"), "--format", "json"], cwd)
    assert_one_line_error(proc, CAC_CKPT, *fragments)
    assert proc.stdout == ""


# --- 5, 8: stored calibration and anchor cache ------------------------------------------------------

def _set(key, value):
    def change(cal):
        cal[key] = value
        return cal
    return change


def _anchor(value):
    def change(cal):
        cal["anchor_means"]["means"] = value(cal["anchor_means"]["means"])
        return cal
    return change


def _nan_means(means):
    means = means.clone()
    means[2, 3] = float("nan")
    return means


BAD_CALIBRATIONS = {
    "five": lambda cal: 5,
    "string": lambda cal: "calibrated",
    "anchor_means_without_tensor": _set("anchor_means", {"key": {}, "means": [[0.0] * 6] * 6}),
    "means_wrong_shape": _anchor(lambda m: m[:5, :5].clone()),
    "means_not_finite": _anchor(_nan_means),
    "thresholds_not_a_dict": _set("thresholds", [0.5, 0.6]),
    "threshold_nan": _set("thresholds", {"cac": float("nan"), "min_distance": 1.0}),
    "class_names_too_few": lambda cal: _set("class_names", cal["class_names"][:-1])(cal),
    "preprocessing_without_std": lambda cal: _set("preprocessing", {k: v for k, v in cal["preprocessing"].items()
                                                                    if k != "std"})(cal),
}


@pytest.mark.parametrize("case", list(BAD_CALIBRATIONS))
def test_invalid_calibration_refused_by_predict_and_remade_by_evaluation(trained, tmp_path, case):
    cwd = work(trained, tmp_path)
    edit_checkpoint(cwd, CAC_CKPT, lambda ckpt: ckpt.update(calibration=BAD_CALIBRATIONS[case](ckpt["calibration"])))
    assert_one_line_error(run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images")], cwd),
                          CAC_CKPT, "invalid calibration", "evaluate it again",
                          "python eval_cacOpenset.py -dataset Digits --start_trial 0 --num_trials 1 --name 's'")
    proc = ok(run_main(eval_cacOpenset.main, EVAL, cwd))
    assert stderr_lines(proc) == [line for line in stderr_lines(proc) if line.startswith(
        f"warning: ignoring the calibration stored in {CAC_CKPT}")] and len(stderr_lines(proc)) == 1, proc.stderr
    assert "anchor means computed" in proc.stdout
    cal = torch.load(os.path.join(cwd, CAC_CKPT), weights_only=True)["calibration"]
    assert calibration.calibration_problem(cal, "CAC", 6) is None
    ok(run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images")], cwd))


def test_closed_set_calibration_with_another_methods_scorers_is_remade(trained, tmp_path):
    cwd = work(trained, tmp_path)
    edit_checkpoint(cwd, CE_CKPT, lambda ckpt: ckpt["calibration"].update(thresholds={"cac": 0.5}, scorer="cac"))
    assert_one_line_error(run_main(predict.main, [CE_CKPT, os.path.join(cwd, "images")], cwd),
                          "invalid calibration", "python eval_closedSet.py -dataset Digits")
    proc = ok(run_main(eval_closedSet.main, EVAL, cwd))
    assert len(stderr_lines(proc)) == 1 and "ignoring the calibration" in proc.stderr
    cal = torch.load(os.path.join(cwd, CE_CKPT), weights_only=True)["calibration"]
    assert set(cal["thresholds"]) == {"max_softmax", "max_logit"}


def test_cached_anchor_means_are_checked_before_use(trained, capsys):
    cal = torch.load(os.path.join(trained, CAC_CKPT), weights_only=True)["calibration"]
    key = cal["anchor_means"]["key"]
    assert torch.equal(calibration.cached_anchor_means(cal, key, 6, "c.pth"), cal["anchor_means"]["means"])
    assert calibration.cached_anchor_means(cal, {**key, "weights": "other"}, 6, "c.pth") is None  # not a fault
    assert capsys.readouterr().err == ""
    for bad in (_nan_means(cal["anchor_means"]["means"]), torch.zeros(5, 5, dtype=torch.float64), [[1.0]]):
        broken = copy.deepcopy(cal)
        broken["anchor_means"]["means"] = bad
        assert calibration.cached_anchor_means(broken, key, 6, "c.pth") is None
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("warning: ignoring the anchor means stored in c.pth"), err


# --- 6: predict.py ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_predict_refuses_a_non_finite_threshold_before_work(tmp_path, value):
    proc = run_main(predict.main, [str(tmp_path / "none.pth"), str(tmp_path), f"--threshold={value}"], str(tmp_path))
    assert_one_line_error(proc, f"--threshold {value}", "finite")


def test_predict_skips_an_unreadable_image_with_one_warning(trained, tmp_path):
    cwd = work(trained, tmp_path)
    bad = os.path.join(cwd, "images", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"not the rest of a PNG")
    out = os.path.join(cwd, "p.json")
    proc = ok(run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images"), "--format", "json", "--out", out], cwd))
    warnings = [line for line in stderr_lines(proc) if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0] and "skipped" in warnings[0], proc.stderr
    with open(out) as f:
        rows = json.load(f)["predictions"]
    assert [os.path.basename(r["image"]) for r in rows] == ["digit_0.png", "digit_1.png", "digit_2.png"]


def test_predict_with_no_readable_image_is_one_error(trained, tmp_path):
    cwd = work(trained, tmp_path)
    for name in ("a.png", "b.jpg"):
        with open(os.path.join(cwd, name), "wb") as f:
            f.write(b"not an image")
    proc = run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "a.png"), os.path.join(cwd, "b.jpg")], cwd)
    assert_one_line_error(proc, "cannot read image", "a.png", "no image could be read (2 tried)")


@pytest.mark.parametrize("limit", [3000, 1000])  # 60 x 60 = 3600 pixels: PIL warns above 1x, raises above 2x
def test_predict_skips_an_image_over_the_decompression_limit(trained, tmp_path, monkeypatch, limit):
    cwd = work(trained, tmp_path)
    Image.new("L", (60, 60), 128).save(os.path.join(cwd, "images", "huge.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    proc = ok(run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images")], cwd))
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "huge.png has 3,600 pixels" in lines[0], lines
    assert f"decompression-bomb limit of {limit:,} pixels" in lines[0] and lines[0].startswith("warning:")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 3 and all(float(r["score"]) >= 0 for r in rows)


def test_predict_refuses_an_out_it_cannot_write_before_work(trained, tmp_path):
    cwd = work(trained, tmp_path)
    os.makedirs(os.path.join(cwd, "out_folder"))
    with open(os.path.join(cwd, "a_file"), "w") as f:
        f.write("in the way")
    before = snapshot(cwd)
    for out, fragments in ((os.path.join(cwd, "out_folder"), ["--out", "out_folder is a folder", "file name"]),
                           (os.path.join(cwd, "a_file", "p.csv"), ["--out", "a_file", "is a file, not a folder"])):
        proc = run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "missing_images"), "--out", out], cwd)
        assert_one_line_error(proc, *fragments)  # refused before the images are looked for
    assert snapshot(cwd) == before


def test_predict_full_disk_keeps_the_previous_output(trained, tmp_path, monkeypatch):
    cwd = work(trained, tmp_path)
    out = os.path.join(cwd, "p.csv")
    with open(out, "w") as f:
        f.write("previous predictions\n")

    @contextlib.contextmanager
    def full_disk(path, mode):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield

    monkeypatch.setattr(predict, "atomic_write", full_disk)
    proc = run_main(predict.main, [CAC_CKPT, os.path.join(cwd, "images"), "--out", out], cwd)
    assert_one_line_error(proc, "cannot write the predictions", "p.csv", "No space left")
    with open(out) as f:
        assert f.read() == "previous predictions\n"


# --- 7: plots from a damaged training log ----------------------------------------------------------

@pytest.mark.parametrize("text,usable", [
    ('{"epoch": 0, "tr', False),  # nothing but a torn line (a crash while writing it)
    ("", False),
    ('42\n["a"]\n{"epoch": "one", "x_loss": 1}\n', False),
    ('{"epoch": 0, "x_loss": null, "val_accuracy": 10}\n{"epoch": 1, "x_loss": 2.0}\n', True),
    ('{"epoch": 0, "x_loss": 1.0}\n{"epoch": 1, "x_loss": "high"}\n{"epoch": 2}\n', True),
])
def test_training_curves_of_a_damaged_log(tmp_path, text, usable):
    log = tmp_path / "metrics.jsonl"
    log.write_text(text)
    runs, problem = plots.training_curves(str(log))
    assert (runs is not None, problem is None) == (usable, usable)
    if usable:
        plots.training_figure(runs, "t", str(tmp_path / "t.png"))
        with Image.open(tmp_path / "t.png") as image:
            assert image.format == "PNG"


def test_eval_plots_with_a_damaged_training_log(trained, tmp_path):
    cwd = work(trained, tmp_path)
    log = os.path.join(cwd, "runs", "Digits_0_sClosedSet", "metrics.jsonl")
    with open(log, "w") as f:
        f.write('{"epoch": 0, "train/CE_Lo')  # a crash while the first line was written
    proc = ok(run_main(eval_closedSet.main, EVAL + ["--plots"], cwd))
    assert "no training-curve plot for trial 0" in proc.stderr and log.replace(cwd + os.sep, "") in proc.stderr
    with open(os.path.join(cwd, STEM["ClosedSet"] + ".json")) as f:
        assert json.load(f)["plots"] == [f"{STEM['ClosedSet']}_trial0_{k}.png" for k in ("roc", "hist")]
    assert not os.path.exists(os.path.join(cwd, STEM["ClosedSet"] + "_trial0_training.png"))
    assert not [n for n in os.listdir(os.path.join(cwd, "results")) if n.startswith(".tmp_")]
