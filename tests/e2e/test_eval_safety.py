"""Evaluation under faults (issue 11): the results set is written all or nothing, a failed
calibration store is a warning, non-finite weights and outputs are one line, a stored
calibration or anchor cache of the wrong shape is checked when read (predict.py and
evaluation make it again), a damaged training log only loses its plot.

Each test works in a copy of conftest's `evaluated_digits` (Digits networks trained for one
epoch and evaluated once)."""
import copy
import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch

import engine.calibration as calibration
import engine.report as report
from conftest import (DIGITS_CAC, DIGITS_CE, DIGITS_EVAL, DIGITS_STEM, assert_one_line_error, edit_checkpoint,
                      nan_weight, ok, overflowing_weights, run_script, snapshot, stderr_lines, work)
from core.errors import UserError


def mark_previous_results(cwd, method):
    """Make the results files differ from what a new evaluation writes (it would write the same
    bytes again), so that a replaced file shows."""
    stem = os.path.join(cwd, DIGITS_STEM[method])
    arrays = dict(np.load(stem + ".npz"))
    np.savez_compressed(stem + ".npz", previous=np.ones(1), **arrays)
    with open(stem + ".json") as f:
        result = json.load(f)
    with open(stem + ".json", "w") as f:
        json.dump({**result, "previous": True}, f)


# --- 1, 2: the results set -------------------------------------------------------------------------

def test_full_disk_writing_the_json_keeps_the_previous_results(evaluated_digits, tmp_path, monkeypatch):
    """The JSON write fails half-way (ENOSPC): one line naming it; the previous .json and .npz
    stay byte for byte (today's fault: the .npz was replaced, then a traceback)."""
    cwd = work(evaluated_digits, tmp_path)
    mark_previous_results(cwd, "CAC")
    before = snapshot(os.path.join(cwd, "results"))

    def full_disk(result, path):
        with open(path, "w") as f:
            f.write('{"dataset": "Dig')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_results", full_disk)
    proc = run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True)
    assert_one_line_error(proc, DIGITS_STEM["CAC"] + ".json", "No space left on device", "previous results are unchanged")
    assert snapshot(os.path.join(cwd, "results")) == before


@pytest.mark.parametrize("target,flags", [(".json", []), (".npz", []), ("_trial0_roc.png", ["--plots"])])
def test_folder_in_place_of_a_results_file_is_refused_before_work(evaluated_digits, tmp_path, target, flags):
    cwd = work(evaluated_digits, tmp_path, uncalibrated=True)
    if os.path.exists(os.path.join(cwd, DIGITS_STEM["CAC"] + target)):
        os.remove(os.path.join(cwd, DIGITS_STEM["CAC"] + target))
    os.makedirs(os.path.join(cwd, DIGITS_STEM["CAC"] + target))
    before = snapshot(cwd)
    proc = run_script("eval_cacOpenset.py", *DIGITS_EVAL + flags, cwd=cwd, in_process=True)
    assert_one_line_error(proc, DIGITS_STEM["CAC"] + target, "a folder is in its place", "move it away")
    assert "Evaluating" not in proc.stdout and "anchor means" not in proc.stdout  # refused before the work
    assert snapshot(cwd) == before  # the checkpoint did not gain a calibration either


def test_no_results_folder_is_left_by_a_failed_first_write(evaluated_digits, tmp_path, monkeypatch):
    cwd = work(evaluated_digits, tmp_path)
    shutil.rmtree(os.path.join(cwd, "results"))

    def full_disk(results, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_scores", full_disk)
    assert_one_line_error(run_script("eval_closedSet.py", *DIGITS_EVAL, cwd=cwd, in_process=True), DIGITS_STEM["ClosedSet"] + ".npz", "No space left")
    assert not os.path.exists(os.path.join(cwd, "results"))


# --- 3: storing the calibration ------------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4160 vs 4054"),  # torch, disk full
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    UserError("cannot write checkpoint x.pth (No space left on device); free space"),
])
def test_failed_calibration_store_is_one_warning_and_results_are_written(evaluated_digits, tmp_path, monkeypatch, fault):
    cwd = work(evaluated_digits, tmp_path, uncalibrated=True)
    shutil.rmtree(os.path.join(cwd, "results"))
    with open(os.path.join(cwd, DIGITS_CAC), "rb") as f:
        untouched = f.read()

    def failing_save(state, path):
        raise fault

    monkeypatch.setattr(calibration, "save_checkpoint", failing_save)
    proc = ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"warning: could not store the calibration in {DIGITS_CAC}"), lines
    with open(os.path.join(cwd, DIGITS_STEM["CAC"] + ".json")) as f:
        assert json.load(f)["scores_file"] == DIGITS_STEM["CAC"] + ".npz"
    assert "trial0_cac_known_score" in np.load(os.path.join(cwd, DIGITS_STEM["CAC"] + ".npz"))
    with open(os.path.join(cwd, DIGITS_CAC), "rb") as f:
        assert f.read() == untouched


# --- 4: non-finite weights and outputs -----------------------------------------------------------

