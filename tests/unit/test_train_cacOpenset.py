"""train_cacOpenset.py's own rules, each against its expectation written out: the anchors are
alpha * e_i, validation accuracy is the class of the nearest anchor (argmin of the distances),
and each best checkpoint is saved whenever its value ties or beats the best so far."""
import math
from types import SimpleNamespace

import pytest
import torch

import train_cacOpenset as script
from engine.accel import Accel
from engine.loop import BatchMeans
from utils import CACLoss


class Saved(Exception):
    """Stops main() once the network is ready for training."""


def test_the_anchors_are_alpha_times_the_unit_vectors(tmp_path, monkeypatch):
    import engine.training

    seen = {}

    def prepare(run, net, best):
        seen["anchors"], seen["best"] = net.anchors.clone(), dict(best)
        raise Saved

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine.training.TrainingRun, "prepare", prepare)
    with pytest.raises(Saved):
        script.main(["--dataset", "Digits", "--alpha", "3.5", "--workers", "0", "--name", "a"])
    assert torch.equal(seen["anchors"], 3.5 * torch.eye(6, dtype=seen["anchors"].dtype))
    assert seen["best"] == {"anchor": math.inf, "cac": math.inf, "acc": 0.0}


class Distances(torch.nn.Module):
    """A network whose logits are the images and whose distances are fixed per image."""

    def __init__(self, distances):
        super().__init__()
        self.distances = distances

    def forward(self, images):
        return images, self.distances[images[:, 0].long()]


def test_validation_accuracy_is_the_class_of_the_nearest_anchor(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # image i's distances to 3 anchors: its nearest anchor is argmin, which here is never argmax
    distances = torch.tensor([[1.0, 5.0, 9.0], [7.0, 2.0, 8.0], [9.0, 8.0, 3.0], [2.0, 9.0, 8.0]], dtype=torch.float64)
    targets = torch.tensor([0, 1, 0, 0])  # right, right, wrong, right by argmin
    means = BatchMeans(Accel(torch.device("cpu")))
    images = torch.arange(4.0).view(4, 1)
    with torch.no_grad():
        script.validate(Distances(distances), [(images, targets)], CACLoss(0.1), means)
    (total, anchor), accuracy = means.means()
    assert accuracy == 75.0
    true = distances[torch.arange(4), targets]
    tuplet = torch.log(torch.exp(true.view(4, 1) - distances).sum(1))  # log(1 + sum_{j != y} exp(d_y - d_j))
    assert anchor == pytest.approx(float(true.mean())) and total == pytest.approx(float(0.1 * true.mean() + tuplet.mean()))


class RecordingRun:
    recipe = SimpleNamespace(whole_train=False)

    def __init__(self):
        self.best, self.saved = dict(script.BEST), []

    def checkpoint(self, net, acc, epoch):
        return {"epoch": epoch}

    def save(self, checkpoint, suffix):
        self.saved.append((checkpoint["epoch"], suffix))


def test_each_best_checkpoint_is_saved_on_a_tie_too():
    run = RecordingRun()
    epochs = [(2.0, 1.0, 50.0), (2.0, 1.5, 40.0), (3.0, 1.0, 50.0), (1.0, 0.5, 60.0)]  # anchor, CAC loss, accuracy
    for epoch, (anchor, cac, acc) in enumerate(epochs):
        script.save_best(run, None, {"val/anchorLoss": anchor, "val/CACLoss": cac, "val/accuracy": acc}, epoch)
    assert run.saved == [(0, "CACclassifierAnchorLoss"), (0, "CACclassifierCACLoss"), (0, "CACclassifierAccuracy"),
                         (1, "CACclassifierAnchorLoss"),  # 2.0 ties 2.0; 1.5 > 1.0 and 40 < 50 do not
                         (2, "CACclassifierCACLoss"), (2, "CACclassifierAccuracy"),  # ties
                         (3, "CACclassifierAnchorLoss"), (3, "CACclassifierCACLoss"), (3, "CACclassifierAccuracy")]
    assert run.best == {"anchor": 1.0, "cac": 0.5, "acc": 60.0}
