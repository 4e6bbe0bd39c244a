"""Behaviour that must match the original code (issue: same numbers as the original code).

- The released weights, evaluated on their own split (trial 5 here), see their inputs
  normalized with listed row 0, the row they were trained with: the evaluation's logits equal
  the network's output on images prepared here by hand with that row.
- The closed-set -r run keeps the loaded checkpoint's accuracy as the one to beat and replaces
  the file only on a strictly better one.
- Saved CNN checkpoints carry the original's alias keys, as views of the same tensors, so the
  original's strict load_state_dict accepts them and the file does not grow.
- The original's defaults: the eval scripts' --dataset is MNIST, train_closedSet's --trial 0.
"""
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import (REPO, assert_one_line_error, calibration_file, ok, read_calibration_file, run_script,
                      sha256)
from fakedata import read_idx_gz, write_mnist

DIGITS = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"]


def listed_row(dataset, row):
    with open(os.path.join(REPO, "datasets", "config.json")) as f:
        listed = json.load(f)[dataset]["normalization"]
    return listed["mean"][row], listed["std"][row]


# ------------------------------------------------------------------ released weights, trial 5
@pytest.mark.parametrize("tag,script", [("CACclassifierAnchorLoss", "eval_cacOpenset"),
                                        ("closedSetClassifier", "eval_closedSet")])
