"""Training recipes: `paper` (the config's numbers, the original's behaviour) and `modern`, the
strong closed-set recipe of Vaze et al. (ICLR 2022, "Open-set recognition: a good closed-set
classifier is all you need"), for CAC and cross-entropy alike (CAC keeps its own loss).

modern, first run: SGD momentum 0.9, weight decay 1e-4, lr 0.1 (TinyImageNet 0.01), 600 epochs,
batch 128; per epoch, cosine annealing with warm restarts (3 equal cycles, torch's
CosineAnnealingWarmRestarts, eta_min = lr / 1000) whose first `warm-up` epochs are replaced by a
linear ramp from eta_min to the cosine's value at the warm-up's end (as their scheduler does);
warm-up 10 epochs of 600, i.e. round(epochs / 60) when --epochs is smaller (0 under 30 epochs).
Training images: Resize, RandAugment(N=1, M), RandomCrop(pad 4), RandomHorizontalFlip(0.5).
Label smoothing (cross-entropy only): 0 except TinyImageNet. Their table's 0.9 is their code's
`smoothing` s: target 1 - s on the true class and s / (C - 1) on each other one; torch's
label_smoothing e gives 1 - e + e / C and e / C, so e = s * C / (C - 1) (0.947 for C = 20).
modern -r: the same schedule at a tenth of the lr, for the config's max_epoch[1] epochs.
"""
import dataclasses
import math
from dataclasses import dataclass

RECIPES = ("paper", "modern")
EPOCHS, WARMUP, CYCLES, BATCH = 600, 10, 3, 128
# RandAugment magnitude M (torchvision's 31 bins): Vaze et al.'s table; Digits and FashionMNIST
# (grey-scale, MNIST-like) take MNIST's, ImageFolder (its config copies CIFAR10's) CIFAR10's
MAGNITUDE = {"MNIST": 8, "SVHN": 18, "CIFAR10": 6, "CIFAR+10": 6, "CIFAR+50": 6, "TinyImageNet": 9,
             "Digits": 8, "FashionMNIST": 8, "ImageFolder": 6}
VAZE_SMOOTHING = {"TinyImageNet": 0.9}  # their `smoothing` s (see the docstring)


def torch_smoothing(s, classes):
    """torch's label_smoothing equal to Vaze et al.'s smoothing `s` over `classes` classes."""
    return s * classes / (classes - 1) if s else 0.0


@dataclass(frozen=True)
class Recipe:
    """A training recipe's numbers; `modern` False: the config's (paper) numbers, untouched."""
    name: str
    modern: bool
    learning_rate: tuple  # (first run, -r)
    max_epoch: tuple
    momentum: float
    weight_decay: float
    batch_size: int
    magnitude: int | None = None  # RandAugment M; None: the config's augmentation
    label_smoothing: float = 0.0  # torch's, for cross-entropy

    @classmethod
    def for_run(cls, name, dataset, cfg, hparams):
        """The recipe `name` for data set `dataset` (config entry `cfg`, the method's schedule
        `hparams`: learning_rate, max_epoch, weight_decay, momentum)."""
        if name == "paper":
            return cls("paper", False, tuple(hparams["learning_rate"]), tuple(hparams["max_epoch"]),
                       hparams.get("momentum", 0.9), hparams["weight_decay"], cfg["batch_size"])
        lr = 0.01 if dataset == "TinyImageNet" else 0.1
        smoothing = torch_smoothing(VAZE_SMOOTHING.get(dataset, 0.0), cfg["num_known_classes"])
        return cls("modern", True, (lr, lr / 10), (EPOCHS, hparams["max_epoch"][1]), 0.9, 1e-4, BATCH,
                   MAGNITUDE.get(dataset, 6), smoothing)

    def train_spec(self, spec):
        """The AugmentSpec of the training images under this recipe (paper: `spec` itself)."""
        if not self.modern:
            return spec
        return dataclasses.replace(spec, scale_min=1.0, flip=0.5, rotate=0.0, randaugment=self.magnitude, pad=4)

    def optimizer(self, params, phase):
        import torch  # here: reproduce.py --help reads RECIPES without torch
        return torch.optim.SGD(params, lr=self.learning_rate[phase], momentum=self.momentum,
                               weight_decay=self.weight_decay)

    def scheduler(self, optimizer, epochs, first_epoch):
        """The per-epoch schedule of a run of `epochs` epochs from `first_epoch`; None for paper."""
        return WarmRestarts(optimizer, epochs, first_epoch) if self.modern else None


def warmup_epochs(epochs):
    return WARMUP if epochs >= EPOCHS else round(WARMUP * epochs / EPOCHS)


class WarmRestarts:
    """Cosine annealing with CYCLES warm restarts over `epochs` epochs (torch's
    CosineAnnealingWarmRestarts, T_0 = epochs // CYCLES, eta_min = lr / 1000), the first
    warmup_epochs(epochs) of them a linear ramp. `set_epoch(e)` at the start of each epoch sets
    the lr of global epoch e (a run starts at `first_epoch`); state_dict() for --continue."""

    def __init__(self, optimizer, epochs, first_epoch):
        self.optimizer, self.first_epoch = optimizer, first_epoch
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.eta_min = self.base_lr / 1000
        self.cycle = max(1, epochs // CYCLES)
        self.warmup = warmup_epochs(epochs)
        import torch

        self.cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, self.cycle, eta_min=self.eta_min)

    def cosine_lr(self, e):
        """The cosine's lr at epoch e of the run (closed form, for the ramp's end)."""
        t = e % self.cycle
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.cycle)) / 2

    def set_epoch(self, epoch):
        e = epoch - self.first_epoch
        self.cosine.step(e)  # sets each group's lr (torch's closed form of epoch e)
        if e < self.warmup:
            lr = self.eta_min + (self.cosine_lr(self.warmup) - self.eta_min) * (e + 1) / self.warmup
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return {"first_epoch": self.first_epoch, "cosine": self.cosine.state_dict()}

    def load_state_dict(self, state):
        self.first_epoch = state["first_epoch"]
        self.cosine.load_state_dict(state["cosine"])


def phase_schedule(schedule, phase, lr=None):
    """A copy of a config's schedule (openset_training / closedset_training) with --lr, when
    given, as the learning rate of `phase` (0: first run, 1: -r); the other phase's stays."""
    schedule = dict(schedule)
    if lr is not None:
        rates = list(schedule["learning_rate"])
        rates[phase] = lr
        schedule["learning_rate"] = rates
    return schedule
