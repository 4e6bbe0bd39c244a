"""Evaluation under faults (issue 11): the results set is written all or nothing, a failed
calibration write is a warning, non-finite weights and outputs are one line, a damaged
calibration file is made again by evaluation and by predict.py (each kind of damage is a unit
test of its reader, tests/unit/engine/test_calibration.py), a damaged training log only loses
its plot; the checkpoint is never written.

Each test works in a copy of conftest's `evaluated_digits` (Digits networks trained for one
epoch and evaluated once)."""
import contextlib
import errno
import json
import os
import shutil

import numpy as np
import pytest

import engine.calibration as calibration
import engine.report as report
from conftest import (DIGITS_CAC, DIGITS_CE, DIGITS_EVAL, DIGITS_STEM, assert_one_line_error, calibration_file,
                      edit_checkpoint, nan_weight, ok, overflowing_weights, read_calibration_file, run_script, sha256,
                      snapshot, stderr_lines, work)


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
    assert snapshot(cwd) == before  # no calibration written either


def test_no_results_folder_is_left_by_a_failed_first_write(evaluated_digits, tmp_path, monkeypatch):
    cwd = work(evaluated_digits, tmp_path)
    shutil.rmtree(os.path.join(cwd, "results"))

    def full_disk(results, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_scores", full_disk)
    assert_one_line_error(run_script("eval_closedSet.py", *DIGITS_EVAL, cwd=cwd, in_process=True), DIGITS_STEM["ClosedSet"] + ".npz", "No space left")
    assert not os.path.exists(os.path.join(cwd, "results"))


# --- 3: writing the calibration ------------------------------------------------------------------

@contextlib.contextmanager
def full_disk(path, mode):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    yield


@pytest.mark.parametrize("fault", ["a folder in its place", "full disk"])
def test_failed_calibration_write_is_one_warning_and_results_are_written(evaluated_digits, tmp_path, monkeypatch,
                                                                         fault):
    cwd = work(evaluated_digits, tmp_path, uncalibrated=True)
    shutil.rmtree(os.path.join(cwd, "results"))
    untouched = sha256(os.path.join(cwd, DIGITS_CAC))
    sidecar = calibration_file(DIGITS_CAC)
    if fault == "full disk":
        monkeypatch.setattr(calibration, "atomic_write", full_disk)
    else:
        os.makedirs(os.path.join(cwd, sidecar))
    proc = ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    lines = stderr_lines(proc)
    if fault == "a folder in its place":  # it cannot be read either: said first
        assert lines.pop(0).startswith(f"warning: calibration {sidecar} cannot be read (IsADirectoryError"), lines
    assert len(lines) == 1 and lines[0].startswith(f"warning: could not write the calibration {sidecar}"), lines
    with open(os.path.join(cwd, DIGITS_STEM["CAC"] + ".json")) as f:
        assert json.load(f)["scores_file"] == DIGITS_STEM["CAC"] + ".npz"
    assert "trial0_cac_known_score" in np.load(os.path.join(cwd, DIGITS_STEM["CAC"] + ".npz"))
    assert sha256(os.path.join(cwd, DIGITS_CAC)) == untouched
    assert not os.path.isfile(os.path.join(cwd, sidecar))  # no half-written file either
    assert not [n for n in os.listdir(os.path.dirname(os.path.join(cwd, sidecar))) if n.startswith(".tmp")]


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


# --- 5, 8: a damaged calibration file ------------------------------------------------------------

def test_damaged_calibration_is_made_again_by_predict_and_by_evaluation(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    checkpoint, sidecar = os.path.join(cwd, DIGITS_CAC), os.path.join(cwd, calibration_file(DIGITS_CAC))
    good, untouched = read_calibration_file(checkpoint), sha256(checkpoint)

    def damage():
        with open(sidecar, "w") as f:
            json.dump({**good, "anchor_means": {**good["anchor_means"], "means": good["anchor_means"]["means"][:5]}}, f)

    damage()
    proc = ok(run_script("predict.py", DIGITS_CAC, os.path.join(cwd, "images"), cwd=cwd, in_process=True))
    assert stderr_lines(proc)[0] == (f"warning: calibration {calibration_file(DIGITS_CAC)} is invalid (anchor means "
                                     f"are not 6 x 6 finite numbers); making it again"), proc.stderr
    assert_same_calibration(read_calibration_file(checkpoint), good)  # the same computation as the evaluation's
    damage()
    proc = ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=cwd, in_process=True))
    assert stderr_lines(proc) == [f"warning: calibration {calibration_file(DIGITS_CAC)} is invalid (anchor means are "
                                  f"not 6 x 6 finite numbers); this evaluation makes it again"], proc.stderr
    assert "anchor means computed" in proc.stdout
    assert_same_calibration(read_calibration_file(checkpoint), good)
    assert sha256(checkpoint) == untouched


def assert_same_calibration(made, good):
    """Equal but for float rounding of the means and thresholds (other batches, other pipeline)."""
    np.testing.assert_allclose(made["anchor_means"]["means"], good["anchor_means"]["means"], rtol=1e-6, atol=1e-9)
    assert made["thresholds"] == pytest.approx(good["thresholds"], rel=1e-6)
    assert {**made, "anchor_means": made["anchor_means"]["data"], "thresholds": None} == \
        {**good, "anchor_means": good["anchor_means"]["data"], "thresholds": None}


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