def test_released_weights_on_trial_5_see_listed_row_0(tag, script, reference_dir, tmp_path, monkeypatch,
                                                      private_cache):
    root = tmp_path / "data"
    write_mnist(str(root), n_train=12, n_test=8, seed=4)
    weights = tmp_path / "networks" / "weights" / "MNIST"
    weights.mkdir(parents=True)
    shutil.copy(os.path.join(reference_dir, "checkpoints", f"MNIST_0_{tag}.pth"), weights / f"MNIST_5_{tag}.pth")
    monkeypatch.chdir(tmp_path)
    assert run_script(f"{script}.py", "-dataset", "MNIST", "--start_trial", "5", "--num_trials", "1", "--data_root",
                      root, "--workers", "0", "--device", "cpu", cwd=tmp_path, in_process=True).returncode == 0

    # the trial's known test images, prepared here: resized to 32 (PIL bilinear, as torchvision's
    # Resize does on PIL images), scaled to 0-1, normalized with listed row 0
    with open(os.path.join(REPO, "datasets", "MNIST", "class_splits", "5.json")) as f:
        known = json.load(f)["Known"]
    images = read_idx_gz(str(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"))
    labels = read_idx_gz(str(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"))
    mean, std = listed_row("MNIST", 0)
    chosen = np.flatnonzero(np.isin(labels, known))
    x = np.stack([np.asarray(Image.fromarray(images[i]).resize((32, 32), Image.BILINEAR), np.float32) / 255
                  for i in chosen])[:, None]
    x = torch.from_numpy((x - mean[0]) / std[0])

    from networks.checkpoint import load_checkpoint

    from networks.closedSetClassifier import closedSetClassifier

    from networks.openSetClassifier import openSetClassifier
    net = (openSetClassifier if "CAC" in tag else closedSetClassifier)(6, 1, 32)
    load_checkpoint(str(weights / f"MNIST_5_{tag}.pth"), net)
    with torch.no_grad():
        out = net.eval()(x)
    expected = (out[0] if "CAC" in tag else out).numpy()

    method = "CAC" if "CAC" in tag else "ClosedSet"
    scores = np.load(tmp_path / "results" / f"MNIST_{method}_trials5-5.npz")
    got = scores["trial5_known_logits"]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    released = os.path.join(reference_dir, "checkpoints", f"MNIST_0_{tag}.pth")
    copy = str(weights / f"MNIST_5_{tag}.pth")
    calibration = read_calibration_file(copy)
    assert calibration["preprocessing"]["mean"] == mean and calibration["preprocessing"]["std"] == std

    # predict.py reads that calibration; neither it nor the evaluation ever wrote the checkpoint
    Image.fromarray(images[chosen[0]]).save(tmp_path / "digit.png")
    ok(run_script("predict.py", copy, tmp_path / "digit.png", "--device", "cpu", cwd=tmp_path, in_process=True))
    assert sha256(copy) == sha256(released) == calibration["checkpoint_sha256"]
    # the released file itself records no training data and has no calibration beside it: refused, untouched
    mtime = os.stat(released).st_mtime_ns
    proc = run_script("predict.py", released, tmp_path / "digit.png", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "has no calibration", f"`python {script}.py -dataset MNIST --start_trial 0")
    assert os.stat(released).st_mtime_ns == mtime and sha256(released) == calibration["checkpoint_sha256"]
    assert not os.path.exists(calibration_file(released))


# ------------------------------------------------------------------ closed-set -r
def ce_checkpoint(cwd, name="s"):
    return cwd / "networks" / "weights" / "Digits" / f"Digits_0_{name}closedSetClassifier.pth"


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a, b):
    return set(a["net"]) == set(b["net"]) and all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


@pytest.fixture
def first_run(trained_digits):
    """1-epoch closed-set and CAC first runs on Digits, in one folder (--name s)."""
    import pathlib

    return pathlib.Path(trained_digits)


def resume_with_saved_accuracy(first_run, tmp_path, monkeypatch, acc):
    """Copy the first run's checkpoint into a fresh folder with its 'acc' set to `acc`, run -r
    for one epoch there; returns (the checkpoint before, after, the -r epoch's val accuracy)."""
    target = ce_checkpoint(tmp_path)
    target.parent.mkdir(parents=True)
    before = load(ce_checkpoint(first_run))
    before["acc"] = acc
    torch.save(before, target)
    monkeypatch.chdir(tmp_path)
    assert run_script("train_closedSet.py", *DIGITS, "--name", "s", "-r", cwd=".", in_process=True).returncode == 0
    with open(tmp_path / "runs" / "Digits_0_sClosedSet" / "metrics.jsonl") as f:
        val_acc = [json.loads(line) for line in f][-1]["val/accuracy_percent"]
    return before, load(target), val_acc


def test_closed_set_resume_replaces_the_file_on_a_better_accuracy(first_run, tmp_path, monkeypatch):
    before, after, val_acc = resume_with_saved_accuracy(first_run, tmp_path, monkeypatch, acc=-1.0)
    assert not same_weights(before, after) and after["epoch"] == before["epoch"] + 1
    assert after["acc"] == pytest.approx(val_acc, abs=1e-6)


def test_closed_set_resume_keeps_the_file_without_a_better_accuracy(first_run, tmp_path, monkeypatch):
    before, after, _ = resume_with_saved_accuracy(first_run, tmp_path, monkeypatch, acc=100.0)
    assert same_weights(before, after) and after["epoch"] == before["epoch"] and after["acc"] == 100.0


def test_closed_set_resume_keeps_the_file_on_an_equal_accuracy(first_run, tmp_path, monkeypatch):
    """Strictly better, as the original's `acc > best_acc`: the -r epoch's own accuracy (the
    same run again gives the same number on the CPU) does not replace the file."""
    _, probe, _ = resume_with_saved_accuracy(first_run, tmp_path / "probe", monkeypatch, acc=-1.0)
    val_acc = probe["acc"]  # exact; metrics.jsonl rounds to 6 places
    before, after, _ = resume_with_saved_accuracy(first_run, tmp_path / "tie", monkeypatch, acc=val_acc)
    assert same_weights(before, after) and after["epoch"] == before["epoch"]


# ------------------------------------------------------------------ the original's alias keys
class OriginalEncoder(nn.Module):
    """The original's layer registration (SPEC 3): every layer once by name, then again inside
    encoder1..3 Sequentials (conv, bn, relu three times, dropout)."""

    def __init__(self, channels):
        super().__init__()
        widths = [channels, 64, 64, 128, 128, 128, 128, 128, 128, 128]
        self.dropout, self.relu = nn.Dropout2d(0.2), nn.LeakyReLU(0.2)
        for i in range(1, 10):
            setattr(self, f"bn{i}", nn.BatchNorm2d(widths[i]))
        for i in range(1, 10):
            setattr(self, f"conv{i}", nn.Conv2d(widths[i - 1], widths[i], 3, 2 if i % 3 == 0 else 1, 1, bias=False))
        for b in range(3):
            layers = []
            for i in range(3 * b + 1, 3 * b + 4):
                layers += [getattr(self, f"conv{i}"), getattr(self, f"bn{i}"), self.relu]
            setattr(self, f"encoder{b + 1}", nn.Sequential(*layers, self.dropout))


class OriginalNetwork(nn.Module):
    def __init__(self, num_classes, channels, im_size, cac):
        super().__init__()
        self.encoder = OriginalEncoder(channels)
        self.classify = nn.Linear(128 * (im_size // 8) ** 2, num_classes)
        if cac:
            self.anchors = nn.Parameter(torch.zeros(num_classes, num_classes).double(), requires_grad=False)


@pytest.mark.parametrize("suffix", ["closedSetClassifier", "CACclassifierAnchorLoss", "CACclassifierCACLoss",
                                    "CACclassifierAccuracy"])
def test_saved_checkpoints_load_strictly_into_the_original_network(first_run, suffix):
    path = first_run / "networks" / "weights" / "Digits" / f"Digits_0_s{suffix}.pth"
    ckpt = load(path)
    original = OriginalNetwork(6, 1, 16, cac="CAC" in suffix)
    original.load_state_dict(ckpt["net"], strict=True)  # raises on any missing or unexpected key
    state = ckpt["net"]
    aliases = [k for k in original.state_dict() if k.startswith("encoder.encoder")]
    assert len(aliases) == 3 * 3 * 6  # 3 blocks x (conv weight + 5 BatchNorm entries) x 3 layers
    for alias in aliases:  # encoder.encoder<block>.<position>.<field>
        _, sequential, position, field = alias.split(".", 3)
        block, position = int(sequential[-1]), int(position)
        layer = 3 * (block - 1) + position // 3 + 1
        kind = "conv" if position % 3 == 0 else "bn"
        primary = f"encoder.{kind}{layer}.{field}"
        assert state[alias].untyped_storage().data_ptr() == state[primary].untyped_storage().data_ptr(), alias
        assert torch.equal(state[alias], state[primary])
    # the aliases cost no space: the file is the size of one without them (within 3%)
    plain = {k: v for k, v in ckpt.items()}
    plain["net"] = {k: v for k, v in state.items() if not k.startswith("encoder.encoder")}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    assert os.path.getsize(path) <= 1.03 * len(buffer.getvalue())


def test_aliases_are_dropped_again_on_load(first_run):
    from networks.checkpoint import load_checkpoint
    from networks.openSetClassifier import openSetClassifier

    net = openSetClassifier(6, 1, 16)
    load_checkpoint(str(first_run / "networks" / "weights" / "Digits" / "Digits_0_sCACclassifierAnchorLoss.pth"), net)
    assert not any(k.startswith("encoder.encoder") for k in net.state_dict())


# ------------------------------------------------------------------ the original's defaults
def test_eval_scripts_default_to_mnist():
    import eval_cacOpenset
    import eval_closedSet

    for module in (eval_cacOpenset, eval_closedSet):
        assert module.parse_args([]).dataset == "MNIST"
        assert module.parse_args(["-dataset", "SVHN"]).dataset == "SVHN"
        assert module.parse_args(["--dataset", "SVHN"]).dataset == "SVHN"


def test_trial_defaults_to_0_in_both_training_scripts():
    """The original's closed-set script defaulted --trial to 0 and its CAC script required it;
    issue 13 made 0 the default of both (an image folder has one split), a given --trial wins."""
    import train_cacOpenset
    import train_closedSet

    assert train_closedSet.parse_args(["--dataset", "Digits"]).trial == 0
    assert train_cacOpenset.parse_args(["--dataset", "Digits"]).trial == 0
    assert train_cacOpenset.parse_args(["--dataset", "Digits", "--trial", "3"]).trial == 3
