"""Class splits: which classes of a data set are known in a trial (its split file); the labels'
fingerprint that keys every cache made from the data; `brief`, a list cut short for a message."""
import hashlib
import os

import numpy as np

from core.errors import UserError
from core.files import read_json
from core.values import is_whole_number

DATASETS_DIR = os.path.dirname(os.path.abspath(__file__))


def brief(values, limit=120):
    """repr(values) cut short: a split file may list thousands of ids, and a message stays one line."""
    text = repr(values)
    return text if len(text) <= limit else text[:limit] + " ...]"


def read_split_json(path, label, fix, kind, valid, example=None):
    """(known, unknown) lists of a split file, or a one-line UserError naming it as `label`: not JSON, not
    {"Known": [...], "Unknown": [...]}, lists not of `kind` (`valid` items), a class repeated, no unknown."""
    split = read_json(path, label, fix)
    if not isinstance(split, dict) or not {"Known", "Unknown"} <= set(split):
        raise UserError(f"{label} {path} must hold an object with 'Known' and 'Unknown' lists"
                        + (f", e.g. {example}" if example else ""))
    for key in ("Known", "Unknown"):
        if not isinstance(split[key], list) or not all(valid(i) for i in split[key]):
            raise UserError(f"{key} in {path} must be a list of {kind}")
        if len(set(split[key])) != len(split[key]):
            raise UserError(f"{key} in {path} repeats a class: {brief(split[key])}; list each class once")
    if not split["Unknown"]:
        raise UserError(f"{path} lists no unknown class: open-set evaluation needs at least one")
    return split["Known"], split["Unknown"]


def load_class_split(dataset, trial, num_known, num_classes, num_unknown_source_classes=None, path=None):
    """(known, unknown) class ids of datasets/<dataset>/class_splits/<trial>.json (or a --split_file),
    checked. `num_unknown_source_classes`: unknowns come from another data set (CIFAR+N: CIFAR-100)."""
    if path is not None and not os.path.exists(path):
        raise UserError(f"split file {path} not found; write {{\"Known\": [...], \"Unknown\": [...]}} there "
                        f"with class ids of {dataset}")
    path = path or os.path.join(DATASETS_DIR, dataset, "class_splits", f"{trial}.json")
    if not os.path.exists(path):  # a folder in its place is named by read_json
        have = sorted(int(f[:-5]) for f in os.listdir(os.path.dirname(path))
                      if f.endswith(".json") and f[:-5].isdigit()) if os.path.isdir(os.path.dirname(path)) else []
        raise UserError(f"no class split file for {dataset} trial {trial} ({path}); trials with "
                        f"a file: {have}; write {{\"Known\": [...], \"Unknown\": [...]}} there to add one")
    known, unknown = read_split_json(path, "class split file", "fix or delete it", "integer class ids", is_whole_number)
    unknown_limit = num_unknown_source_classes or num_classes
    for key, ids, limit in (("Known", known, num_classes), ("Unknown", unknown, unknown_limit)):
        bad = [i for i in ids if not 0 <= i < limit]
        if bad:
            raise UserError(f"{key} in {path} has class ids {brief(bad)} outside 0..{limit - 1}; use ids of "
                            f"that range")
    if len(known) != num_known:
        raise UserError(f"{path} lists {len(known)} known classes but the config of {dataset} "
                        f"expects num_known_classes = {num_known}")
    if num_unknown_source_classes is None and set(known) & set(unknown):
        raise UserError(f"{path} lists classes {brief(sorted(set(known) & set(unknown)))} as both Known and Unknown; "
                        f"keep each in one list")
    return known, unknown


def labels_fingerprint(labels):
    """Count and SHA-1 of the labels: a cache made from other labels is not used."""
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return {"num_samples": int(len(labels)), "labels_sha1": hashlib.sha1(labels.tobytes()).hexdigest()}
