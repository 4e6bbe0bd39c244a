"""Training-loop guards, in-process: a non-finite loss stops the run before any checkpoint."""

import pytest
import torch

import train_cacOpenset
import train_closedSet
from engine.errors import UserError
from utils import CACLoss


class _NaNAfterFirstBatch(CACLoss):
    def forward(self, distances, targets):
        total, anchor, tuplet = super().forward(distances, targets)
        self.calls = getattr(self, "calls", 0) + 1
        return (total * float("nan") if self.calls > 1 else total), anchor, tuplet


def test_nan_loss_stops_cac_training_without_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_cacOpenset, "CACLoss", _NaNAfterFirstBatch)
    with pytest.raises(UserError, match=r"non-finite in epoch 0, batches 1-\d+"):
        train_cacOpenset.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert not list(tmp_path.rglob("*.pth"))  # no checkpoint from NaN weights


def test_nan_loss_stops_cross_entropy_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(train_closedSet.F, "cross_entropy", lambda logits, t: real(logits, t) * float("inf"))
    with pytest.raises(UserError, match="non-finite in epoch 0"):
        train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"])
    assert not list(tmp_path.rglob("*.pth"))  # no checkpoint from NaN weights


def test_same_seed_same_weights_whether_caches_are_cold_or_warm(tmp_path, monkeypatch, isolated_datasets_dir):
    """The first run of a trial builds the train/val split and normalization caches; the
    second finds them. Both must train the same network from the same --seed."""
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0"]
    weights = tmp_path / "networks" / "weights" / "Digits" / "Digits_0_{}CACclassifierAnchorLoss.pth"
    assert not (isolated_datasets_dir / "Digits" / "normalization").exists()
    train_cacOpenset.main(args + ["--name", "cold"])
    assert (isolated_datasets_dir / "Digits" / "normalization" / "0.json").exists()
    train_cacOpenset.main(args + ["--name", "warm"])
    cold = torch.load(str(weights).format("cold"), weights_only=True)["net"]
    warm = torch.load(str(weights).format("warm"), weights_only=True)["net"]
    assert all(torch.equal(cold[k], warm[k]) for k in cold)
