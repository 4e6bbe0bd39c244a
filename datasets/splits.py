"""Class splits (which classes are known) and per-trial normalization (the train/val
partition is in datasets/partition.py).

Everything here is a pure function of the labels, the split file and a fixed seed, so
two machines with the same data get the same split; caches carry a fingerprint of the
labels they were made from and are rebuilt when the data changes.
"""
import hashlib
import json
import os
import sys

import numpy as np

from core.errors import UserError
from core.files import atomic_write, read_json
from core.values import is_finite_number, is_number, is_whole_number

DATASETS_DIR = os.path.dirname(os.path.abspath(__file__))


def split_path(dataset, trial):
    return os.path.join(DATASETS_DIR, dataset, "class_splits", f"{trial}.json")


def brief(values, limit=120):
    """repr(values) for a message, cut short: a split file may list thousands of ids, or an id of
    thousands of digits, and the message must stay one readable line."""
    text = repr(values)
    return text if len(text) <= limit else text[:limit] + " ...]"


def read_split_json(path, label, fix, example=None):
    """The JSON object of a split file with 'Known' and 'Unknown' keys, or a one-line UserError
    naming the file as `label`; `fix` ends the invalid-JSON message, `example` the shape one."""
    split = read_json(path, label, fix)
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
    if path is not None and not os.path.exists(path):
        raise UserError(f"split file {path} not found; write {{\"Known\": [...], \"Unknown\": [...]}} there "
                        f"with class ids of {dataset}")
    path = path or split_path(dataset, trial)
    if not os.path.exists(path):  # a folder in its place is named by read_json
        have = sorted(int(f[:-5]) for f in os.listdir(os.path.dirname(path))
                      if f.endswith(".json") and f[:-5].isdigit()) if os.path.isdir(os.path.dirname(path)) else []
        raise UserError(f"no class split file for {dataset} trial {trial} ({path}); trials with "
                        f"a file: {have}; write {{\"Known\": [...], \"Unknown\": [...]}} there to add one")
    split = read_split_json(path, "class split file", "fix or delete it")
    known, unknown = split["Known"], split["Unknown"]
    unknown_range = num_unknown_source_classes or num_classes
    for key, ids, limit in (("Known", known, num_classes), ("Unknown", unknown, unknown_range)):
        if not isinstance(ids, list) or not all(is_whole_number(i) for i in ids):
            raise UserError(f"{key} in {path} must be a list of integer class ids")
        if len(set(ids)) != len(ids):
            raise UserError(f"{key} in {path} repeats a class id: {brief(ids)}; list each class once")
        bad = [i for i in ids if not 0 <= i < limit]
        if bad:
            raise UserError(f"{key} in {path} has class ids {brief(bad)} outside 0..{limit - 1}; use ids of "
                            f"that range")
    if len(known) != num_known:
        raise UserError(f"{path} lists {len(known)} known classes but the config of {dataset} "
                        f"expects num_known_classes = {num_known}")
    if not unknown:
        raise UserError(f"{path} lists no unknown class: open-set evaluation needs at least one")
    if num_unknown_source_classes is None and set(known) & set(unknown):
        raise UserError(f"{path} lists classes {brief(sorted(set(known) & set(unknown)))} as both Known and Unknown; "
                        f"keep each in one list")
    return known, unknown


def labels_fingerprint(labels):
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return {"num_samples": int(len(labels)), "labels_sha1": hashlib.sha1(labels.tobytes()).hexdigest()}


def _write_json_atomic(obj, path):
    with atomic_write(path, "w") as f:
        json.dump(obj, f)


def normalization_problem(mean, std, channels):
    """Why a mean/std pair cannot normalize `channels`-channel images (None when it can):
    each a list of one finite number per channel, every std above 0 (it divides). Without
    `channels`, mean and std need only be of one length."""
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or not all(is_number(v) for v in values):
            return f"{name} is not a list of numbers"
        if len(values) != (len(mean) if channels is None else channels):
            return f"{name} has {len(values)} value(s) for {channels or len(mean)}-channel images"
        if not all(is_finite_number(v) for v in values):
            return f"{name} is not finite"
    if not all(v > 0 for v in std):
        return "a std is not above 0"
    return None


def _read_normalization_cache(path, key, channels):
    """(mean, std) of the cache at `path` when it was made from `key` and is valid, else None.
    A cache of other data is simply replaced; an invalid one gets one warning line."""
    if not os.path.exists(path):
        return None
    try:
        cached = read_json(path, "normalization cache", "recomputing it")
    except UserError as e:
        print(f"warning: {e}", file=sys.stderr)
        return None
    if not isinstance(cached, dict):
        problem = f"holds {type(cached).__name__}, not an object"
    elif not {*key, "mean", "std"} <= set(cached):
        problem = f"lacks {sorted({*key, 'mean', 'std'} - set(cached))}"
    elif any(cached[k] != v for k, v in key.items()):
        return None  # made from other data: recomputed without a word, as any stale cache
    else:
        problem = normalization_problem(cached["mean"], cached["std"], channels)
    if problem:
        print(f"warning: normalization cache {path} is invalid ({problem}); recomputing it", file=sys.stderr)
        return None
    return cached["mean"], cached["std"]


def cached_normalization(dataset, trial, known, labels, im_size, compute, source=None, channels=None):
    """Mean/std computed by `compute()` for a trial without listed values, cached in
    datasets/<dataset>/normalization/<trial>.json and reused while the known classes, the
    data and the image size (image folders are read at that size) all match; `source`
    (users' image folders: a fingerprint of the files' contents) must match too. The cache is
    checked when read: one finite mean and one std above 0 per channel (`channels`)."""
    path = os.path.join(DATASETS_DIR, dataset, "normalization", f"{trial}.json")
    key = {"Known": list(known), "im_size": im_size, "Fingerprint": labels_fingerprint(labels)}
    if source is not None:
        key["Source"] = source
    cached = _read_normalization_cache(path, key, channels)
    if cached is not None:
        return cached
    mean, std = compute()
    problem = normalization_problem(list(mean), list(std), channels)
    if problem:  # e.g. training images that are all one colour: dividing by a std of 0 gives NaN
        raise UserError(f"cannot normalize the training images of {dataset} trial {trial}: {problem} "
                        f"(mean {brief(list(mean))}, std {brief(list(std))}); check the images")
    try:
        _write_json_atomic({**key, "mean": mean, "std": std}, path)
    except OSError:
        pass
    return mean, std
