"""--recipe modern through the training scripts: the schedule's lr per epoch, and an interrupted
modern run continued with --continue ends where the uninterrupted one ends (the scheduler's
state travels in ...Last.pth); a --continue under another recipe is refused."""
import pytest
import torch

import train_closedSet
from conftest import CPU_EXACT
from core.errors import Interrupted, UserError
from e2e.test_resume import CE_FILES, assert_same_run, stop_at, weights
from engine.recipe import WarmRestarts


@CPU_EXACT
def test_modern_run_continued_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "2", "--workers", "0", "--seed", "3",
            "--recipe", "modern"]
    seen = []
    real = WarmRestarts.set_epoch

    def record(self, epoch):
        real(self, epoch)
        seen.append((epoch, self.lr()))

    with monkeypatch.context() as m:
        m.setattr(WarmRestarts, "set_epoch", record)
        train_closedSet.main(args + ["--name", "whole"])
    # 2 epochs: no warm-up, cycles of 1 epoch; as Vaze et al.'s scheduler, epoch 0 at eta_min (lr / 1000),
    # then each epoch at the cosine of the epoch before (a cycle's start: lr 0.1)
    assert seen == [(0, pytest.approx(1e-4)), (1, pytest.approx(0.1))]
    with monkeypatch.context() as m:
        stop_at(m, 1, 2)  # mid-epoch 1 (Digits at batch 128: 5 batches)
        with pytest.raises(Interrupted):
            train_closedSet.main(args + ["--name", "cut"])
    saved = torch.load(weights(tmp_path, "cut", CE_FILES[-1]), weights_only=True)
    assert saved["scheduler"]["first_epoch"] == 0 and saved["args"]["recipe"] == "modern"
    with pytest.raises(UserError, match="--recipe modern"):
        train_closedSet.main(args[:-2] + ["--name", "cut", "--continue"])  # the paper recipe
    train_closedSet.main(args + ["--name", "cut", "--continue"])
    assert_same_run(tmp_path, "whole", "cut", CE_FILES, "ClosedSet")
    whole = torch.load(weights(tmp_path, "whole", CE_FILES[-1]), weights_only=True)
    assert whole["scheduler"] == torch.load(weights(tmp_path, "cut", CE_FILES[-1]), weights_only=True)["scheduler"]
