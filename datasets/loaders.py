"""One trial of one data set: class split, train/val/test subsets, transforms, DataLoaders.

Known labels are remapped to 0..N-1 in ascending order of the original class id through
one lookup tensor; every unknown image gets the label N.
"""
import json
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from datasets.folder import FOLDER_DATASET, FolderData
from datasets.sources import NUM_CLASSES, SOURCES, open_source, source_labels
from datasets import splits
from datasets.partition import trainval_split
from datasets.splits import DATASETS_DIR, cached_normalization, load_class_split, normalization_problem
from core.errors import UserError
from core.files import read_json
from core.values import is_finite_number, is_whole_number
from networks.config import im_size_problem

DATASET_NAMES = (*SOURCES, FOLDER_DATASET)
FIRST_RELEASE_TRIALS = 5  # trials 5-9 of the paper's data sets are its first-release class splits
RAW_PIXELS = "raw-pixels"  # tag of computed normalization caches: stats of the files' own pixels
CHANNELS_FIRST = {"SVHN"}  # sources whose `data` array is (n, C, H, W); the others (n, H, W[, C])


def listed_normalization(cfg, trial):
    """(mean, std) listed in the config for `trial`, or None. The listed rows were computed on
    the paper's first-release splits (trials 5-9 here), which the released weights were trained
    on: trial 5 + t uses row t; trials 0-4 (the standard splits) use row t, as the original
    code does for whatever split file has that number."""
    listed = cfg.get("normalization")
    if not listed:
        return None
    for row in (trial, trial - FIRST_RELEASE_TRIALS):
        if 0 <= row < len(listed["mean"]) and len(listed["mean"][row]) == cfg["im_channels"]:
            return listed["mean"][row], listed["std"][row]
    return None


def raw_pixel_stats(chunks, channels):
    """Per-channel mean and (population) std on the 0-1 scale of uint8 images given as chunks
    (n, H, W) or (n, H, W, C), as the original's get_data_stats computes them; exact integer
    sums, so the result does not depend on how the images are chunked."""
    total = np.zeros(channels, dtype=np.int64)
    squares = np.zeros(channels, dtype=np.int64)
    count = 0
    for chunk in chunks:
        pixels = np.asarray(chunk).reshape(-1, channels).astype(np.int64)
        total += pixels.sum(0)
        squares += (pixels * pixels).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return [float(v) for v in mean / 255.0], [float(v) for v in std / 255.0]


def load_config(dataset):
    """The hyperparameters of `dataset` from datasets/config.json, checked (check_config)."""
    path = os.path.join(DATASETS_DIR, "config.json")
    config = read_json(path, "data set configuration", "restore it from the repository (git checkout "
                       "datasets/config.json) or fix the edit")
    if not isinstance(config, dict):
        raise UserError(f"{path} holds a {type(config).__name__}, not an object of data sets; restore it "
                        f"from the repository (git checkout datasets/config.json)")
    if dataset not in config or dataset.startswith("_"):
        names = ", ".join(k for k in config if not k.startswith("_"))
        raise UserError(f"unknown dataset {dataset!r}: choose one of {names}")
    check_config(dataset, config[dataset], path)
    return config[dataset]


def _pair(test):
    return lambda x: isinstance(x, list) and len(x) == 2 and all(test(v) for v in x)


