"""The train/validation partition (datasets/partition.py): the original code's files, replayed.

The facts come from ../shared/protocol: each real training set's labels in file order
(trainval_labels.npz) and the SHA-256 of each of the original's trainval_idxs.json files
(trainval.md). Each test writes a training set in the real on-disk format with the real label
order, opens it through OpenSetData as a training run does, and hashes the partition it made. The
cache is rebuilt when the labels or the validation share change.
"""
import hashlib
import json
import os
import re

import numpy as np
import pytest

from conftest import REPO, require_shared
from fakedata import write_mnist, write_training_labels
from rawfiles import mnist_train_labels, read_split

from datasets.config import load_config
from datasets.partition import (ORIGINAL_CLASS_SIZES, canonical, hold_out_per_class, make_partition,
                                original_partition)
from datasets.trial import OpenSetData

PROTOCOL = os.path.join(os.path.dirname(REPO), "shared", "protocol")


@pytest.fixture(scope="module")
def protocol():
    """(labels per data set, SHA-256 digest per data set) as ../shared/protocol states them."""
    require_shared(PROTOCOL)
    labels = dict(np.load(os.path.join(PROTOCOL, "trainval_labels.npz")))
    with open(os.path.join(PROTOCOL, "trainval.md")) as f:
        text = f.read()
    digests = {name: digest for name, digest in re.findall(r"^- (\w+)[^:\n]*: ([0-9a-f]{64})$", text, re.M)}
    assert set(digests) == {"MNIST", "SVHN", "CIFAR10", "TinyImageNet"}, digests
    return labels, digests


def partition_digest(partition):
    """SHA-256 of the canonical JSON text, the form in which the original's files were checked."""
    return hashlib.sha256(json.dumps(canonical(partition), separators=(",", ":")).encode()).hexdigest()


def partition_through_open_set_data(dataset, root, private_cache):
    """What a training run of trial 0 reads: the cache OpenSetData wrote, and the data it built."""
    data = OpenSetData(dataset, 0, data_root=str(root), download=False, cache_dir=str(private_cache))
    with open(private_cache / dataset / "trainval_idxs.json") as f:
        return json.load(f), data


@pytest.mark.parametrize("dataset", ["MNIST", "SVHN", "CIFAR10"])  # TinyImageNet's 100,000 files: tests/e2e
def test_partition_is_the_original_files(dataset, protocol, tmp_path, private_cache):
    check_partition_is_the_original_files(dataset, protocol, tmp_path, private_cache)


def check_partition_is_the_original_files(dataset, protocol, tmp_path, private_cache):
    labels, digests = protocol
    write_training_labels(dataset, tmp_path, labels[dataset])
    partition, data = partition_through_open_set_data(dataset, tmp_path, private_cache)
    assert partition_digest(partition) == digests[dataset]
    # and the trial's subsets are exactly its known classes' lists of that partition
    known = data.known
    assert data.train_idx.tolist() == sorted(i for c in known for i in partition["Train"][str(c)])
    assert data.val_idx.tolist() == sorted(i for c in known for i in partition["Val"][str(c)])


@pytest.mark.parametrize("dataset", ["CIFAR+10", "CIFAR+50"])
def test_cifar_plus_uses_the_cifar10_partition(dataset, protocol, tmp_path, private_cache):
    labels, digests = protocol
    write_training_labels("CIFAR10", tmp_path, labels["CIFAR10"])
    partition, _ = partition_through_open_set_data(dataset, tmp_path, private_cache)
    assert partition_digest(partition) == digests["CIFAR10"]


def test_class_sizes_are_those_of_the_real_training_sets(protocol):
    """The replay of a data set starts from the class sizes of those before it (partition.py
    holds them as facts); they must be the real sets' sizes, or every later digest is off."""
    labels, _ = protocol
    for dataset, sizes in ORIGINAL_CLASS_SIZES.items():
        assert tuple(np.bincount(labels[dataset])) == sizes, dataset


def test_replay_equals_running_the_data_sets_in_order(protocol):
    """One generator carried over MNIST, SVHN, CIFAR10, TinyImageNet (the original script) gives
    what each replay gives: written out here with random.Random(1000) directly."""
    import random

    labels, _ = protocol
    rng = random.Random(1000)
    for dataset, share in (("MNIST", 0.8), ("SVHN", 0.8), ("CIFAR10", 0.8), ("TinyImageNet", 0.9)):
        expected_train = {}
        for c in range(int(labels[dataset].max()) + 1):
            idx = [int(i) for i in np.flatnonzero(labels[dataset] == c)]
            rng.shuffle(idx)
            expected_train[c] = idx[:int(share * len(idx))]
        train, _ = original_partition(dataset, labels[dataset], share, int(labels[dataset].max()) + 1)
        assert train == expected_train, dataset


