"""Per-trial normalization (datasets/normalization.py): the config's listed rows (SPEC section 4,
written out here), statistics computed from the raw training pixels otherwise, and their cache,
checked when read."""
import functools
import json
import os

import numpy as np
import pytest
from conftest import REPO, one_line, captured_stderr_lines
from rawfiles import read_split, SHAPES, truth_for

from core.errors import UserError
from datasets.normalization import cached_normalization
from datasets.trial import OpenSetData

DATASETS = os.path.join(REPO, "datasets")


# SPEC section 4: normalization of trials 0-4, written out (rounded to 4 places)
SPEC_NORMALIZATION = {
    "MNIST": ([[0.1321], [0.1343], [0.1382], [0.1248], [0.1421]],
              [[0.3101], [0.3110], [0.3154], [0.3023], [0.3193]]),
    "SVHN": ([[0.4479, 0.4485, 0.4492], [0.4491, 0.4498, 0.4509], [0.4499, 0.4506, 0.4513],
              [0.4495, 0.4500, 0.4507], [0.4503, 0.4503, 0.4508]],
             [[0.2008, 0.1997, 0.1998], [0.1992, 0.1981, 0.1984], [0.1986, 0.1975, 0.1977],
              [0.2014, 0.2001, 0.2002], [0.2000, 0.1989, 0.1994]]),
    "CIFAR10": ([[0.4858, 0.4771, 0.4326], [0.4850, 0.4598, 0.4032], [0.4882, 0.4847, 0.4552],
                 [0.4872, 0.4836, 0.4498], [0.4917, 0.4810, 0.4498]],
                [[0.2422, 0.2374, 0.2547], [0.2452, 0.2397, 0.2474], [0.2454, 0.2408, 0.2622],
                 [0.2465, 0.2432, 0.2595], [0.2512, 0.2487, 0.2685]]),
    "CIFAR+10": ([[0.4965, 0.5063, 0.5173]] * 5, [[0.2599, 0.2575, 0.2745]] * 5),
    "TinyImageNet": ([[0.4795, 0.4367, 0.3741], [0.4927, 0.4622, 0.4247], [0.4585, 0.4563, 0.4133],
                      [0.4664, 0.4517, 0.4131], [0.4766, 0.4387, 0.3951]],
                     [[0.2787, 0.2707, 0.2759], [0.2742, 0.2692, 0.2828], [0.2696, 0.2590, 0.2752],
                      [0.2779, 0.2712, 0.2865], [0.2822, 0.2678, 0.2841]]),
}


@pytest.mark.parametrize("trial", range(5))
def test_listed_normalization_mnist(mnist_root, trial):
    data = OpenSetData("MNIST", trial, data_root=mnist_root, download=False)
    mean, std = SPEC_NORMALIZATION["MNIST"]
    np.testing.assert_allclose(data.mean, mean[trial], atol=1e-9)
    np.testing.assert_allclose(data.std, std[trial], atol=1e-9)


@pytest.mark.parametrize("dataset,trial,root_fixture", [
    ("SVHN", 3, "svhn_root"), ("CIFAR10", 2, "cifar_root"), ("CIFAR+10", 4, "cifar_root"),
    ("TinyImageNet", 1, "tiny_root")])
def test_listed_normalization(request, dataset, trial, root_fixture):
    data = OpenSetData(dataset, trial, data_root=request.getfixturevalue(root_fixture), download=False)
    mean, std = SPEC_NORMALIZATION[dataset]
    np.testing.assert_allclose(data.mean, mean[trial], atol=1e-9)
    np.testing.assert_allclose(data.std, std[trial], atol=1e-9)
    with open(os.path.join(DATASETS, "config.json")) as f:
        listed = json.load(f)[dataset]["normalization"]
    assert listed["mean"][trial] == data.mean and listed["std"][trial] == data.std


@pytest.mark.parametrize("dataset,root_fixture", [
    ("MNIST", "mnist_root"), ("SVHN", "svhn_root"), ("CIFAR10", "cifar_root"), ("CIFAR+50", "cifar_root"),
    ("TinyImageNet", "tiny_root")])
@pytest.mark.parametrize("trial", range(5, 10))
def test_first_release_trials_use_the_listed_row_their_weights_were_trained_with(request, dataset, root_fixture,
                                                                                 trial):
    """SPEC 4 / protocol: the listed rows were computed on the first-release splits, trials 5-9
    here; trial 5 + t uses row t, whatever trials 0-4 use."""
    data = OpenSetData(dataset, trial, data_root=request.getfixturevalue(root_fixture), download=False)
    mean, std = SPEC_NORMALIZATION["CIFAR+10" if dataset == "CIFAR+50" else dataset]
    np.testing.assert_allclose(data.mean, mean[trial - 5], atol=1e-9)
    np.testing.assert_allclose(data.std, std[trial - 5], atol=1e-9)


def numpy_normalization(truth, indices):
    """Per-channel mean and (population) std on the 0-1 scale of the raw training pixels of
    `indices` (not resized), as the original's get_data_stats: numpy's own mean and std."""
    images = np.stack([truth.train_image(int(i)) for i in indices]).astype(np.float64) / 255.0
    pixels = images.reshape(-1, 1) if images.ndim == 3 else images.reshape(-1, images.shape[-1])
    return pixels.mean(0), pixels.std(0)


