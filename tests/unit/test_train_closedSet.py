"""train_closedSet.py's own rules, against their expectations written out: the best checkpoint is
replaced only by a strictly better validation accuracy, and -r must beat the loaded first run's."""
import math
from types import SimpleNamespace

import pytest
import torch

import train_closedSet as script
from engine.accel import Accel
from engine.loop import BatchMeans


class RecordingRun:
    recipe = SimpleNamespace(whole_train=False)

    def __init__(self, best):
        self.best, self.saved = best, []

    def checkpoint(self, net, acc, epoch):
        return {"epoch": epoch}

    def save(self, checkpoint, suffix):
        self.saved.append(checkpoint["epoch"])


@pytest.mark.parametrize("loaded,saved", [(None, [0, 2]), ({"acc": 90.0, "epoch": 7}, [2])])
def test_only_a_strictly_better_accuracy_is_saved_and_r_must_beat_the_loaded_one(loaded, saved):
    run = RecordingRun(script.starting_best(loaded))
    assert run.best == {"acc": 90.0 if loaded else -math.inf}
    for epoch, acc in enumerate([90.0, 90.0, 91.0, 91.0]):
        script.save_best(run, None, {"val/accuracy": acc}, epoch)
    assert run.saved == saved and run.best["acc"] == 91.0


def test_validation_accuracy_is_the_largest_logit(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    logits = torch.tensor([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0]])
    means = BatchMeans(Accel(torch.device("cpu")))
    with torch.no_grad():
        script.validate(torch.nn.Identity(), [(logits, torch.tensor([0, 0, 0]))], means)
    (loss,), accuracy = means.means()
    expected = -torch.log_softmax(logits, 1)[:, 0].mean()
    assert accuracy == pytest.approx(200 / 3) and loss == pytest.approx(float(expected))


def test_under_the_vaze_recipe_every_epoch_is_saved():
    """--recipe vaze trains on the whole training set and evaluates the last epoch."""
    run = RecordingRun(script.starting_best(None))
    run.recipe = SimpleNamespace(whole_train=True)
    for epoch, acc in enumerate([90.0, 80.0, 70.0]):
        script.save_best(run, None, {"val/accuracy": acc}, epoch)
    assert run.saved == [0, 1, 2]
