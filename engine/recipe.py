"""Training recipes: `paper` (the config's numbers, the original's behaviour); `modern`, Vaze et al.'s closed-set
recipe (ICLR 2022) for CAC (with its loss) and cross-entropy alike; `vaze`, modern under their protocol (the
whole training set, the last epoch's network, one phase). Each number against their code: docs/protocol.md."""
import dataclasses
import math
from dataclasses import dataclass

RECIPES = ("paper", "modern", "vaze")
EPOCHS, WARMUP, CYCLES, BATCH = 600, 10, 3, 128
# RandAugment magnitude M (0-30): Vaze et al.'s; the grey MNIST-likes take MNIST's, ImageFolder CIFAR10's
MAGNITUDE = {"MNIST": 8, "SVHN": 18, "CIFAR10": 6, "CIFAR+10": 6, "CIFAR+50": 6, "TinyImageNet": 9,
             "Digits": 8, "FashionMNIST": 8, "ImageFolder": 6}
# their RandAugment without rotation and translation: their MNIST and SVHN, and our grey MNIST-likes
NO_GEOMETRY = ("MNIST", "SVHN", "Digits", "FashionMNIST")
VAZE_SMOOTHING = {"TinyImageNet": 0.9}  # their `smoothing` s (see the docstring)
ADAM = ("TinyImageNet",)  # their default optimizer there: Adam, lr only
VAZE_MEAN, VAZE_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # their CIFAR numbers, every data set


def torch_smoothing(s, classes):
    """torch's label_smoothing equal to Vaze et al.'s smoothing `s` over `classes` classes: theirs puts
    1 - s on the true class and s / (C - 1) on each other one, torch's e 1 - e + e / C and e / C."""
    return s * classes / (classes - 1) if s else 0.0


def use_normalization(data, recipe):
    """Give `data`, before any subset is made, the normalization `recipe` (None: paper) trains with."""
    if recipe in ("modern", "vaze"):
        grey = data.cfg["im_channels"] == 1
        data.mean, data.std = ([sum(VAZE_MEAN) / 3], [sum(VAZE_STD) / 3]) if grey else (list(VAZE_MEAN), list(VAZE_STD))


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
    optimizer_name: str = "sgd"  # or "adam"
    geometry: bool = True  # RandAugment's rotation and translations
    whole_train: bool = False  # vaze: train on train + validation, keep the last epoch's network
    phases: int = 2  # training phases of reproduce.py: the first run, then -r

    @classmethod
    def for_run(cls, name, dataset, cfg, hparams):
        if name == "paper":
            return cls("paper", False, tuple(hparams["learning_rate"]), tuple(hparams["max_epoch"]),
                       hparams.get("momentum", 0.9), hparams["weight_decay"], cfg["batch_size"])
        lr, adam, vaze = 0.01 if dataset == "TinyImageNet" else 0.1, dataset in ADAM, name == "vaze"
        smoothing = torch_smoothing(VAZE_SMOOTHING.get(dataset, 0.0), cfg["num_known_classes"])
        return cls(name, True, (lr, lr / 10), (EPOCHS, hparams["max_epoch"][1]), 0.9, 0.0 if adam else 1e-4, BATCH,
                   MAGNITUDE.get(dataset, 6), smoothing, "adam" if adam else "sgd", dataset not in NO_GEOMETRY,
                   whole_train=vaze, phases=1 if vaze else 2)

    def train_spec(self, spec):
        """The AugmentSpec of the training images under this recipe (paper: `spec` itself)."""
        if not self.modern:
            return spec
        return dataclasses.replace(spec, scale_min=1.0, flip=0.5, rotate=0.0, randaugment=self.magnitude, pad=4,
                                   geometry=self.geometry)

    def train_subset(self, train, val):
        """The training subset: paper `train` itself; modern augmented; vaze the images of `train` and `val`."""
        if not self.modern:
            return train
        indices, labels = train.indices, train.labels
        if self.whole_train:
            import numpy as np
            import torch

            indices, labels = np.concatenate([train.indices, val.indices]), torch.cat([train.labels, val.labels])
        return type(train)(train.base, indices, labels, self.train_spec(train.spec))

    def optimizer(self, params, phase):
        import torch  # here: reproduce.py --help reads RECIPES without torch
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.learning_rate[phase])
        return torch.optim.SGD(params, lr=self.learning_rate[phase], momentum=self.momentum,
                               weight_decay=self.weight_decay)

    def scheduler(self, optimizer, epochs, first_epoch):
        """The per-epoch schedule of a run of `epochs` epochs from `first_epoch`; None for paper."""
        return WarmRestarts(optimizer, epochs, first_epoch) if self.modern else None


class WarmRestarts:
    """Vaze et al.'s schedule: torch's CosineAnnealingWarmRestarts (T_0 = epochs // CYCLES, eta_min = lr / 1000)
    after a linear warm-up of W epochs (WARMUP of EPOCHS, scaled): epoch 0 of the run at eta_min, epoch e in
    1..W at eta_min + (cosine(W) - eta_min) e / W, epoch e > W at cosine(e - 1)."""

    def __init__(self, optimizer, epochs, first_epoch):
        self.optimizer, self.first_epoch = optimizer, first_epoch
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.eta_min, self.cycle = self.base_lr / 1000, max(1, epochs // CYCLES)
        self.warmup = WARMUP if epochs >= EPOCHS else round(WARMUP * epochs / EPOCHS)
        import torch

        self.cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, self.cycle, eta_min=self.eta_min)

    def set_epoch(self, epoch):
        e = epoch - self.first_epoch
        if e > self.warmup:
            self.cosine.step(e - 1)  # sets each group's lr (torch's closed form of epoch e - 1)
            return
        lr = self.eta_min  # epoch 0 (theirs starts at eta_min), then the ramp up to the cosine at `warmup`
        if e:
            t = self.warmup % self.cycle  # the cosine's closed form there
            top = self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.cycle)) / 2
            lr += (top - self.eta_min) * e / self.warmup
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
    """A copy of a config's schedule with --lr, when given, as `phase`'s learning rate (0: first run, 1: -r)."""
    rates = list(schedule["learning_rate"])
    rates[phase] = rates[phase] if lr is None else lr
    return {**schedule, "learning_rate": rates}