def test_hold_out_per_class_is_seeded_disjoint_and_proportional():
    labels = np.repeat(np.arange(5), [100, 50, 10, 2, 1])
    first, second = hold_out_per_class(labels, 0.2, seed=0)
    again = hold_out_per_class(labels, 0.2, seed=0)
    assert (first, second) == again
    assert hold_out_per_class(labels, 0.2, seed=1) != (first, second)
    for c, n in zip(range(5), [100, 50, 10, 2, 1]):
        assert sorted(first[c] + second[c]) == np.flatnonzero(labels == c).tolist()
        assert len(second[c]) == {100: 20, 50: 10, 10: 2, 2: 1, 1: 0}[n]


# ------------------------------------------------------------------ the cache
@pytest.fixture
def mnist_dir(tmp_path):
    write_mnist(str(tmp_path / "m"), n_train=20, n_test=5, seed=0)
    return tmp_path / "m"


def mnist_labels(data):
    return np.asarray(data.train_labels)


def fresh(data, dataset="MNIST"):
    return make_partition(dataset, data.train_labels, data.cfg["val_fraction"], 10)


def test_fresh_cache_has_the_procedure_and_is_reused_silently(mnist_dir, private_cache, capsys):
    partition, data = partition_through_open_set_data("MNIST", mnist_dir, private_cache)
    assert partition["Fingerprint"]["procedure"] == "original-random1000"
    assert partition == fresh(data)
    capsys.readouterr()
    OpenSetData("MNIST", 0, data_root=str(mnist_dir), download=False, cache_dir=str(private_cache))
    assert "warning" not in capsys.readouterr().err


def test_cache_of_the_earlier_procedure_is_rebuilt_with_a_warning(mnist_dir, private_cache, capsys):
    """What this repository wrote before: its own seeded draw, a fingerprint without a procedure."""
    _, data = partition_through_open_set_data("MNIST", mnist_dir, private_cache)
    labels = mnist_labels(data)
    train, val = hold_out_per_class(labels, 0.2, 0)
    old = {"Train": {str(c): v for c, v in train.items()}, "Val": {str(c): v for c, v in val.items()},
           "Fingerprint": {"num_samples": len(labels), "labels_sha1": "x", "val_fraction": 0.2}}
    cache = private_cache / "MNIST" / "trainval_idxs.json"
    cache.write_text(json.dumps(old))
    capsys.readouterr()
    data = OpenSetData("MNIST", 0, data_root=str(mnist_dir), download=False, cache_dir=str(private_cache))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: rebuilding") and str(cache) in err[0]
    assert json.loads(cache.read_text()) == fresh(data)
    expected = fresh(data)
    assert data.val_idx.tolist() == sorted(i for c in data.known for i in expected["Val"][str(c)])


def test_the_original_codes_own_file_is_used_as_is(mnist_dir, private_cache, capsys):
    _, data = partition_through_open_set_data("MNIST", mnist_dir, private_cache)
    cache = private_cache / "MNIST" / "trainval_idxs.json"
    cache.write_text(json.dumps(canonical(fresh(data))))  # the original's format: no Fingerprint
    capsys.readouterr()
    again = OpenSetData("MNIST", 0, data_root=str(mnist_dir), download=False, cache_dir=str(private_cache))
    assert "warning" not in capsys.readouterr().err
    assert again.val_idx.tolist() == data.val_idx.tolist()


def _missing_class(p):
    del p["Train"]["3"]
    return p


def _index_out_of_range(p):
    p["Train"]["0"].append(10 ** 6)
    return p


def _index_of_another_class(p):
    p["Val"]["0"][0] = p["Val"]["1"][0]
    return p


def _repeated_index(p):
    p["Train"]["2"].append(p["Train"]["2"][0])
    return p


def _bool_index(p):
    p["Val"]["4"][0] = True
    return p


@pytest.mark.parametrize("damage", [
    lambda p: None, lambda p: 42, lambda p: [], lambda p: {"Train": None, "Val": {}},
    _missing_class, _index_out_of_range, _index_of_another_class, _repeated_index, _bool_index],
    ids=["null", "42", "list", "Train null", "class missing", "index out of range", "index of another class",
         "repeated index", "bool index"])
