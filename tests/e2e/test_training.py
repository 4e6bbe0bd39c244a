"""Training-loop guards, in-process: a non-finite loss stops the run before any checkpoint."""

import pytest
import torch

import train_cacOpenset
import train_closedSet
import utils
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
    with pytest.raises(UserError, match=r"non-finite in epoch 0, batches 1-\d+"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert not list(tmp_path.rglob("*.pth"))  # no checkpoint from NaN weights


def test_nan_loss_stops_cross_entropy_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda logits, t, **kw: real(logits, t, **kw) * float("inf"))
    with pytest.raises(UserError, match="non-finite in epoch 0"):
        train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert not list(tmp_path.rglob("*.pth"))  # no checkpoint from NaN weights


def test_same_seed_same_weights_whether_caches_are_cold_or_warm(tmp_path, monkeypatch, private_cache):
    """The first run of a trial builds the train/val split and normalization caches (in the
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
    """NaN in epoch 1: the message names epoch 1 and its batches up to the first read of the
    sums (here, not a terminal: the first progress mark); ...Last.pth still holds the finite state
    after epoch 0, which --continue can pick up."""
    from engine.progress import progress_marks

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(utils, "CACLoss", _NaNFromBatch)
    with pytest.raises(UserError, match=rf"non-finite in epoch 1, batches 1-{progress_marks(19)[0]}\b"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "2", "--workers", "0"])
    last = torch.load(tmp_path / "networks/weights/Digits/Digits_0_myTestCACclassifierLast.pth", weights_only=True)
    assert (last["epoch"], last["step"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in last["net"].values() if v.is_floating_point())


def test_stop_request_after_a_nan_saves_nothing(tmp_path, monkeypatch):
    """A stop (SIGINT) after batch 3 while the loss turned NaN at batch 3, before the next
    periodic check (or progress mark, at even steps here): the state is not saved, the message
    names the epoch and batches."""
    from engine.state import TrainState

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(utils, "CACLoss", type("NaNFrom3", (_NaNFromBatch,), {"good": 2}))
    real = TrainState.stop_if_asked

    def stop_after_batch_3(self, epoch, step, steps, sums):
        if step == 3:
            self.stop_signal = "SIGINT"
        return real(self, epoch, step, steps, sums)

    monkeypatch.setattr(TrainState, "stop_if_asked", stop_after_batch_3)
    with pytest.raises(UserError, match=r"non-finite in epoch 0, batches 1-3\b"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert not list(tmp_path.rglob("*.pth"))
