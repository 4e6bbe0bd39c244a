"""engine/recipe.py: the modern recipe's schedule against its closed form, its label smoothing
against Vaze et al.'s target distribution written out, and the paper recipe = the config's."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from datasets.augment import AugmentSpec
from datasets.config import load_config
from engine.recipe import Recipe, torch_smoothing, warmup_epochs


def lrs(epochs, base=0.1, first=0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = Recipe.for_run("modern", "MNIST", load_config("MNIST"), load_config("MNIST")["closedset_training"]) \
        .scheduler(opt, epochs, first)
    out = []
    for e in range(first, first + epochs):
        sched.set_epoch(e)
        out.append(sched.lr())
    return out


def closed_form(e, epochs, base=0.1):
    lo, cycle, warm = base / 1000, epochs // 3, warmup_epochs(epochs)
    cos = lambda t: lo + (base - lo) * (1 + math.cos(math.pi * (t % cycle) / cycle)) / 2  # noqa: E731
    return lo + (cos(warm) - lo) * (e + 1) / warm if e < warm else cos(e)


@pytest.mark.parametrize("epochs", [600, 60, 7])
def test_schedule_is_warmup_then_three_cosine_cycles(epochs):
    got = lrs(epochs)
    assert got == pytest.approx([closed_form(e, epochs) for e in range(epochs)], rel=1e-9)
    if epochs == 600:
        assert got[0] == pytest.approx(1e-4 + (closed_form(10, 600) - 1e-4) / 10)
        assert got[200] == pytest.approx(0.1) and got[400] == pytest.approx(0.1)  # the restarts
        assert got[199] < 1e-3


def test_schedule_counts_from_the_runs_first_epoch_and_warmup_scales():
    assert lrs(60, first=35) == lrs(60)  # a -r run starts after the first run's best epoch
    assert (warmup_epochs(600), warmup_epochs(1200), warmup_epochs(60), warmup_epochs(29)) == (10, 10, 1, 0)


def test_scheduler_state_round_trips():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    recipe = Recipe.for_run("modern", "MNIST", load_config("MNIST"), load_config("MNIST")["closedset_training"])
    a = recipe.scheduler(opt, 30, 5)
    a.set_epoch(17)
    b = recipe.scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 30, 0)
    b.load_state_dict(a.state_dict())
    b.set_epoch(17)
    assert b.lr() == a.lr() and b.first_epoch == 5


def test_label_smoothing_equals_vaze_targets():
    s, classes = 0.9, 20
    logits, labels = torch.randn(8, classes, dtype=torch.float64), torch.arange(8)
    target = torch.full((8, classes), s / (classes - 1), dtype=torch.float64)
    target[torch.arange(8), labels] = 1 - s
    theirs = (-target * logits.log_softmax(1)).sum(1).mean()
    ours = F.cross_entropy(logits, labels, label_smoothing=torch_smoothing(s, classes))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    cfg = load_config("TinyImageNet")
    assert Recipe.for_run("modern", "TinyImageNet", cfg, cfg["closedset_training"]).label_smoothing == \
        pytest.approx(0.9 * 20 / 19)


def test_paper_recipe_is_the_config_and_modern_the_papers_numbers():
    cfg = load_config("CIFAR+50")
    h = cfg["openset_training"]
    paper = Recipe.for_run("paper", "CIFAR+50", cfg, h)
    assert (list(paper.learning_rate), list(paper.max_epoch), paper.weight_decay, paper.batch_size) == \
        (h["learning_rate"], h["max_epoch"], h["weight_decay"], cfg["batch_size"])
    spec = AugmentSpec.from_config("train", cfg, [0.5] * 3, [0.2] * 3)
    assert paper.train_spec(spec) is spec
    modern = Recipe.for_run("modern", "SVHN", load_config("SVHN"), h)
    assert (modern.learning_rate, modern.max_epoch[0], modern.weight_decay, modern.batch_size, modern.magnitude,
            modern.label_smoothing) == ((0.1, 0.01), 600, 1e-4, 128, 18, 0.0)
    steps = modern.train_spec(spec).transform().transforms
    ra = next(t for t in steps if isinstance(t, T.RandAugment))
    crop = next(t for t in steps if isinstance(t, T.RandomCrop))
    flip = next(t for t in steps if isinstance(t, T.RandomHorizontalFlip))
    assert (ra.num_ops, ra.magnitude, crop.padding, flip.p) == (1, 18, 4, 0.5)
    assert not any(isinstance(t, (T.RandomResizedCrop, T.RandomRotation)) for t in steps)
