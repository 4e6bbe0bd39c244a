"""The train/validation partition of a data set's official training set.

The paper's six data sets use the original code's partition, made by replaying the procedure
that wrote its `datasets/<dataset>/trainval_idxs.json` files (SPEC section 4; the tests check
the replay against the SHA-256 digests of those files):

1. one `random.Random(1000)` is carried across the data sets in the order MNIST, SVHN,
   CIFAR10, TinyImageNet;
2. per data set, for each class c ascending, the indices of its images (file order) are
   shuffled with it, and the first `int(share * n)` are Train, the rest Val (share 0.8,
   TinyImageNet 0.9; CIFAR+10 and CIFAR+50 use CIFAR10's partition).

How many numbers `random.shuffle` draws depends only on the list lengths, so a data set is
replayed from the class sizes of the real data sets before it, without their files.

The other data sets (Digits, FashionMNIST, users' image folders) have no original partition:
per class, a NumPy permutation seeded with (0, class id); the last `round(val_fraction * n)`
of it (at least one image when the class has two or more) are Val.

Either way the partition is cached as `<cache>/<dataset>/trainval_idxs.json` (datasets/cache.py)
with a `Fingerprint` of what made it (procedure, labels, share); a cache that is malformed, does
not fit the labels or was made otherwise is rebuilt with one warning line.
"""
import hashlib
import json
import os
import random
import sys

import numpy as np

from datasets.cache import write_cache
from datasets.splits import labels_fingerprint
from core.errors import UserError
from core.files import read_json
from core.values import is_whole_number

# The original's procedure, as facts (../shared/protocol/trainval.md)
ORIGINAL_SEED = 1000
ORIGINAL_ORDER = ("MNIST", "SVHN", "CIFAR10", "TinyImageNet")
ORIGINAL_CLASS_SIZES = {  # images per class of each real training set, labels 0.. ascending
    "MNIST": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "SVHN": (4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659),
    "CIFAR10": (5000,) * 10,
    "TinyImageNet": (500,) * 200,
}
ORIGINAL_PARTITION_OF = {"MNIST": "MNIST", "SVHN": "SVHN", "CIFAR10": "CIFAR10", "CIFAR+10": "CIFAR10",
                         "CIFAR+50": "CIFAR10", "TinyImageNet": "TinyImageNet"}
ORIGINAL_PROCEDURE = "original-random1000"
SEEDED_PROCEDURE = "numpy-per-class-seed0"
SEEDED_SEED = 0  # fixed: the same labels always give the same partition


def original_partition(source, labels, train_share, num_classes):
    """({class: Train indices}, {class: Val indices}) of `source` (one of ORIGINAL_ORDER) as
    the original code made them, from these labels; lists in the original's (shuffled) order."""
    rng = random.Random(ORIGINAL_SEED)
    for earlier in ORIGINAL_ORDER[:ORIGINAL_ORDER.index(source)]:
        for size in ORIGINAL_CLASS_SIZES[earlier]:
            rng.shuffle(list(range(size)))  # advances the generator exactly as that data set did
    labels = np.asarray(labels)
    train, val = {}, {}
    for c in range(num_classes):
        indices = np.flatnonzero(labels == c).tolist()
        rng.shuffle(indices)
        cut = int(train_share * len(indices))
        train[c], val[c] = indices[:cut], indices[cut:]
    return train, val


def split_per_class(labels, fraction, seed):
    """Per class, a seeded shuffle of its indices; the first round(fraction * n) (at least one
    when n >= 2) go to the second part. Returns ({class: first part}, {class: second part}), indices sorted."""
    labels = np.asarray(labels)
    first, second = {}, {}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c)]).permutation(len(idx))]
        n_second = int(round(fraction * len(idx)))
        if fraction > 0 and n_second == 0 and len(idx) >= 2:
            n_second = 1  # tiny data sets: keep one image per class on the other side
        first[int(c)] = np.sort(idx[n_second:]).tolist()
        second[int(c)] = np.sort(idx[:n_second]).tolist()
    return first, second