def test_damaged_cache_is_rebuilt_with_one_warning(damage, mnist_dir, private_cache, capsys):
    """Each damage returns what is written into the cache in place of the good partition."""
    partition, data = partition_through_open_set_data("MNIST", mnist_dir, private_cache)
    cache = private_cache / "MNIST" / "trainval_idxs.json"
    cache.write_text(json.dumps(damage(json.loads(json.dumps(partition)))))
    capsys.readouterr()
    again = OpenSetData("MNIST", 0, data_root=str(mnist_dir), download=False, cache_dir=str(private_cache))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: rebuilding"), err
    assert json.loads(cache.read_text()) == fresh(data)
    assert again.train_idx.tolist() == data.train_idx.tolist() and again.val_idx.tolist() == data.val_idx.tolist()


def test_truncated_cache_is_rebuilt_with_one_warning(mnist_dir, private_cache, capsys):
    _, data = partition_through_open_set_data("MNIST", mnist_dir, private_cache)
    cache = private_cache / "MNIST" / "trainval_idxs.json"
    cache.write_text(cache.read_text()[:100])
    capsys.readouterr()
    OpenSetData("MNIST", 0, data_root=str(mnist_dir), download=False, cache_dir=str(private_cache))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilding" in err[0] and "JSON" in err[0]
    assert json.loads(cache.read_text()) == fresh(data)


def test_other_data_sets_use_the_seeded_procedure(private_cache):
    """Digits (like FashionMNIST and image folders) has no original partition: per class a
    permutation from numpy.random.default_rng([0, class]); its last round(0.2 n) are Val."""
    data = OpenSetData("Digits", 0, data_root="/nonexistent", download=False, cache_dir=str(private_cache))
    partition = json.loads((private_cache / "Digits" / "trainval_idxs.json").read_text())
    assert partition["Fingerprint"]["procedure"] == "numpy-per-class-seed0"
    labels = np.asarray(data.train_labels)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        order = idx[np.random.default_rng([0, c]).permutation(len(idx))]
        n_val = int(round(0.2 * len(idx)))
        assert partition["Val"][str(c)] == sorted(order[:n_val].tolist())
        assert partition["Train"][str(c)] == sorted(order[n_val:].tolist())


# ------------------------------------------------------------------ the cache follows the labels
def assert_partition_fits(partition, labels, fraction=0.2):
    """The Train/Val lists cover each class's images once, with its class's label, ~fraction in Val."""
    for c in range(10):
        tr, va = partition["Train"][str(c)], partition["Val"][str(c)]
        assert sorted(tr + va) == np.flatnonzero(labels == c).tolist()
        n = len(tr) + len(va)
        assert abs(len(va) - fraction * n) <= 0.5 + 1e-9


def test_trainval_cache_is_rewritten_when_labels_change(private_cache, mnist_root, tmp_path):
    cache = private_cache / "MNIST" / "trainval_idxs.json"
    labels_a = mnist_train_labels(mnist_root)
    data_a = OpenSetData("MNIST", 0, data_root=mnist_root, download=False, cache_dir=str(private_cache))
    first = json.loads(cache.read_text())
    assert_partition_fits(first, labels_a)
    known = read_split("MNIST", 0)[0]
    assert data_a.val_idx.tolist() == sorted(i for c in known for i in first["Val"][str(c)])

    root_b = str(tmp_path / "b")
    write_mnist(root_b, n_train=15, n_test=6, seed=7)  # other labels, other count
    labels_b = mnist_train_labels(root_b)
    assert len(labels_b) == 150
    data_b = OpenSetData("MNIST", 0, data_root=root_b, download=False, cache_dir=str(private_cache))
    second = json.loads(cache.read_text())
    assert second != first
    assert_partition_fits(second, labels_b)
    assert second["Fingerprint"]["num_samples"] == 150
    assert data_b.val_idx.tolist() == sorted(i for c in known for i in second["Val"][str(c)])
    assert data_b.train_idx.tolist() == sorted(i for c in known for i in second["Train"][str(c)])

    # a config with another validation share does not reuse the 80/20 partition
    OpenSetData("MNIST", 0, data_root=root_b, download=False, cache_dir=str(private_cache),
                config={**load_config("MNIST"), "val_fraction": 0.4})
    third = json.loads(cache.read_text())
    assert third["Fingerprint"]["train_share"] == 0.6
    assert_partition_fits(third, labels_b, fraction=0.4)


def test_tiny_classes_keep_one_validation_image(tmp_path):
    root = str(tmp_path / "two")
    write_mnist(root, n_train=2, n_test=2, seed=3)  # 0.2 * 2 rounds to 0: one goes to val anyway
    data = OpenSetData("MNIST", 0, data_root=root, download=False)
    labels = mnist_train_labels(root)
    for c in read_split("MNIST", 0)[0]:
        assert int((labels[data.val_idx] == c).sum()) == 1 and int((labels[data.train_idx] == c).sum()) == 1
