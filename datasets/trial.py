"""One trial of one data set (OpenSetData): its class split, the train/validation partition of the
official training set, the test sets, each subset with its augmentation spec. Known labels are
remapped to 0..N-1 in ascending order of the original class id through one lookup tensor; every
unknown image gets the label N."""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from core.errors import UserError
from datasets.augment import AugmentSpec
from datasets.cache import resolve_cache_dir
from datasets.classnames import TrialClasses, class_names, image_origins
from datasets.config import OVERRIDE_FLAGS, apply_overrides, load_config
from datasets.folder import FolderData
from datasets.names import FOLDER_DATASET, SOURCES
from datasets.normalization import RAW_PIXELS, cached_normalization, listed_normalization, raw_pixel_stats
from datasets.partition import trainval_partition
from datasets.sources import CHANNELS_FIRST, NUM_CLASSES, one_line, open_source, source_labels
from datasets.splits import load_class_split


def read_item(base, index):
    """(image, label) `index` of a raw data set; a damaged image file is one UserError naming it."""
    try:
        return base[index]
    except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for a damaged image file
        where = base.samples[index][0] if hasattr(base, "samples") else f"image {index}"
        raise UserError(f"cannot read {where} ({one_line(e)}); replace or delete the file") from None


class RemappedSubset(Dataset):
    """Images `indices` of a raw data set with remapped labels, transformed as its AugmentSpec says."""

    def __init__(self, base, indices, labels, spec):
        self.base, self.indices, self.labels, self.spec = base, indices, labels, spec
        self.transform = spec.transform()

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.transform(read_item(self.base, int(self.indices[i]))[0]), self.labels[i]


