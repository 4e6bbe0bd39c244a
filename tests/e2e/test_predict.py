"""predict.py end to end on Digits networks trained for one epoch and evaluated once
(conftest's `evaluated_digits`): it reproduces the evaluation's scores and classes on PNG
files, reads folders, writes CSV or JSON, takes --threshold; and under faults (issue 11) it
refuses what would stop it before any image, skips what it cannot read with one warning line,
and never prints a NaN; the checkpoint it reads is never written. Tests that change files work
in a copy (`work`)."""
import contextlib
import csv
import errno
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import predict
from conftest import (DIGITS_CAC, DIGITS_CE, DIGITS_STEM, REPO, assert_one_line_error,
                      calibration_file, edit_checkpoint, nan_weight, ok, overflowing_weights, read_calibration_file, run_script, sha256,
                      snapshot, stderr_lines, work)
from datasets.digits import Digits


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """The first 4 known and 4 unknown Digits test images as PNG files (8 x 8, as stored)."""
    folder = tmp_path_factory.mktemp("pngs")
    test = Digits(train=False)
    with open(os.path.join(REPO, "datasets", "Digits", "class_splits", "0.json")) as f:
        known = json.load(f)["Known"]
    rows = {"known": np.flatnonzero(np.isin(test.targets, known))[:4],
            "unknown": np.flatnonzero(~np.isin(test.targets, known))[:4]}
    files = {part: [] for part in rows}
    for part, idx in rows.items():
        for j, i in enumerate(idx):
            files[part].append(str(folder / f"{part}_{j}.png"))
            Image.fromarray(test.data[i]).save(files[part][-1])
    return {"folder": str(folder), "files": files, "digits": [int(test.targets[i]) for i in rows["known"]]}


@pytest.mark.parametrize("method,ckpt,scorer", [("CAC", DIGITS_CAC, "cac"), ("CAC", DIGITS_CAC, "min_distance"),
                                                ("ClosedSet", DIGITS_CE, "max_logit")])
def test_predict_reproduces_the_evaluation(evaluated_digits, pngs, method, ckpt, scorer):
    cwd = evaluated_digits
    z = np.load(os.path.join(cwd, DIGITS_STEM[method] + ".npz"))
    before = sha256(os.path.join(cwd, ckpt))
    out = ok(run_script("predict.py", *[ckpt, *pngs["files"]["known"], *pngs["files"]["unknown"], "--scorer", scorer], cwd=cwd, in_process=True))
    assert sha256(os.path.join(cwd, ckpt)) == before
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    calibration = read_calibration_file(os.path.join(cwd, ckpt))
    threshold, names = calibration["thresholds"][scorer], calibration["class_names"]
    for part in ("known", "unknown"):
        mine = [r for r in rows if os.path.basename(r["image"]).startswith(part)]
        scores = z[f"trial0_{scorer}_{part}_score"][:4]
        np.testing.assert_allclose([float(r["score"]) for r in mine], scores, rtol=1e-4, atol=1e-6)
        classes = [names[c] for c in z[f"trial0_{scorer}_{part}_pred"][:4]]
        assert [r["closest_class"] for r in mine] == classes
        assert [r["prediction"] for r in mine] == [c if s <= threshold else "unknown" for c, s in zip(classes, scores)]
    assert stderr_lines(out) == [f"threshold {threshold:.6g} for scorer {scorer}, from the checkpoint's calibration, "
                                 f"which accepts 95% of the known validation images: an image scoring above it is "
                                 f"'unknown'"]  # what the CSV does not say