# key -> (test, what the value must be); the training schedule's keys for both methods
CONFIG_RULES = {
    "batch_size": (lambda x: is_whole_number(x) and x >= 1, "a whole number, 1 or more"),
    "num_workers": (lambda x: is_whole_number(x) and x >= 0, "a whole number, 0 or more"),
    "im_channels": (lambda x: is_whole_number(x) and x in (1, 3), "1 (grey) or 3 (RGB)"),
    "num_known_classes": (lambda x: is_whole_number(x) and x >= 2, "a whole number, 2 or more"),
    "dropout": (lambda x: is_finite_number(x) and 0 <= x < 1, "a number from 0 up to (not including) 1"),
    "val_fraction": (lambda x: is_finite_number(x) and 0 < x < 1, "a number between 0 and 1 (exclusive)"),
    "anchor_flip": (lambda x: isinstance(x, bool), "true or false"),
    "data_transforms.flip": (lambda x: is_finite_number(x) and 0 <= x <= 1, "a probability from 0 to 1"),
    "data_transforms.rotate": (lambda x: is_finite_number(x) and x >= 0, "degrees, 0 or more"),
    "data_transforms.scale_min": (lambda x: is_finite_number(x) and 0 < x <= 1, "a share in (0, 1]"),
    **{f"{phase}.{key}": rule for phase in ("openset_training", "closedset_training") for key, rule in {
        "learning_rate": (_pair(lambda v: is_finite_number(v) and v > 0),
                          "a list of 2 positive numbers [first run, -r run]"),
        "max_epoch": (_pair(lambda v: is_whole_number(v) and v >= 1), "a list of 2 whole numbers >= 1 [first run, -r run]"),
        "weight_decay": (lambda x: is_finite_number(x) and x >= 0, "a number, 0 or more"),
    }.items()},
}
OPTIONAL_RULES = {  # keys the code has a default for
    "openset_training.momentum": (lambda x: is_finite_number(x) and 0 <= x < 1, "a number from 0 up to 1"),
    "closedset_training.momentum": (lambda x: is_finite_number(x) and 0 <= x < 1, "a number from 0 up to 1"),
}


def check_config(dataset, entry, path):
    """One UserError line naming the data set, the key and the file for an entry of
    datasets/config.json that is missing, of the wrong type or out of range."""
    def refuse(key, problem):
        raise UserError(f"{key} of {dataset} in {path} {problem}; fix it, or restore the file from the "
                        f"repository (git checkout datasets/config.json)")

    if not isinstance(entry, dict):
        refuse("the entry", f"is a {type(entry).__name__}, not an object")
    size = entry.get("im_size")
    if im_size_problem(size):
        raise UserError(f"im_size {size!r} of {dataset} in {path} {im_size_problem(size)}: use e.g. 32 or 64")
    for key, (test, want) in {**CONFIG_RULES, **OPTIONAL_RULES}.items():
        value, found = entry, True
        for part in key.split("."):
            found = isinstance(value, dict) and part in value
            value = value[part] if found else None
            if not found:
                break
        if not found:
            if key not in OPTIONAL_RULES:
                refuse(key, "is missing")
            continue
        if key == "num_known_classes" and value is None and dataset == FOLDER_DATASET:
            continue  # own image folders: the split file decides
        if not test(value):
            refuse(key, f"is {json.dumps(value)[:60]}, not {want}")
    if entry.get("normalization") is not None:
        check_listed_normalization(entry["normalization"], entry["im_channels"], refuse)


def check_listed_normalization(listed, channels, refuse):
    """normalization: {"mean": rows, "std": rows}, the same number of rows of `channels` finite
    values each, std > 0."""
    if not isinstance(listed, dict) or not all(isinstance(listed.get(k), list) for k in ("mean", "std")):
        refuse("normalization", 'is not {"mean": [[...], ...], "std": [[...], ...]}')
    if len(listed["mean"]) != len(listed["std"]):
        refuse("normalization", f"has {len(listed['mean'])} mean rows but {len(listed['std'])} std rows")
    for i, (mean, std) in enumerate(zip(listed["mean"], listed["std"])):
        problem = normalization_problem(mean, std, channels)
        if problem:
            part = "mean" if problem.startswith("mean") else "std"  # the problems name mean first
            refuse(f"normalization.{part}[{i}]", f"is wrong: {problem} (im_channels {channels})")


