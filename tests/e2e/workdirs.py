"""What the end-to-end safety tests (test_bad_input.py, test_train_safety.py) set up in a
working folder: a checkpoint where Digits trial 0 looks for it, and a private copy of the data
sets' folder (split files, config.json, bad split files) that the scripts then use."""
import contextlib
import json
import os
import shutil

import pytest
import torch

from conftest import REPO

SPLIT_TRIALS = {"not_json": 101, "no_known": 102, "repeat": 103, "out_of_range": 104, "overlap": 105}


def checkpoint(cwd, name, suffix, **network):
    """Write a checkpoint of a network built with `network` (class count, channels, size, ...)
    where Digits trial 0 looks for `<name><suffix>`."""
    from networks.closedSetClassifier import closedSetClassifier
    from networks.openSetClassifier import openSetClassifier

    kwargs = {"num_classes": 6, "num_channels": 1, "im_size": 16, **network}
    net = (openSetClassifier if suffix.startswith("CAC") else closedSetClassifier)(**kwargs)
    path = os.path.join(cwd, "networks", "weights", "Digits", f"Digits_0_{name}{suffix}.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"net": net.state_dict(), "acc": 0.0, "epoch": 0, "backbone": kwargs.get("backbone", "cnn")}, path)
    return path


def private_datasets_dir(folder, config_change=None):
    """The repo's split files and config.json copied to `folder`, plus bad split files."""
    source = os.path.join(REPO, "datasets")
    for name in os.listdir(source):
        if os.path.isdir(os.path.join(source, name, "class_splits")):
            shutil.copytree(os.path.join(source, name, "class_splits"), os.path.join(folder, name, "class_splits"))
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    if config_change:
        config_change(config)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    texts = {"not_json": '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [6, 7',
             "no_known": '{"Unknown": [6, 7, 8, 9]}',
             "repeat": '{"Known": [0, 1, 2, 3, 4, 4], "Unknown": [6, 7, 8, 9]}',
             "out_of_range": '{"Known": [0, 1, 2, 3, 4, 10], "Unknown": [6, 7, 8, 9]}',
             "overlap": '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [5, 7, 8, 9]}'}
    for key, text in texts.items():
        with open(os.path.join(folder, "Digits", "class_splits", f"{SPLIT_TRIALS[key]}.json"), "w") as f:
            f.write(text)
    return folder


@contextlib.contextmanager
def datasets_dir(folder):
    import datasets.config as config
    import datasets.splits as splits

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(splits, "DATASETS_DIR", folder)
        mp.setattr(config, "DATASETS_DIR", folder)
        yield