def test_predict_folder_json_and_threshold_override(evaluated_digits, pngs, tmp_path):
    cwd, out_file = evaluated_digits, str(tmp_path / "p.json")
    proc = ok(run_script("predict.py", *[DIGITS_CAC, pngs["folder"], "--format", "json", "--out", out_file, "--threshold", "-1"], cwd=cwd, in_process=True))
    assert stderr_lines(proc) == ["threshold -1 for scorer cac, from --threshold: an image scoring above it is 'unknown'; "
                                  f"8 predictions written to {out_file}"]
    with open(out_file) as f:
        written = json.load(f)
    assert written["threshold"] == -1 and len(written["predictions"]) == 8 and written["threshold_source"] == "--threshold"
    assert {r["prediction"] for r in written["predictions"]} == {"unknown"}  # scores are >= 0
    ok(run_script("predict.py", *[DIGITS_CAC, pngs["folder"], "--format", "json", "--out", out_file, "--threshold", "1e9"], cwd=cwd, in_process=True))
    with open(out_file) as f:
        assert "unknown" not in {r["prediction"] for r in json.load(f)["predictions"]}


def test_predict_errors_are_one_line(evaluated_digits, pngs, tmp_path):
    cwd = evaluated_digits
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    # a checkpoint that records neither calibration nor training data (as the original code's)
    uncalibrated = str(tmp_path / "Digits_0_sCACclassifierAnchorLoss.pth")
    ckpt = torch.load(os.path.join(cwd, DIGITS_CAC), weights_only=True)
    torch.save({"net": ckpt["net"], "acc": ckpt["acc"], "epoch": ckpt["epoch"]}, uncalibrated)
    cases = [
        ([str(tmp_path / "none.pth"), pngs["folder"]], ["checkpoint not found", "none.pth"]),
        ([uncalibrated, pngs["folder"]], ["no calibration", "does not record its training data",
                                          "`python eval_cacOpenset.py -dataset Digits --start_trial 0 --num_trials 1 "
                                          "--name s`"]),
        ([DIGITS_CAC, str(bad)], ["cannot read image", "bad.png"]),
        ([DIGITS_CAC, str(tmp_path / "missing.png")], ["no such image file or folder", "missing.png"]),
        ([DIGITS_CAC, str(tmp_path / "p.json"), "--scorer", "max_logit"], ["no such image"]),
        ([DIGITS_CAC, pngs["folder"], "--scorer", "max_logit"], ["--scorer max_logit", "cac, min_distance"]),
        ([DIGITS_CAC, str(pipe)], [f"{pipe} is not a regular file or folder (a named pipe"]),  # was "no such"
    ]
    for argv, fragments in cases:
        assert_one_line_error(run_script("predict.py", *argv, cwd=cwd, in_process=True), *fragments)


@pytest.mark.parametrize("change,fragments,calibrated", [
    (nan_weight, ["non-finite weights", "classify.weight"], False),
    (overflowing_weights, ["non-finite logits on its training images"], False),  # making the calibration
    (overflowing_weights, ["non-finite score", "digit_0.png"], True)])  # with one made for these weights
def test_predict_never_prints_a_nan(evaluated_digits, tmp_path, change, fragments, calibrated):
    cwd = work(evaluated_digits, tmp_path)
    edit_checkpoint(cwd, DIGITS_CAC, change)
    if calibrated:
        cal = read_calibration_file(os.path.join(cwd, DIGITS_CAC))
        with open(os.path.join(cwd, calibration_file(DIGITS_CAC)), "w") as f:
            json.dump({**cal, "checkpoint_sha256": sha256(os.path.join(cwd, DIGITS_CAC))}, f)
    proc = run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images"), "--format", "json"], cwd=cwd, in_process=True)
    assert_one_line_error(proc, DIGITS_CAC, *fragments)
    assert proc.stdout == ""




@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_predict_refuses_a_non_finite_threshold_before_work(tmp_path, value):
    proc = run_script("predict.py", *[str(tmp_path / "none.pth"), str(tmp_path), f"--threshold={value}"], cwd=str(tmp_path), in_process=True)
    assert_one_line_error(proc, f"--threshold {value}", "finite")


