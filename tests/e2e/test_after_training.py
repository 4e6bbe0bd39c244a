"""Right after training, with no evaluation (issue 13): predict.py works on every checkpoint a run
saved, making the calibration from the training data the checkpoint records (equal to the one
an evaluation makes) and writing it beside the checkpoint, whose bytes never change; an image
folder that moved is one line naming --data_root; evaluation without --num_trials
evaluates the trials that were trained; its results name the classes, and the .npz holds each
test image's original class and, for image folders, its file."""
import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import (REPO, assert_one_line_error, calibration_file, ok, read_calibration_file, run_script, sha256,
                      stderr_lines)
from datasets.digits import Digits
from engine.calibration import calibration_problem
from fakedata import PETS_SPLIT, write_pets
from networks.weights import CAC, RUN_FILES, weights_path

CAC_FILES = [weights_path("Digits", 0, "s", s) for s in RUN_FILES[CAC][:3]]  # AnchorLoss, CACLoss, Accuracy
CE_FILE = weights_path("Digits", 0, "s", "closedSetClassifier")
FAST = ["--workers", "0"]


@pytest.fixture
def trained(trained_digits):
    """Digits trial 0 trained for one epoch by both methods (--name s), nothing evaluated; and PNGs."""
    return trained_digits


def copy_of(trained, tmp_path):
    cwd = tmp_path / "w"
    shutil.copytree(trained, cwd)
    return str(cwd)


def made_threshold(cwd, path):
    """The paper's scorer's threshold in the calibration beside `path`."""
    made = read_calibration_file(os.path.join(cwd, path))
    return made["thresholds"][made["scorer"]]


def load(cwd, path):
    return torch.load(os.path.join(cwd, path), weights_only=True)


@pytest.mark.parametrize("path", CAC_FILES + [CE_FILE])
def test_predict_works_on_every_saved_checkpoint_right_after_training(trained, tmp_path, path):
    cwd = copy_of(trained, tmp_path)
    before = sha256(os.path.join(cwd, path))
    assert "calibration" not in load(cwd, path) and not os.path.exists(os.path.join(cwd, "results"))
    assert not os.path.exists(os.path.join(cwd, calibration_file(path)))
    first = ok(run_script("predict.py", path, "images", cwd=cwd, in_process=True))
    assert [line.split(" made in ")[0].split(" for scorer ")[0] for line in stderr_lines(first)] == [
        f"calibration of {path}", f"calibration written to {calibration_file(path)}",
        f"threshold {made_threshold(cwd, path):.6g}"]
    rows = list(csv.DictReader(io.StringIO(first.stdout)))
    assert [os.path.basename(r["image"]) for r in rows] == ["digit_0.png", "digit_1.png", "digit_2.png"]
    assert sha256(os.path.join(cwd, path)) == before  # the checkpoint, byte for byte
    made = read_calibration_file(os.path.join(cwd, path))
    method = "CAC" if path in CAC_FILES else "ClosedSet"
    assert calibration_problem(made, method, 6) is None and made["checkpoint_sha256"] == before
    assert made["class_names"] == ["2", "3", "4", "5", "6", "7"]  # Digits trial 0's known digits
    again = ok(run_script("predict.py", path, "images", cwd=cwd, in_process=True))
    assert again.stdout == first.stdout and stderr_lines(again) == stderr_lines(first)[-1:]  # read: not made again
    assert sha256(os.path.join(cwd, path)) == before


def test_predict_makes_the_data_caches_in_its_cache_dir(trained, tmp_path):
    cwd = copy_of(trained, tmp_path)
    ok(run_script("predict.py", CE_FILE, "images", "--cache_dir", tmp_path / "c", cwd=cwd, in_process=True))
    digits = tmp_path / "c" / "Digits"
    assert (digits / "trainval_idxs.json").is_file() and (digits / "normalization" / "0.json").is_file()


def test_first_use_calibration_is_the_one_evaluation_makes(trained, tmp_path):
    cwd = copy_of(trained, tmp_path)
    ok(run_script("predict.py", CAC_FILES[0], "images", cwd=cwd, in_process=True))
    made = read_calibration_file(os.path.join(cwd, CAC_FILES[0]))
    proc = ok(run_script("eval_cacOpenset.py", "-dataset", "Digits", "--name", "s", "--recompute_anchors", *FAST,
                         cwd=cwd, in_process=True))
    assert "anchor means computed" in proc.stdout
    evaluated = read_calibration_file(os.path.join(cwd, CAC_FILES[0]))
    assert made["thresholds"] == pytest.approx(evaluated["thresholds"], rel=1e-6)
    np.testing.assert_allclose(made["anchor_means"]["means"], evaluated["anchor_means"]["means"], rtol=1e-6)
    assert made["anchor_means"]["data"] == evaluated["anchor_means"]["data"]
    assert {k: v for k, v in made.items() if k not in ("thresholds", "anchor_means")} == \
        {k: v for k, v in evaluated.items() if k not in ("thresholds", "anchor_means")}


