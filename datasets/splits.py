"""Class splits (which classes are known) and per-trial normalization (the train/val
partition is in datasets/partition.py).

Everything here is a pure function of the labels, the split file and a fixed seed, so
two machines with the same data get the same split; caches carry a fingerprint of the
labels they were made from and are rebuilt when the data changes.
"""
import hashlib
import json
import os

import numpy as np

from engine.errors import UserError
from engine.files import atomic_write

DATASETS_DIR = os.path.dirname(os.path.abspath(__file__))


def split_path(dataset, trial):
    return os.path.join(DATASETS_DIR, dataset, "class_splits", f"{trial}.json")


def read_split_json(path, label, fix, example=None):
    """The JSON object of a split file with 'Known' and 'Unknown' keys, or a one-line UserError
    naming the file as `label`; `fix` ends the invalid-JSON message, `example` the shape one."""
    try:
        with open(path) as f:
            split = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{label} {path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(split, dict) or not {"Known", "Unknown"} <= set(split):
        raise UserError(f"{label} {path} must hold an object with 'Known' and 'Unknown' lists"
                        + (f", e.g. {example}" if example else ""))
    return split


def load_class_split(dataset, trial, num_known, num_classes, num_unknown_source_classes=None, path=None):
    """Read and check datasets/<dataset>/class_splits/<trial>.json (or `path`, a --split_file)
    -> (known, unknown) lists.

    `num_unknown_source_classes` is set when unknowns come from another data set (CIFAR+N:
    CIFAR-100), whose class ids may coincide with known CIFAR-10 ids.
    """
    if path is not None and not os.path.isfile(path):
        raise UserError(f"split file {path} not found; write {{\"Known\": [...], \"Unknown\": [...]}} there "
                        f"with class ids of {dataset}")
    path = path or split_path(dataset, trial)
    if not os.path.isfile(path):
        have = sorted(int(f[:-5]) for f in os.listdir(os.path.dirname(path))
                      if f.endswith(".json") and f[:-5].isdigit()) if os.path.isdir(os.path.dirname(path)) else []
        raise UserError(f"no class split file for {dataset} trial {trial} ({path}); trials with "
                        f"a file: {have}; write {{\"Known\": [...], \"Unknown\": [...]}} there to add one")
    split = read_split_json(path, "class split file", "fix or delete it")
    known, unknown = split["Known"], split["Unknown"]
    unknown_range = num_unknown_source_classes or num_classes
    for key, ids, limit in (("Known", known, num_classes), ("Unknown", unknown, unknown_range)):
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise UserError(f"{key} in {path} must be a list of integer class ids")
        if len(set(ids)) != len(ids):
            raise UserError(f"{key} in {path} repeats a class id: {ids}; list each class once")
        bad = [i for i in ids if not 0 <= i < limit]
        if bad:
            raise UserError(f"{key} in {path} has class ids {bad} outside 0..{limit - 1}; use ids of that range")
    if len(known) != num_known:
        raise UserError(f"{path} lists {len(known)} known classes but the config of {dataset} "
                        f"expects num_known_classes = {num_known}")
    if not unknown:
        raise UserError(f"{path} lists no unknown class: open-set evaluation needs at least one")
    if num_unknown_source_classes is None and set(known) & set(unknown):
        raise UserError(f"{path} lists classes {sorted(set(known) & set(unknown))} as both Known and Unknown; "
                        f"keep each in one list")
    return known, unknown


def labels_fingerprint(labels):
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return {"num_samples": int(len(labels)), "labels_sha1": hashlib.sha1(labels.tobytes()).hexdigest()}


def _write_json_atomic(obj, path):
    with atomic_write(path, "w") as f:
        json.dump(obj, f)


def cached_normalization(dataset, trial, known, labels, im_size, compute, source=None):
    """Mean/std computed by `compute()` for a trial without listed values, cached in
    datasets/<dataset>/normalization/<trial>.json and reused while the known classes, the
    data and the image size (the statistics are taken after resizing) all match; `source`
    (users' image folders: a fingerprint of the files) must match too."""
    path = os.path.join(DATASETS_DIR, dataset, "normalization", f"{trial}.json")
    key = {"Known": list(known), "im_size": im_size, "Fingerprint": labels_fingerprint(labels)}
    if source is not None:
        key["Source"] = source
    if os.path.isfile(path):
        try:
            with open(path) as f:
                cached = json.load(f)
            if {k: cached.get(k) for k in key} == key:
                return cached["mean"], cached["std"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError):
            pass
    mean, std = compute()
    try:
        _write_json_atomic({**key, "mean": mean, "std": std}, path)
    except OSError:
        pass
    return mean, std