class OpenSetData:
    """Everything one trial needs; test sets are opened only when asked for. `split_file`: in place of the
    data set's class split file (ImageFolder: required); `cache_dir` None: made, nothing cached."""

    def __init__(self, dataset, trial, data_root="datasets/data", download=True, config=None, split_file=None,
                 cache_dir=None):
        self.root, self.download, self._test_sets = data_root, download, {}  # source -> its opened test set
        cfg = dict(config if config is not None else load_config(dataset))
        self.folder = None
        if dataset == FOLDER_DATASET:
            self.folder = FolderData(data_root, split_file, cfg["im_size"], cfg["im_channels"])
            self.known_source = self.unknown_source = FOLDER_DATASET
            known, unknown = self.folder.known, self.folder.unknown
            cfg["num_known_classes"] = len(known)  # the split file decides the network's size
            num_classes = len(self.folder.classes)
        else:
            self.known_source, self.unknown_source = SOURCES[dataset]
            num_classes = NUM_CLASSES[self.known_source]
            known, unknown = load_class_split(dataset, trial, cfg["num_known_classes"], num_classes, path=split_file,
                                              num_unknown_source_classes=NUM_CLASSES[self.unknown_source]
                                              if self.unknown_source != self.known_source else None)
        self._set_classes(dataset, trial, cfg, known, unknown, num_classes)
        self.train_set = self._open(self.known_source, train=True)
        self.train_labels = labels = source_labels(self.train_set)  # read once, reused by every subset
        self._set_class_names(self.folder.classes if self.folder else class_names(self.train_set, num_classes))
        absent = [c for c in self.known if not (labels == c).any()]
        if absent:
            raise UserError(f"known classes {self.describe(absent)} of {dataset} trial {trial} have no "
                            f"training image under {data_root}; check the data or the split file")
        if cache_dir is not None:  # this data set's own folder in it
            cache_dir = self.folder.cache_folder(cache_dir) if self.folder else os.path.join(cache_dir, dataset)
        self.cache_dir = cache_dir
        partition = trainval_partition(dataset, labels, self.cfg["val_fraction"], num_classes, self.cache_dir)
        self.train_idx, self.val_idx = (np.sort(np.concatenate([partition[part][str(c)] for c in self.known]))
                                        .astype(np.int64) for part in ("Train", "Val"))
        # image folders: a digest of the training images' bytes, in every cache's key (built-in: fixed files)
        self.source_fingerprint = self.folder.fingerprint(self.train_set) if self.folder else None
        source = RAW_PIXELS + (f":{self.source_fingerprint}:{cfg['im_channels']}ch" if self.folder else "")
        self.mean, self.std = listed_normalization(cfg, trial) or cached_normalization(
            dataset, trial, self.known, labels, cfg["im_size"], self._pixel_stats, source=source,
            channels=cfg["im_channels"], folder=self.cache_dir)

    @classmethod
    def from_args(cls, args, trial):
        """The trial as the command line asks (data and cache flags, the image size and channels, overrides)."""
        cfg = apply_overrides(load_config(args.dataset), args.dataset, getattr(args, "im_size", None),
                              getattr(args, "im_channels", None),
                              **{flag: getattr(args, flag, None) for flag in OVERRIDE_FLAGS})
        return cls(args.dataset, trial, args.data_root, download=not args.no_download, config=cfg,
                   split_file=getattr(args, "split_file", None),
                   cache_dir=resolve_cache_dir(getattr(args, "cache_dir", None)))

    def _set_classes(self, name, trial, cfg, known, unknown, num_classes):
        self.name, self.trial, self.cfg = name, trial, cfg
        self.known, self.unknown, self.num_known = known, unknown, len(known)
        # lookup table: original class id -> 0..N-1 for known (ascending id), N for the rest
        self.label_map = torch.full((num_classes,), self.num_known, dtype=torch.int64)
        self.label_map[sorted(self.known)] = torch.arange(self.num_known)

    def _set_class_names(self, names):
        """`names`: of each class id of the known source. class_names: of each known label 0..N-1 (every list of
        known classes names them in this order); unknown_names: in the split file's order (CIFAR+N's: their ids)."""
        self.source_names = names
        self.class_names = [names[c] for c in sorted(self.known)]
        same = self.unknown_source == self.known_source
        self.unknown_names = [names[c] if same else str(c) for c in self.unknown]

    def describe(self, ids):
        """Class ids (as the split file has them) named for a message: "'cat' (id 3), 2" (a class
        named by its id: the id alone); image folders, whose split files list names: "'cat'"."""
        names = self.source_names
        if self.folder is not None:
            return ", ".join(repr(names[c]) for c in ids)
        return ", ".join(str(c) if names[c] == str(c) else f"{names[c]!r} (id {c})" for c in ids)

    def describe_labels(self, labels):
        """Known labels 0..N-1 (remapped) named for a message, by their class and split-file id."""
        return self.describe([sorted(self.known)[int(label)] for label in labels])

    def trial_classes(self, known_test, unknown_test):
        """The TrialClasses of this trial; `known_test`, `unknown_test`: its test subsets."""
        (known_ids, known_paths), (unknown_ids, unknown_paths) = map(image_origins, (known_test, unknown_test))
        unknown_names = (self.source_names if self.unknown_source == self.known_source else
                         class_names(self._test_set(self.unknown_source), NUM_CLASSES[self.unknown_source]))
        return TrialClasses(sorted(int(c) for c in self.known), list(self.class_names),
                            [int(c) for c in self.unknown], [unknown_names[c] for c in self.unknown],
                            known_ids, unknown_ids, known_paths, unknown_paths)

    def _open(self, source, train):
        return self.folder.open(train) if self.folder else open_source(source, self.root, train, self.download)

    def spec(self, kind):
        """The AugmentSpec of `kind` (train, eval, anchor) for this trial's config and normalization."""
        return AugmentSpec.from_config(kind, self.cfg, self.mean, self.std)

    def _pixel_stats(self, chunk=1024):
        """Mean and std of all the known classes' training pixels: the files' own (`data`), else as read."""
        indices = np.flatnonzero(np.isin(self.train_labels, self.known))
        data = getattr(self.train_set, "data", None)
        if data is not None:
            data = np.asarray(data).transpose(0, 2, 3, 1) if self.known_source in CHANNELS_FIRST else np.asarray(data)
            chunks = (data[indices[start:start + chunk]] for start in range(0, len(indices), chunk))
        else:
            chunks = (np.asarray(read_item(self.train_set, int(i))[0])[None] for i in indices)
        return raw_pixel_stats(chunks, self.cfg["im_channels"])

    def _train_subset(self, indices, kind):
        labels = self.label_map[torch.from_numpy(self.train_labels[indices])]
        return RemappedSubset(self.train_set, indices, labels, self.spec(kind))

    def train_dataset(self):
        return self._train_subset(self.train_idx, "train")

    def val_dataset(self):
        return self._train_subset(self.val_idx, "eval")

    def anchor_dataset(self):
        return self._train_subset(self.train_idx, "anchor")

    def _test_set(self, source):
        """The test set of `source`, opened once per trial (known and unknown test images may share it)."""
        if source not in self._test_sets:
            self._test_sets[source] = self._open(source, train=False)
        return self._test_sets[source]

    def _test_subset(self, part, source, classes):
        test = self._test_set(source)
        labels = source_labels(test)
        idx = np.flatnonzero(np.isin(labels, classes))
        if len(idx) == 0:
            named = self.describe(classes) if source == self.known_source else ", ".join(map(str, classes))
            raise UserError(f"the {source} test set under {self.root} has no image of the {part} classes {named}")
        remapped = (self.label_map[torch.from_numpy(labels[idx])] if part == "known"
                    else torch.full((len(idx),), self.num_known, dtype=torch.int64))
        return RemappedSubset(test, idx, remapped, self.spec("eval"))

    def known_test_dataset(self):
        return self._test_subset("known", self.known_source, self.known)

    def unknown_test_dataset(self):
        return self._test_subset("unknown", self.unknown_source, self.unknown)