def test_eval_without_num_trials_evaluates_the_trained_trial_and_names_classes(trained, tmp_path):
    cwd = copy_of(trained, tmp_path)
    proc = ok(run_script("eval_closedSet.py", "-dataset", "Digits", "--name", "s", *FAST, cwd=cwd, in_process=True))
    assert "evaluating trials [0] of Digits" in proc.stdout
    with open(os.path.join(cwd, "results", "Digits_sClosedSet_trials0-0.json")) as f:
        result = json.load(f)
    with open(os.path.join(REPO, "datasets", "Digits", "class_splits", "0.json")) as f:
        split = json.load(f)
    assert result["trials"] == [0]
    assert result["classes"] == [{"trial": 0, "known_classes": sorted(split["Known"]),
                                  "known_class_names": [str(c) for c in sorted(split["Known"])],
                                  "unknown_classes": split["Unknown"],
                                  "unknown_class_names": [str(c) for c in split["Unknown"]]}]
    # each test image's original class, read independently from the data set and the split file
    z = np.load(os.path.join(cwd, "results", "Digits_sClosedSet_trials0-0.npz"))
    targets = Digits(train=False).targets
    known = targets[np.isin(targets, split["Known"])]
    unknown = targets[np.isin(targets, split["Unknown"])]
    assert z["trial0_known_classes"].tolist() == known.tolist()
    assert z["trial0_unknown_classes"].tolist() == unknown.tolist() and len(set(unknown.tolist())) == 4
    assert z["trial0_unknown_class_names"].tolist() == [str(c) for c in unknown]
    assert z["trial0_known_labels"].tolist() == [sorted(split["Known"]).index(c) for c in known]
    assert set(z["trial0_unknown_labels"].tolist()) == {6}  # the original key, unchanged
    assert "trial0_known_paths" not in z.files  # Digits is in memory: no files


def test_no_trained_trial_is_one_line_with_the_train_command(tmp_path):
    proc = run_script("eval_cacOpenset.py", "-dataset", "Digits", "--name", "none", cwd=str(tmp_path), in_process=True)
    assert_one_line_error(proc, "no trained checkpoint", "`python train_cacOpenset.py --dataset Digits --trial 0 "
                                                         "--name none`")


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory):
    """The README's image folder, trained for one epoch from work/ (relative --data_root), no evaluation."""
    root = write_pets(tmp_path_factory.mktemp("own"))
    cwd = root / "work"
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--im_size", 16]
    ok(run_script("train_cacOpenset.py", *data, "--trial", 0, "--name", "mine", "--epochs", 1, *FAST, cwd=cwd,
                  in_process=True))
    return root, data


def test_image_folder_predict_after_training_from_elsewhere_and_after_a_move(pets_run, tmp_path):
    root, _ = pets_run
    shutil.copytree(root, tmp_path / "own")
    ckpt = os.path.join("work", weights_path("ImageFolder", 0, "mine", RUN_FILES[CAC][1]))  # the CACLoss one
    moved = tmp_path / "own" / "pets_moved"
    os.rename(tmp_path / "own" / "pets", moved)
    proc = run_script("predict.py", ckpt, str(moved / "test"), cwd=str(tmp_path / "own"), in_process=True)
    assert_one_line_error(proc, "has no calibration yet", "no folder", "--data_root")
    # from another folder than training's, with the data where the message says to point
    proc = ok(run_script("predict.py", ckpt, str(moved / "test"), "--data_root", str(moved),
                         cwd=str(tmp_path / "own"), in_process=True))
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 14 and {r["closest_class"] for r in rows} <= set(PETS_SPLIT["Known"])
    assert read_calibration_file(str(tmp_path / "own" / ckpt))["class_names"] == sorted(PETS_SPLIT["Known"])


def test_image_folder_eval_without_num_trials_names_classes_and_files(pets_run, tmp_path):
    root, data = pets_run
    shutil.copytree(root, tmp_path / "own")
    cwd = str(tmp_path / "own" / "work")
    proc = ok(run_script("eval_cacOpenset.py", *data, "--name", "mine", *FAST, cwd=cwd, in_process=True))
    assert "evaluating trials [0] of ImageFolder" in proc.stdout
    stem = os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0")
    with open(stem + ".json") as f:
        classes = json.load(f)["classes"][0]
    names = sorted(os.listdir(tmp_path / "own" / "pets" / "test"))  # class ids: the sorted folder names
    assert classes["known_class_names"] == sorted(PETS_SPLIT["Known"])
    assert classes["unknown_class_names"] == PETS_SPLIT["Unknown"]
    assert classes["known_classes"] == [names.index(n) for n in sorted(PETS_SPLIT["Known"])]
    z = np.load(stem + ".npz")
    for part in ("known", "unknown"):
        paths = z[f"trial0_{part}_paths"].tolist()
        folders = [os.path.basename(os.path.dirname(p)) for p in paths]
        listed = sorted(os.path.join(c, f) for c in PETS_SPLIT[part.capitalize()]
                        for f in os.listdir(tmp_path / "own" / "pets" / "test" / c))
        assert sorted(os.path.relpath(p, os.path.join(cwd, "../pets/test")) for p in paths) == listed
        assert z[f"trial0_{part}_class_names"].tolist() == folders
        assert z[f"trial0_{part}_classes"].tolist() == [names.index(c) for c in folders]


def test_predict_refuses_the_state_a_run_keeps_for_continue(trained, tmp_path):
    """...Last.pth of a finished run (as here: it was "an unfinished run") is refused as what it is."""
    cwd = copy_of(trained, tmp_path)
    last = weights_path("Digits", 0, "s", RUN_FILES[CAC][-1])
    with open(os.path.join(cwd, last), "rb") as f:
        before = f.read()
    state = torch.load(os.path.join(cwd, last), weights_only=True)
    assert state["epoch"] == state["end_epoch"]  # finished
    proc = run_script("predict.py", last, "images", cwd=cwd, in_process=True)
    line = assert_one_line_error(proc, "the state a training run keeps for --continue (finished or not)", CAC_FILES[0])
    assert "unfinished" not in line
    with open(os.path.join(cwd, last), "rb") as f:
        assert f.read() == before
    assert not os.path.exists(os.path.join(cwd, calibration_file(last)))
