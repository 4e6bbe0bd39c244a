"""The hyperparameters of each data set (datasets/config.json): read, checked key by key
(CONFIG_RULES), and the command line's overrides applied (what --dataset accepts: datasets/names.py)."""
import json
import os

from core.errors import UserError
from core.files import read_json
from core.values import is_finite_number, is_whole_number
from datasets.names import FOLDER_DATASET
from datasets.normalization import normalization_problem
from datasets.splits import DATASETS_DIR
from networks.config import im_size_problem

RESTORE = "restore it from the repository (git checkout datasets/config.json)"


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
                          "a list of 2 positive numbers [first run, second phase (-r)]"),
        "max_epoch": (_pair(lambda v: is_whole_number(v) and v >= 1),
                      "a list of 2 whole numbers >= 1 [first run, second phase (-r)]"),
        "weight_decay": (lambda x: is_finite_number(x) and x >= 0, "a number, 0 or more"),
        "momentum": (lambda x: is_finite_number(x) and 0 <= x < 1, "a number from 0 up to 1"),
    }.items()},
}
OPTIONAL = {"openset_training.momentum", "closedset_training.momentum"}  # keys the code has a default for


def load_config(dataset):
    """The hyperparameters of `dataset` from datasets/config.json, checked."""
    path = os.path.join(DATASETS_DIR, "config.json")
    config = read_json(path, "data set configuration", f"{RESTORE} or fix the edit")
    if not isinstance(config, dict):
        raise UserError(f"{path} holds a {type(config).__name__}, not an object of data sets; {RESTORE}")
    if dataset not in config or dataset.startswith("_"):
        names = ", ".join(k for k in config if not k.startswith("_"))
        raise UserError(f"unknown dataset {dataset!r}: choose one of {names}")
    check_config(dataset, config[dataset], path)
    return config[dataset]


def check_config(dataset, entry, path):
    """One UserError line naming the data set, the key and the file for a wrong or missing entry."""
    def refuse(key, problem):
        raise UserError(f"{key} of {dataset} in {path} {problem}; fix it, or {RESTORE}")

    if not isinstance(entry, dict):
        refuse("the entry", f"is a {type(entry).__name__}, not an object")
    size = entry.get("im_size")
    if im_size_problem(size):
        raise UserError(f"im_size {size!r} of {dataset} in {path} {im_size_problem(size)}: use e.g. 32 or 64")
    for key, (test, want) in CONFIG_RULES.items():
        section, _, name = key.rpartition(".")
        holder = entry.get(section) if section else entry
        if not isinstance(holder, dict) or name not in holder:
            if key not in OPTIONAL:
                refuse(key, "is missing")
        elif not test(holder[name]) and not (key == "num_known_classes" and holder[name] is None
                                             and dataset == FOLDER_DATASET):  # own folders: the split file decides
            refuse(key, f"is {json.dumps(holder[name])[:60]}, not {want}")
    listed = entry.get("normalization")
    if listed is None:
        return
    if not (isinstance(listed, dict) and all(isinstance(listed.get(k), list) for k in ("mean", "std"))
            and len(listed["mean"]) == len(listed["std"])):
        refuse("normalization", 'is not {"mean": [[...], ...], "std": [[...], ...]} with as many rows in each')
    for i, (mean, std) in enumerate(zip(listed["mean"], listed["std"])):
        problem = normalization_problem(mean, std, entry["im_channels"])
        if problem:  # the problems name mean first
            refuse(f"normalization.{'mean' if problem.startswith('mean') else 'std'}[{i}]",
                   f"is wrong: {problem} (im_channels {entry['im_channels']})")


# command-line flag -> (section of the config entry or None, key there, checked by that key's rule)
OVERRIDE_FLAGS = {"hflip": ("data_transforms", "flip"), "rotation": ("data_transforms", "rotate"),
                  "crop_scale": ("data_transforms", "scale_min"), "batch_size": (None, "batch_size")}


def apply_overrides(cfg, dataset, im_size=None, im_channels=None, **flags):
    """A copy of `cfg` with --im_size, --im_channels (image folders only) and the OVERRIDE_FLAGS given
    (not None) applied, each checked by the rule of the key it replaces."""
    cfg = {**cfg, "data_transforms": dict(cfg["data_transforms"])}
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
    for flag, value in flags.items():
        if value is not None:
            section, key = OVERRIDE_FLAGS[flag]
            test, want = CONFIG_RULES[f"{section}.{key}" if section else key]
            if not test(value):
                raise UserError(f"--{flag} {value}: give {want}")
            (cfg[section] if section else cfg)[key] = value
    return cfg
