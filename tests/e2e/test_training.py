"""Training-loop guards, in-process: a non-finite loss stops the run before any checkpoint is
written from it."""

import pytest
import torch

import train_cacOpenset
import train_closedSet
import utils
from conftest import CPU_EXACT
from core.errors import UserError
from utils import CACLoss


class _NaNAfterFirstBatch(CACLoss):
    def forward(self, distances, targets):
        total, anchor, tuplet = super().forward(distances, targets)
        self.calls = getattr(self, "calls", 0) + 1
        return (total * float("nan") if self.calls > 1 else total), anchor, tuplet


def test_nan_loss_stops_cac_training_without_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(utils, "CACLoss", _NaNAfterFirstBatch)  # the script imports it when training starts
    with pytest.raises(UserError, match=r"non-finite in epoch 0"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert_only_the_state_before_epoch_0(tmp_path)  # no checkpoint from NaN weights


def assert_only_the_state_before_epoch_0(folder):
    """The one .pth left is ...Last.pth as saved before the first epoch: nothing from NaN weights."""
    files = list(folder.rglob("*.pth"))
    assert len(files) == 1 and files[0].name.endswith("Last.pth"), files
    assert torch.load(files[0], weights_only=True)["epoch"] == 0


def test_nan_loss_stops_cross_entropy_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda logits, t, **kw: real(logits, t, **kw) * float("inf"))
    with pytest.raises(UserError, match="non-finite in epoch 0"):
        train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert_only_the_state_before_epoch_0(tmp_path)


@CPU_EXACT
def test_same_seed_same_weights_whether_caches_are_cold_or_warm(tmp_path, monkeypatch, private_cache):
    """The first run of a trial builds the train/validation partition and normalization caches (in the
    --cache_dir folder, not $CAC_CACHE_DIR's); the second finds them. Both must train the same
    network from the same --seed."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "flag_cache"
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0", "--cache_dir", str(cache)]
    weights = tmp_path / "networks" / "weights" / "Digits" / "Digits_0_{}CACclassifierAnchorLoss.pth"
    train_cacOpenset.main(args + ["--name", "cold"])
    assert (cache / "Digits" / "normalization" / "0.json").exists() and (cache / "Digits" / "trainval_idxs.json").exists()
    assert not private_cache.exists()
    train_cacOpenset.main(args + ["--name", "warm"])
    cold = torch.load(str(weights).format("cold"), weights_only=True)["net"]
    warm = torch.load(str(weights).format("warm"), weights_only=True)["net"]
    assert all(torch.equal(cold[k], warm[k]) for k in cold)


class _NaNFromBatch(CACLoss):
    """A finite loss for the first `good` batches of the run, NaN after them."""

    good = 19  # Digits trial 0 has 19 training batches per epoch: epoch 0 stays finite

    def forward(self, distances, targets):
        total, anchor, tuplet = super().forward(distances, targets)
        self.calls = getattr(self, "calls", 0) + 1
        return (total * float("nan") if self.calls > self.good else total), anchor, tuplet


def test_nan_loss_keeps_the_last_good_state(tmp_path, monkeypatch):
    """NaN in epoch 1: the message names epoch 1; no checkpoint is written from it, and ...Last.pth
    still holds the finite state after epoch 0, which --continue can pick up."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(utils, "CACLoss", _NaNFromBatch)
    with pytest.raises(UserError, match=r"non-finite in epoch 1; no checkpoint was written"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "2", "--workers", "0"])
    weights = tmp_path / "networks" / "weights" / "Digits"
    last = torch.load(weights / "Digits_0_myTestCACclassifierLast.pth", weights_only=True)
    best = torch.load(weights / "Digits_0_myTestCACclassifierAnchorLoss.pth", weights_only=True)
    assert last["epoch"] == 1 and best["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["net"].values() if v.is_floating_point())