@pytest.mark.parametrize("script,ckpt", [("eval_cacOpenset.py", DIGITS_CAC), ("eval_closedSet.py", DIGITS_CE)])
def test_nan_weights_stop_evaluation_in_one_line(evaluated_digits, tmp_path, script, ckpt):
    cwd = work(evaluated_digits, tmp_path)
    edit_checkpoint(cwd, ckpt, nan_weight)
    before = snapshot(cwd)
    assert_one_line_error(run_script(script, *DIGITS_EVAL, cwd=cwd, in_process=True), ckpt, "non-finite weights", "classify.weight", "train it again")
    assert snapshot(cwd) == before


@pytest.mark.parametrize("script,ckpt,fragment", [
    ("eval_cacOpenset.py", DIGITS_CAC, "non-finite logits on its training images (anchor means)"),
    ("eval_closedSet.py", DIGITS_CE, "non-finite known test logits for")])
def test_overflowing_outputs_stop_evaluation_in_one_line(evaluated_digits, tmp_path, script, ckpt, fragment):
    cwd = work(evaluated_digits, tmp_path)
    edit_checkpoint(cwd, ckpt, overflowing_weights)
    before = snapshot(cwd)
    assert_one_line_error(run_script(script, *DIGITS_EVAL, cwd=cwd, in_process=True), ckpt, fragment, "overflow")
    assert snapshot(cwd) == before  # no NaN threshold stored, no results


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
def test_invalid_calibration_remade_by_predict_and_by_evaluation(evaluated_digits, tmp_path, case):
    cwd = work(evaluated_digits, tmp_path)
    good = torch.load(os.path.join(cwd, DIGITS_CAC), weights_only=True)["calibration"]
    bad = BAD_CALIBRATIONS[case]
    edit_checkpoint(cwd, DIGITS_CAC, lambda ckpt: ckpt.update(calibration=bad(ckpt["calibration"])))
    proc = ok(run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images")], cwd=cwd, in_process=True))
    assert stderr_lines(proc)[0].startswith(f"warning: ignoring the calibration stored in {DIGITS_CAC}"), proc.stderr
    remade = torch.load(os.path.join(cwd, DIGITS_CAC), weights_only=True)["calibration"]
    assert remade["thresholds"] == good["thresholds"] and remade["class_names"] == good["class_names"]
    torch.testing.assert_close(remade["anchor_means"]["means"], good["anchor_means"]["means"])
    edit_checkpoint(cwd, DIGITS_CAC, lambda ckpt: ckpt.update(calibration=bad(ckpt["calibration"])))
    proc = ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    assert stderr_lines(proc) == [line for line in stderr_lines(proc) if line.startswith(
        f"warning: ignoring the calibration stored in {DIGITS_CAC}")] and len(stderr_lines(proc)) == 1, proc.stderr
    assert "anchor means computed" in proc.stdout
    cal = torch.load(os.path.join(cwd, DIGITS_CAC), weights_only=True)["calibration"]
    assert calibration.calibration_problem(cal, "CAC", 6) is None
    ok(run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images")], cwd=cwd, in_process=True))


def test_closed_set_calibration_with_another_methods_scorers_is_remade(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    wrong = {"thresholds": {"cac": 0.5}, "scorer": "cac"}
    edit_checkpoint(cwd, DIGITS_CE, lambda ckpt: ckpt["calibration"].update(wrong))
    proc = ok(run_script("predict.py", *[DIGITS_CE, os.path.join(cwd, "images")], cwd=cwd, in_process=True))
    assert stderr_lines(proc)[0].startswith(f"warning: ignoring the calibration stored in {DIGITS_CE}")
    cal = torch.load(os.path.join(cwd, DIGITS_CE), weights_only=True)["calibration"]
    assert set(cal["thresholds"]) == {"max_softmax", "max_logit"} and cal["scorer"] == "max_softmax"
    edit_checkpoint(cwd, DIGITS_CE, lambda ckpt: ckpt["calibration"].update(wrong))
    proc = ok(run_script("eval_closedSet.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    assert len(stderr_lines(proc)) == 1 and "ignoring the calibration" in proc.stderr
    cal = torch.load(os.path.join(cwd, DIGITS_CE), weights_only=True)["calibration"]
    assert set(cal["thresholds"]) == {"max_softmax", "max_logit"}


def test_cached_anchor_means_are_checked_before_use(evaluated_digits, capsys):
    cal = torch.load(os.path.join(evaluated_digits, DIGITS_CAC), weights_only=True)["calibration"]
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


# --- 7: plots from a damaged training log ----------------------------------------------------------

def test_eval_plots_with_a_damaged_training_log(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    log = os.path.join(cwd, "runs", "Digits_0_sClosedSet", "metrics.jsonl")
    with open(log, "w") as f:
        f.write('{"epoch": 0, "train/CE_Lo')  # a crash while the first line was written
    proc = ok(run_script("eval_closedSet.py", *DIGITS_EVAL + ["--plots"], cwd=cwd, in_process=True))
    assert "no training-curve plot for trial 0" in proc.stderr and log.replace(cwd + os.sep, "") in proc.stderr
    with open(os.path.join(cwd, DIGITS_STEM["ClosedSet"] + ".json")) as f:
        assert json.load(f)["plots"] == [f"{DIGITS_STEM['ClosedSet']}_trial0_{k}.png" for k in ("roc", "hist")]
    assert not os.path.exists(os.path.join(cwd, DIGITS_STEM["ClosedSet"] + "_trial0_training.png"))
    assert not [n for n in os.listdir(os.path.join(cwd, "results")) if n.startswith(".tmp_")]
