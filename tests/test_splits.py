"""The committed class split files: the protocol's facts, the Digits procedure, validity."""
import json
import os

import numpy as np
import pytest

from conftest import PROTOCOL, REPO, require_shared
from datasets import load_config
from datasets.partition import split_per_class
from datasets.sources import NUM_CLASSES, SOURCES
from datasets.splits import load_class_split

PAPER_DATASETS = ["MNIST", "SVHN", "CIFAR10", "CIFAR+10", "CIFAR+50", "TinyImageNet"]


def _read(dataset, trial):
    with open(os.path.join(REPO, "datasets", dataset, "class_splits", f"{trial}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_trials_0_to_4_are_standard_and_5_to_9_are_paper(dataset):
    with open(require_shared(PROTOCOL)) as f:
        facts = json.load(f)
    for offset, key in ((0, "standard"), (5, "paper")):
        for i, split in enumerate(facts[key][dataset]):
            assert _read(dataset, i + offset) == {"Known": split["Known"], "Unknown": split["Unknown"]}


def test_seed_readme_example_is_trial_5():
    assert _read("CIFAR10", 5)["Known"] == [6, 8, 2, 4, 9, 3]


@pytest.mark.parametrize("dataset", ["Digits", "FashionMNIST"])
def test_generated_trials_follow_the_documented_procedure(dataset):
    for trial in range(5):
        perm = np.random.default_rng(trial).permutation(10).tolist()
        assert _read(dataset, trial) == {"Known": perm[:6], "Unknown": perm[6:]}


@pytest.mark.parametrize("dataset", PAPER_DATASETS + ["Digits", "FashionMNIST"])
def test_every_committed_split_is_valid(dataset):
    cfg = load_config(dataset)
    known_src, unknown_src = SOURCES[dataset]
    folder = os.path.join(REPO, "datasets", dataset, "class_splits")
    trials = sorted(int(f[:-5]) for f in os.listdir(folder))
    assert trials == (list(range(10)) if dataset in PAPER_DATASETS else list(range(5)))
    for trial in trials:
        known, unknown = load_class_split(dataset, trial, cfg["num_known_classes"], NUM_CLASSES[known_src],
                                          NUM_CLASSES[unknown_src] if known_src != unknown_src else None)
        assert len(known) == cfg["num_known_classes"]


def test_split_per_class_is_seeded_disjoint_and_proportional():
    labels = np.repeat(np.arange(5), [100, 50, 10, 2, 1])
    first, second = split_per_class(labels, 0.2, seed=0)
    again = split_per_class(labels, 0.2, seed=0)
    assert (first, second) == again
    assert split_per_class(labels, 0.2, seed=1) != (first, second)
    for c, n in zip(range(5), [100, 50, 10, 2, 1]):
        assert sorted(first[c] + second[c]) == np.flatnonzero(labels == c).tolist()
        assert len(second[c]) == {100: 20, 50: 10, 10: 2, 2: 1, 1: 0}[n]