@pytest.mark.parametrize("dataset,trial,root_fixture", [
    ("MNIST", 10, "mnist_root"), ("SVHN", 10, "svhn_root"), ("CIFAR10", 10, "cifar_root"),
    ("TinyImageNet", 10, "tiny_root"), ("Digits", 0, None), ("FashionMNIST", 0, "fashion_root")])
def test_computed_normalization_for_trials_without_listed_values(request, private_cache, tmp_path, dataset,
                                                                 trial, root_fixture):
    root = request.getfixturevalue(root_fixture) if root_fixture else "/nonexistent"
    split_file = None
    if trial == 10:  # a user's own split: trial 5's classes under a number with no listed row
        split_file = str(tmp_path / "10.json")
        (tmp_path / "10.json").write_text(json.dumps(dict(zip(("Known", "Unknown"), read_split(dataset, 5)))))
    trial_data = functools.partial(OpenSetData, dataset, trial, data_root=root, download=False,
                                   split_file=split_file, cache_dir=str(private_cache))
    data = trial_data()
    truth = truth_for(dataset, root, data)
    known = read_split(dataset, 5 if trial == 10 else trial)[0]
    # the known classes' images of the whole official training set (train and validation parts),
    # as the original's mask over its training set's labels
    mean, std = numpy_normalization(truth, np.flatnonzero(np.isin(truth.train_labels, known)))
    assert len(data.mean) == len(data.std) == SHAPES[dataset][1]
    np.testing.assert_allclose(data.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(data.std, std, rtol=1e-9)
    # and they are not some listed trial's numbers (the fake images are brighter than MNIST's)
    if dataset == "MNIST":
        assert all(abs(data.mean[0] - m[0]) > 0.01 for m in SPEC_NORMALIZATION["MNIST"][0])
    # cached, and the cache is what the next run of the same trial uses
    cache = private_cache / dataset / "normalization" / f"{trial}.json"
    cached = json.loads(cache.read_text())
    assert cached["mean"] == data.mean and cached["std"] == data.std
    cached["mean"] = [0.5] * len(mean)
    cache.write_text(json.dumps(cached))
    assert trial_data().mean == [0.5] * len(mean)
    # ... but not once it was made from other data, for other known classes or another image size
    other_known = known[:-1] + read_split(dataset, 5 if trial == 10 else trial)[1][:1]
    for field, value in (("Fingerprint", {"num_samples": 1, "labels_sha1": "0" * 40}), ("Known", other_known),
                         ("im_size", 2 * SHAPES[dataset][0])):
        stale = {**cached, field: value}
        cache.write_text(json.dumps(stale))
        again = trial_data()
        np.testing.assert_allclose(again.mean, mean, rtol=1e-9)


BAD_CACHES = {
    "null": lambda good: None,
    "empty list": lambda good: [],
    "string": lambda good: "mean",
    "string mean": lambda good: {**good, "mean": "0.5"},
    "missing keys": lambda good: {"mean": good["mean"], "std": good["std"]},
    "std 0": lambda good: {**good, "std": [0.0]},
    "negative std": lambda good: {**good, "std": [-0.2]},
    "bool std": lambda good: {**good, "std": [True]},
    "3-channel mean for grey data": lambda good: {**good, "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.3, 0.3]},
    "huge integer mean": lambda good: {**good, "mean": [10 ** 400]},
    "NaN": "NaN",  # written as text: json.dumps would not write it
    "truncated": "{\"mean\": [0.",
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_invalid_normalization_cache_is_rebuilt_with_one_warning(case, private_cache, capsys):
    good_data = OpenSetData("Digits", 0, download=False, cache_dir=str(private_cache))
    cache = private_cache / "Digits" / "normalization" / "0.json"
    good = json.loads(cache.read_text())
    capsys.readouterr()
    bad = BAD_CACHES[case]
    if isinstance(bad, bytes):
        cache.write_bytes(bad)
    elif isinstance(bad, str):
        cache.write_text(json.dumps(good).replace(str(good["mean"][0]), bad))
    else:
        cache.write_text(json.dumps(bad(good)))
    data = OpenSetData("Digits", 0, download=False, cache_dir=str(private_cache))
    lines = captured_stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "normalization cache" in lines[0], lines
    assert data.mean == good_data.mean and data.std == good_data.std  # recomputed
    assert json.loads(cache.read_text()) == good  # and the cache rewritten whole


def test_stale_normalization_cache_is_rebuilt_quietly_and_a_valid_one_used(private_cache, capsys):
    digits = functools.partial(OpenSetData, "Digits", 0, download=False, cache_dir=str(private_cache))
    first = digits()
    cache = private_cache / "Digits" / "normalization" / "0.json"
    good = json.loads(cache.read_text())
    cache.write_text(json.dumps({**good, "mean": [0.25]}))  # valid: used as it is
    assert digits().mean == [0.25]
    cache.write_text(json.dumps({**good, "im_size": 64, "mean": [0.25]}))  # other data: recomputed
    capsys.readouterr()
    assert digits().mean == first.mean
    assert captured_stderr_lines(capsys) == []


def test_a_computed_std_of_zero_is_refused(private_cache):
    labels = np.zeros(10, dtype=np.int64)
    with pytest.raises(UserError, match="std is not above 0") as err:
        cached_normalization("Digits", 0, [0], labels, 8, lambda: ([0.5], [0.0]), channels=1,
                             folder=str(private_cache / "Digits"))
    one_line(err.value)
    assert not (private_cache / "Digits" / "normalization" / "0.json").exists()