def test_predict_skips_an_unreadable_image_with_one_warning(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    bad = os.path.join(cwd, "images", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"not the rest of a PNG")
    out = os.path.join(cwd, "p.json")
    proc = ok(run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images"), "--format", "json", "--out", out], cwd=cwd, in_process=True))
    warnings = [line for line in stderr_lines(proc) if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0] and "skipped" in warnings[0], proc.stderr
    with open(out) as f:
        rows = json.load(f)["predictions"]
    assert [os.path.basename(r["image"]) for r in rows] == ["digit_0.png", "digit_1.png", "digit_2.png"]


def test_predict_with_no_readable_image_is_one_error(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    for name in ("a.png", "b.jpg"):
        with open(os.path.join(cwd, name), "wb") as f:
            f.write(b"not an image")
    proc = run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "a.png"), os.path.join(cwd, "b.jpg")], cwd=cwd, in_process=True)
    assert_one_line_error(proc, "cannot read image", "a.png", "no image could be read (2 tried)")


@pytest.mark.parametrize("limit", [3000, 1000])  # 60 x 60 = 3600 pixels: PIL warns above 1x, raises above 2x
def test_predict_skips_an_image_over_the_decompression_limit(evaluated_digits, tmp_path, monkeypatch, limit):
    cwd = work(evaluated_digits, tmp_path)
    Image.new("L", (60, 60), 128).save(os.path.join(cwd, "images", "huge.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    proc = ok(run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images")], cwd=cwd, in_process=True))
    lines = [line for line in stderr_lines(proc) if line.startswith("warning:")]
    assert len(lines) == 1 and "huge.png has 3,600 pixels" in lines[0], lines
    assert f"decompression-bomb limit of {limit:,} pixels" in lines[0] and lines[0].startswith("warning:")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 3 and all(float(r["score"]) >= 0 for r in rows)


def test_predict_refuses_an_out_it_cannot_write_before_work(evaluated_digits, tmp_path):
    cwd = work(evaluated_digits, tmp_path)
    os.makedirs(os.path.join(cwd, "out_folder"))
    with open(os.path.join(cwd, "a_file"), "w") as f:
        f.write("in the way")
    before = snapshot(cwd)
    for out, fragments in ((os.path.join(cwd, "out_folder"), ["--out", "out_folder is a folder", "file name"]),
                           (os.path.join(cwd, "a_file", "p.csv"), ["--out", "a_file", "is a file, not a folder"])):
        proc = run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "missing_images"), "--out", out], cwd=cwd, in_process=True)
        assert_one_line_error(proc, *fragments)  # refused before the images are looked for
    assert snapshot(cwd) == before


def test_predict_full_disk_keeps_the_previous_output(evaluated_digits, tmp_path, monkeypatch):
    cwd = work(evaluated_digits, tmp_path)
    out = os.path.join(cwd, "p.csv")
    with open(out, "w") as f:
        f.write("previous predictions\n")

    @contextlib.contextmanager
    def full_disk(path, mode):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield

    monkeypatch.setattr(predict, "atomic_write", full_disk)
    proc = run_script("predict.py", *[DIGITS_CAC, os.path.join(cwd, "images"), "--out", out], cwd=cwd, in_process=True)
    assert_one_line_error(proc, "cannot write the predictions", "p.csv", "No space left")
    with open(out) as f:
        assert f.read() == "previous predictions\n"


def test_predict_skips_a_named_pipe_in_a_folder_with_one_warning(evaluated_digits, tmp_path):
    """A named pipe with an image's name in a searched folder: skipped with a warning (opening it would wait for
    a writer forever), the images around it predicted."""
    cwd = work(evaluated_digits, tmp_path)
    os.mkfifo(os.path.join(cwd, "images", "digit_1a.png"))
    proc = ok(run_script("predict.py", DIGITS_CAC, os.path.join(cwd, "images"), cwd=cwd, in_process=True))
    warnings = [line for line in stderr_lines(proc) if line.startswith("warning:")]
    assert len(warnings) == 1 and "digit_1a.png is not a regular file (a named pipe" in warnings[0], warnings
    assert len(list(csv.DictReader(io.StringIO(proc.stdout)))) == 3