class RemappedSubset(Dataset):
    """Images `indices` of a raw data set with remapped labels and a transform."""

    def __init__(self, base, indices, labels, transform):
        self.base, self.indices, self.labels, self.transform = base, indices, labels, transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        try:
            image, _ = self.base[index]
        except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for a damaged image file
            where = self.base.samples[index][0] if hasattr(self.base, "samples") else f"image {index}"
            raise UserError(f"cannot read {where} ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                            f"replace or delete the file") from None
        return self.transform(image), self.labels[i]


def apply_overrides(cfg, dataset, im_size=None, im_channels=None):
    """A copy of `cfg` with --im_size / --im_channels applied (channels: own image folders only)."""
    cfg = dict(cfg)
    if im_size is not None:
        if im_size_problem(im_size):
            raise UserError(f"--im_size {im_size} {im_size_problem(im_size)}: give e.g. 32 or 64")
        cfg["im_size"] = im_size
    if im_channels is not None:
        if dataset != FOLDER_DATASET:
            raise UserError(f"--im_channels applies to --dataset {FOLDER_DATASET} only; {dataset} has "
                            f"{cfg['im_channels']} channel(s)")
        if im_channels not in (1, 3):
            raise UserError(f"--im_channels {im_channels}: give 1 (grey) or 3 (RGB)")
        cfg["im_channels"] = im_channels
    return cfg


class OpenSetData:
    """Everything one trial needs; test sets are opened only when asked for.

    `split_file` replaces datasets/<dataset>/class_splits/<trial>.json (for ImageFolder it is
    required and names class folders, see datasets/folder.py)."""

    def __init__(self, dataset, trial, data_root="datasets/data", download=True, config=None, split_file=None):
        self.name, self.trial, self.root, self.download = dataset, trial, data_root, download
        self._test_sets = {}  # source -> its opened test split (see _test_set)
        self.cfg = dict(config if config is not None else load_config(dataset))
        self.folder = None
        if dataset == FOLDER_DATASET:
            self.folder = FolderData(data_root, split_file, self.cfg["im_size"], self.cfg["im_channels"])
            self.known_source = self.unknown_source = FOLDER_DATASET
            self.known, self.unknown = self.folder.known, self.folder.unknown
            self.cfg["num_known_classes"] = len(self.known)  # the split file decides the network's size
            num_classes = len(self.folder.classes)
        else:
            self.known_source, self.unknown_source = SOURCES[dataset]
            separate = self.unknown_source != self.known_source
            self.known, self.unknown = load_class_split(
                dataset, trial, self.cfg["num_known_classes"], NUM_CLASSES[self.known_source],
                NUM_CLASSES[self.unknown_source] if separate else None, path=split_file)
            num_classes = NUM_CLASSES[self.known_source]
        self.num_known = len(self.known)
        # lookup table: original class id -> 0..N-1 for known (ascending id), N for the rest
        self.label_map = torch.full((num_classes,), self.num_known, dtype=torch.int64)
        self.label_map[sorted(self.known)] = torch.arange(self.num_known)

        self.train_set = self._open(self.known_source, train=True)
        self.train_labels = labels = source_labels(self.train_set)  # read once, reused by every subset
        absent = [c for c in self.known if not (labels == c).any()]
        if absent:
            raise UserError(f"known classes {absent} of {dataset} trial {trial} have no training "
                            f"image under {data_root}; check the data or the split file")
        split = trainval_split(dataset, labels, self.cfg["val_fraction"], num_classes,
                               os.path.join(splits.DATASETS_DIR, dataset))
        self.train_idx = np.sort(np.concatenate([split["Train"][str(c)] for c in self.known])).astype(np.int64)
        self.val_idx = np.sort(np.concatenate([split["Val"][str(c)] for c in self.known])).astype(np.int64)
        # image folders: a digest of the training images' bytes, part of every cache's key (None:
        # built-in data sets, whose files are fixed)
        self.source_fingerprint = self.folder.fingerprint(self.train_set) if self.folder else None
        self.mean, self.std = self._normalization()
        names = self.folder.classes if self.folder else getattr(self.train_set, "classes", None)
        # name of each known label 0..N-1 (data sets without names: the class id)
        self.class_names = [str(names[c]) if names else str(c) for c in sorted(self.known)]

    @classmethod
    def from_args(cls, args, trial):
        """The trial as the command line asks: --data_root, --split_file, --im_size, --im_channels."""
        cfg = apply_overrides(load_config(args.dataset), args.dataset, getattr(args, "im_size", None),
                              getattr(args, "im_channels", None))
        return cls(args.dataset, trial, args.data_root, download=not args.no_download, config=cfg,
                   split_file=getattr(args, "split_file", None))

    def _open(self, source, train):
        if self.folder is not None:
            return self.folder.open(train)
        return open_source(source, self.root, train=train, download=self.download)

    # transforms (SPEC section 4)
    def _normalize(self):
        return [T.ToTensor(), T.Normalize(self.mean, self.std)]

    def train_transform(self):
        size, aug = self.cfg["im_size"], self.cfg["data_transforms"]
        return T.Compose([T.Resize(size), T.RandomResizedCrop(size, scale=(aug["scale_min"], 1.0)),
                          T.RandomHorizontalFlip(aug["flip"]), T.RandomRotation(aug["rotate"]),
                          *self._normalize()])

    def eval_transform(self):
        return T.Compose([T.Resize(self.cfg["im_size"]), *self._normalize()])

    def anchor_transform(self):
        size = self.cfg["im_size"]
        return T.Compose([T.Resize(size), T.CenterCrop(size), *self._normalize()])

    def _normalization(self):
        listed = listed_normalization(self.cfg, self.trial)
        if listed is not None:
            return listed

        def compute():
            known_idx = np.flatnonzero(np.isin(self.train_labels, self.known))
            return raw_pixel_stats(self._raw_images(known_idx), self.cfg["im_channels"])

        source = RAW_PIXELS
        if self.folder:
            source += f":{self.source_fingerprint}:{self.cfg['im_channels']}ch"
        return cached_normalization(self.name, self.trial, self.known, self.train_labels, self.cfg["im_size"],
                                    compute, source=source, channels=self.cfg["im_channels"])

    def _raw_images(self, indices, chunk=1024):
        """uint8 arrays (n, H, W) or (n, H, W, C) of training images `indices`, a chunk at a time:
        the files' own pixels (an in-memory data set's `data`), or each image as read (folders)."""
        data = getattr(self.train_set, "data", None)
        if data is not None:
            data = np.asarray(data)
            if self.known_source in CHANNELS_FIRST:
                data = data.transpose(0, 2, 3, 1)
            for start in range(0, len(indices), chunk):
                yield data[indices[start:start + chunk]]
            return
        images = RemappedSubset(self.train_set, indices, np.zeros(len(indices), dtype=np.int64), np.asarray)
        for i in range(len(images)):
            yield images[i][0][None]

    def _train_subset(self, indices, transform):
        labels = self.label_map[torch.from_numpy(self.train_labels[indices])]
        return RemappedSubset(self.train_set, indices, labels, transform)

    # data sets of the trial
    def train_dataset(self):
        return self._train_subset(self.train_idx, self.train_transform())

    def val_dataset(self):
        return self._train_subset(self.val_idx, self.eval_transform())

    def anchor_dataset(self):
        return self._train_subset(self.train_idx, self.anchor_transform())

    def _test_set(self, source):
        """The test split of `source`, opened (read and parsed) once per trial: known and
        unknown test images of a single-source data set come from the same files."""
        if source not in self._test_sets:
            self._test_sets[source] = self._open(source, train=False)
        return self._test_sets[source]

    def known_test_dataset(self):
        test = self._test_set(self.known_source)
        labels = source_labels(test)
        idx = np.flatnonzero(np.isin(labels, self.known))
        if len(idx) == 0:
            raise UserError(f"the {self.known_source} test set under {self.root} has no image of "
                            f"the known classes {self.class_names}")
        return RemappedSubset(test, idx, self.label_map[torch.from_numpy(labels[idx])], self.eval_transform())

    def unknown_test_dataset(self):
        test = self._test_set(self.unknown_source)
        idx = np.flatnonzero(np.isin(source_labels(test), self.unknown))
        if len(idx) == 0:
            raise UserError(f"the {self.unknown_source} test set under {self.root} has no image of "
                            f"the unknown classes {self.unknown}")
        return RemappedSubset(test, idx, torch.full((len(idx),), self.num_known, dtype=torch.int64),
                              self.eval_transform())


def make_loader(dataset, batch_size, shuffle, workers, seed=0, pin_memory=False):
    """A DataLoader whose shuffling and worker augmentation are fixed by `seed`."""
    # workers are started afresh each epoch, seeded from `generator`: an epoch's augmentation then
    # depends only on the generator's state at its start, which --continue restores
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed))