def canonical(partition):
    """The original's file content: {"Train": {class: [...]}, "Val": {...}}, classes ascending."""
    return {part: {str(c): list(partition[part][str(c)]) for c in sorted(map(int, partition[part]))}
            for part in ("Train", "Val")}


def partition_digest(partition):
    """SHA-256 of the canonical JSON text, the form in which the original's files were checked."""
    text = json.dumps(canonical(partition), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _problem(cached, labels, classes):
    """Why `cached` is not a partition of these labels (None when it is one)."""
    if not isinstance(cached, dict) or not isinstance(cached.get("Train"), dict) or \
            not isinstance(cached.get("Val"), dict):
        return "it is not an object with 'Train' and 'Val' objects"
    want = {str(c) for c in classes}
    for part in ("Train", "Val"):
        if set(cached[part]) != want:
            return f"its {part} classes are not those of the data ({len(want)} classes)"
    for c in classes:
        lists = [cached["Train"][str(c)], cached["Val"][str(c)]]
        if not all(isinstance(v, list) and all(is_whole_number(i) for i in v) for v in lists):
            return f"class {c} does not hold lists of integer indices"
        both = np.asarray(lists[0] + lists[1], dtype=np.int64)
        if len(both) and (both.min() < 0 or both.max() >= len(labels)):
            return f"class {c} has indices outside 0..{len(labels) - 1}"
        if not np.array_equal(np.sort(both), np.flatnonzero(labels == c)):
            return f"class {c}'s indices are not exactly its images, each once"
    return None


def make_partition(dataset, labels, val_fraction, num_classes):
    """The partition (dict: Train, Val, Fingerprint) of `dataset` for these labels."""
    source = ORIGINAL_PARTITION_OF.get(dataset)
    if source is not None:
        share = 1.0 - val_fraction  # 0.8 and 0.9 exactly in floating point, as the original's
        train, val = original_partition(source, labels, share, num_classes)
        fingerprint = {"procedure": ORIGINAL_PROCEDURE, "source": source, "train_share": share}
    else:
        train, val = split_per_class(labels, val_fraction, SEEDED_SEED)
        fingerprint = {"procedure": SEEDED_PROCEDURE, "val_fraction": val_fraction}
    fingerprint.update(labels_fingerprint(labels))
    return {"Train": {str(c): v for c, v in train.items()}, "Val": {str(c): v for c, v in val.items()},
            "Fingerprint": fingerprint}


def trainval_split(dataset, labels, val_fraction, num_classes, folder):
    """{"Train": {class: [indices]}, "Val": {...}} of the official training set: read from
    `folder`/trainval_idxs.json when that cache was made the same way from the same labels,
    else made (make_partition) and cached there; `folder` None: made, not cached."""
    labels = np.asarray(labels, dtype=np.int64)
    if folder is None:
        return make_partition(dataset, labels, val_fraction, num_classes)
    path = os.path.join(folder, "trainval_idxs.json")
    made = None
    present, cached, unreadable = _read_cache(path)
    why = unreadable
    if present and unreadable is None:
        classes = range(num_classes) if dataset in ORIGINAL_PARTITION_OF else np.unique(labels).tolist()
        why = _problem(cached, labels, classes)
        if why is None:
            made = make_partition(dataset, labels, val_fraction, num_classes)
            if cached.get("Fingerprint") == made["Fingerprint"]:
                return cached
            if canonical(cached) == canonical(made):  # e.g. the original code's own file: same lists
                why = None
            else:
                why = ("it was made from other labels or by another procedure"
                       + (" (an earlier version of this code)" if "Fingerprint" in cached else ""))
    made = made or make_partition(dataset, labels, val_fraction, num_classes)
    if why is not None:
        print(f"warning: {why}" if why is unreadable else f"warning: rebuilding {path}: {why}", file=sys.stderr)
    write_cache(made, path)
    return made


def _read_cache(path):
    """(whether the file exists, its JSON value, read_json's one-line message when it cannot be
    read, else None)."""
    if not os.path.lexists(path):
        return False, None, None
    try:
        return True, read_json(path, "partition cache", "rebuilding it"), None
    except UserError as e:
        return True, None, str(e)
