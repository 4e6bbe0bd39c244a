"""engine/recipe.py: the modern recipe's schedule against Vaze et al.'s scheduler stepped as their
loop steps it (written out here), its label smoothing against their target distribution, their
optimizer (Adam on TinyImageNet), normalization and augmentation order, the vaze recipe's whole
training set, and the paper recipe = the config's."""
import math
from types import SimpleNamespace

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from datasets.augment import AugmentSpec
from datasets.config import load_config
from datasets.randaugment import VazeRandAugment
from datasets.trial import RemappedSubset
from engine.recipe import VAZE_MEAN, VAZE_STD, Recipe, WarmRestarts, torch_smoothing, use_normalization


def warmup_epochs(epochs):
    """The warm-up of a WarmRestarts schedule over `epochs` epochs."""
    return WarmRestarts(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), epochs, 0).warmup


def lrs(epochs, base=0.1, first=0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = Recipe.for_run("modern", "MNIST", load_config("MNIST"), load_config("MNIST")["closedset_training"]) \
        .scheduler(opt, epochs, first)
    out = []
    for e in range(first, first + epochs):
        sched.set_epoch(e)
        out.append(sched.lr())
    return out


def theirs(epochs, base=0.1):
    """The lr of each epoch under their scheduler (utils/schedulers.py), stepped as their osr.py
    steps it: built at eta_min, then step(epoch=e) after training epoch e (warm-up list below
    W, torch's cosine at T_cur = e % T_0 from W on); W as ours scales it for short runs."""
    lo, t0, warm = base / 1000, int(epochs / 3), warmup_epochs(epochs)
    cos = lambda t: lo + (base - lo) * (1 + math.cos(math.pi * (t % t0) / t0)) / 2  # noqa: E731
    ramp = [lo + (cos(warm) - lo) / warm * (n + 1) for n in range(warm)] if warm else []
    lr, out = lo, []
    for e in range(epochs):
        out.append(lr)
        lr = ramp[e] if e < warm else cos(e)
    return out


@pytest.mark.parametrize("epochs", [600, 60, 7])
def test_schedule_is_their_warmup_then_three_cosine_cycles(epochs):
    got = lrs(epochs)
    assert got == pytest.approx(theirs(epochs), rel=1e-9)
    if epochs == 600:
        assert got[0] == pytest.approx(1e-4) and got[10] == pytest.approx(got[11])  # ramp's end = cosine(10)
        assert got[201] == pytest.approx(0.1) and got[401] == pytest.approx(0.1)  # the restarts, a step late
        assert got[200] < 1e-3


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
    assert [type(t) for t in steps] == [VazeRandAugment, T.Resize, T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor,
                                        T.Normalize]  # their order: RandAugment on the image as read
    ra, crop, flip = steps[0], steps[2], steps[3]
    assert (ra.num_ops, ra.magnitude, ra.geometry, crop.padding, flip.p) == (1, 18, False, 4, 0.5)
    cifar = Recipe.for_run("modern", "CIFAR10", load_config("CIFAR10"), h)
    assert cifar.train_spec(spec).transform().transforms[0].geometry and cifar.magnitude == 6


def test_optimizer_is_theirs_adam_on_tinyimagenet_sgd_elsewhere():
    params = [torch.zeros(2, requires_grad=True)]
    for dataset, kind, lr, decay in (("TinyImageNet", torch.optim.Adam, 0.01, 0.0), ("SVHN", torch.optim.SGD, 0.1, 1e-4)):
        cfg = load_config(dataset)
        for name in ("modern", "vaze"):
            opt = Recipe.for_run(name, dataset, cfg, cfg["closedset_training"]).optimizer(params, 0)
            group = opt.param_groups[0]
            assert type(opt) is kind and group["lr"] == lr and group["weight_decay"] == decay
    paper = Recipe.for_run("paper", "TinyImageNet", load_config("TinyImageNet"),
                           load_config("TinyImageNet")["closedset_training"]).optimizer(params, 0)
    assert type(paper) is torch.optim.SGD


def test_normalization_is_their_cifar_numbers_for_modern_and_vaze_only():
    for recipe, channels, want in (("paper", 3, ([0.1] * 3, [0.2] * 3)), (None, 1, ([0.1], [0.2])),
                                   ("modern", 3, (list(VAZE_MEAN), list(VAZE_STD))),
                                   ("vaze", 1, ([np.mean(VAZE_MEAN)], [np.mean(VAZE_STD)]))):
        data = SimpleNamespace(cfg={"im_channels": channels}, mean=[0.1] * channels, std=[0.2] * channels)
        use_normalization(data, recipe)
        assert data.mean == pytest.approx(want[0]) and data.std == pytest.approx(want[1]) and len(data.mean) == channels
    assert VAZE_MEAN == (0.4914, 0.4822, 0.4465) and VAZE_STD == (0.2023, 0.1994, 0.2010)


def test_vaze_recipe_trains_on_train_and_validation_once():
    cfg = load_config("CIFAR10")
    spec = AugmentSpec.from_config("train", cfg, [0.5] * 3, [0.2] * 3)
    train = RemappedSubset([], np.array([4, 1]), torch.tensor([0, 1]), spec)
    val = RemappedSubset([], np.array([7]), torch.tensor([2]), AugmentSpec.from_config("eval", cfg, [0.5] * 3, [0.2] * 3))
    vaze = Recipe.for_run("vaze", "CIFAR10", cfg, cfg["openset_training"])
    modern = Recipe.for_run("modern", "CIFAR10", cfg, cfg["openset_training"])
    both = vaze.train_subset(train, val)
    assert list(both.indices) == [4, 1, 7] and both.labels.tolist() == [0, 1, 2] and both.spec.randaugment == 6
    assert (vaze.whole_train, vaze.phases, modern.whole_train, modern.phases) == (True, 1, False, 2)
    assert list(modern.train_subset(train, val).indices) == [4, 1]
    paper = Recipe.for_run("paper", "CIFAR10", cfg, cfg["openset_training"])
    assert paper.train_subset(train, val) is train and not paper.whole_train


@pytest.mark.parametrize("epochs,warmup", [(45, 1), (33, 1), (27, 0), (100, 2), (110, 2), (500, 8), (599, 10)])
def test_a_shorter_run_warms_up_for_the_nearest_whole_sixtieth_of_its_epochs(epochs, warmup):
    """10 of 600 epochs, scaled: 45 epochs -> 0.75 -> 1 (truncating would give 0), 110 -> 1.83 -> 2."""
    assert warmup_epochs(epochs) == warmup
