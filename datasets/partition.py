"""The train/validation partition of a data set's official training set (SPEC section 4). The paper's
six data sets replay the procedure that wrote the original's `trainval_idxs.json` files (the tests check
their SHA-256; ../shared/protocol/trainval.md): one `random.Random(1000)` carried across MNIST, SVHN,
CIFAR10, TinyImageNet; per class, its indices shuffled, the first `int(share * n)` Train, the rest Val.
`random.shuffle` draws a number of values that depends only on the list's length, so a data set replays
from the class sizes of those before it. The others hold out `round(val_fraction * n)` of each class.
Cached as <cache>/<dataset>/trainval_idxs.json with a `Fingerprint` of what made it."""
import os
import random
import sys

import numpy as np

from core.errors import UserError
from core.files import read_json
from core.values import is_whole_number
from datasets.cache import write_cache
from datasets.splits import labels_fingerprint

ORIGINAL_ORDER = ("MNIST", "SVHN", "CIFAR10", "TinyImageNet")
ORIGINAL_CLASS_SIZES = {  # images per class of each real training set, labels 0.. ascending
    "MNIST": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "SVHN": (4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659),
    "CIFAR10": (5000,) * 10,
    "TinyImageNet": (500,) * 200,
}
ORIGINAL_PARTITION_OF = {**{name: name for name in ORIGINAL_ORDER}, "CIFAR+10": "CIFAR10", "CIFAR+50": "CIFAR10"}


def original_partition(source, labels, train_share, num_classes):
    """({class: Train indices}, {class: Val indices}) of `source` (one of ORIGINAL_ORDER) as
    the original code made them from these labels; lists in the original's (shuffled) order."""
    rng = random.Random(1000)
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


def hold_out_per_class(labels, fraction, seed):
    """({class: kept indices}, {class: held-out indices}), each sorted: per class, the first round(fraction
    * n) of a permutation seeded with (seed, class) are held out. Also makes Digits' test set."""
    labels = np.asarray(labels)
    kept, held_out = {}, {}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c)]).permutation(len(idx))]
        n_out = int(round(fraction * len(idx)))
        if fraction > 0 and n_out == 0 and len(idx) >= 2:
            n_out = 1  # tiny data sets: keep one image per class on the other side
        kept[int(c)], held_out[int(c)] = np.sort(idx[n_out:]).tolist(), np.sort(idx[:n_out]).tolist()
    return kept, held_out


def canonical(partition):
    """The original's file content: {"Train": {class: [...]}, "Val": {...}}, classes ascending."""
    return {part: {str(c): list(partition[part][str(c)]) for c in sorted(map(int, partition[part]))}
            for part in ("Train", "Val")}


def make_partition(dataset, labels, val_fraction, num_classes):
    """The partition (dict: Train, Val, Fingerprint) of `dataset` for these labels."""
    source = ORIGINAL_PARTITION_OF.get(dataset)
    if source is not None:
        share = 1.0 - val_fraction  # 0.8 and 0.9 exactly in floating point, as the original's
        train, val = original_partition(source, labels, share, num_classes)
        fingerprint = {"procedure": "original-random1000", "source": source, "train_share": share}
    else:
        train, val = hold_out_per_class(labels, val_fraction, seed=0)
        fingerprint = {"procedure": "numpy-per-class-seed0", "val_fraction": val_fraction}
    return {"Train": {str(c): v for c, v in train.items()}, "Val": {str(c): v for c, v in val.items()},
            "Fingerprint": {**fingerprint, **labels_fingerprint(labels)}}


def _problem(cached, labels, classes):
    """Why `cached` is not a partition of these labels (None when it is one)."""
    if not (isinstance(cached, dict) and all(isinstance(cached.get(p), dict) for p in ("Train", "Val"))):
        return "it is not an object with 'Train' and 'Val' objects"
    if not set(cached["Train"]) == set(cached["Val"]) == {str(c) for c in classes}:
        return f"its classes are not those of the data ({len(classes)} classes)"
    for c in classes:
        both = [cached["Train"][str(c)], cached["Val"][str(c)]]
        if not (all(isinstance(v, list) and all(is_whole_number(i) and 0 <= i < len(labels) for i in v) for v in both)
                and np.array_equal(np.sort(both[0] + both[1]), np.flatnonzero(labels == c))):
            return f"class {c}'s lists are not exactly the indices of its images, each once"
    return None


def trainval_partition(dataset, labels, val_fraction, num_classes, folder):
    """{"Train": {class: [indices]}, "Val": {...}}: the cache in `folder` when made the same way from the
    same labels, else made and cached there (replacing a malformed or mismatched cache with one warning line)."""
    labels = np.asarray(labels, dtype=np.int64)
    made = make_partition(dataset, labels, val_fraction, num_classes)
    if folder is None:
        return made
    path, warning = os.path.join(folder, "trainval_idxs.json"), None
    if os.path.lexists(path):
        try:
            cached = read_json(path, "partition cache", "rebuilding it")
        except UserError as e:
            cached, warning = None, str(e)
        if warning is None:
            classes = range(num_classes) if dataset in ORIGINAL_PARTITION_OF else np.unique(labels).tolist()
            why = _problem(cached, labels, classes)
            if why is None and cached.get("Fingerprint") == made["Fingerprint"]:
                return cached
            if why is None and canonical(cached) != canonical(made):  # nor the original code's own file
                why = "it was made from other labels or by another procedure" + (
                    " (an earlier version of this code)" if "Fingerprint" in cached else "")
            warning = why and f"rebuilding {path}: {why}"
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    write_cache(made, path)
    return made
