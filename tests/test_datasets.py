"""OpenSetData on tiny fake data sets in each real on-disk format, read by the real
torchvision classes (and scikit-learn's digits).

Every expectation is computed here from what the test itself knows: the raw files
(read with gzip / pickle / scipy / PIL directly), the class split files, and the
numbers of SPEC section 4, never from a second run of the code under test.
"""
import gzip
import json
import os
import pickle
import shutil
import struct
from collections import Counter

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from conftest import REPO
from datasets import OpenSetData
from core.errors import UserError
from fakedata import write_cifar10, write_cifar100, write_mnist, write_svhn, write_tinyimagenet

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
# (image size, channels, number of known classes, validation fraction) per data set (SPEC 4, Digits: config)
SHAPES = {"MNIST": (32, 1, 6, 0.2), "SVHN": (32, 3, 6, 0.2), "CIFAR10": (32, 3, 6, 0.2),
          "CIFAR+10": (32, 3, 4, 0.2), "TinyImageNet": (64, 3, 20, 0.1), "Digits": (16, 1, 6, 0.2),
          "FashionMNIST": (32, 1, 6, 0.2)}

MNIST_FAKE = dict(n_train=20, n_test=10, seed=0)  # per class: 200 training, 100 test images


# ------------------------------------------------------------------ raw readers (independent)
def read_idx_gz(path):
    """An IDX file: big-endian magic whose low byte is the number of dims, the dims, raw uint8."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    ndim = struct.unpack(">I", buf[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, buf[4:4 + 4 * ndim])
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_cifar(folder, names, label_key):
    images, labels = [], []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            d = pickle.load(f, encoding="latin1")
        images.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(d[label_key])
    return np.concatenate(images), np.asarray(labels, np.int64)


def read_svhn(path):
    mat = scipy.io.loadmat(path)
    y = mat["y"].astype(np.int64).ravel()
    return mat["X"].transpose(3, 0, 1, 2), y, np.where(y == 10, 0, y)


def read_split(dataset, trial):
    with open(os.path.join(DATASETS, dataset, "class_splits", f"{trial}.json")) as f:
        s = json.load(f)
    return s["Known"], s["Unknown"]


def pil_resize(image, size):
    """uint8 HW / HWC -> float array (C, size, size) in [0, 1], resized as PIL's bilinear does."""
    img = Image.fromarray(image)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float64) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# ------------------------------------------------------------------ fake data roots
@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(str(root), **MNIST_FAKE)
    return str(root)


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    write_mnist(str(root), **MNIST_FAKE, folder="FashionMNIST")
    return str(root)


@pytest.fixture(scope="module")
def svhn_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn")
    write_svhn(str(root / "svhn"), n_train=20, n_test=10, seed=0)
    return str(root)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(str(root), n_train=20, n_test=10, seed=0)
    write_cifar100(str(root), n_train=2, n_test=5, seed=0)
    return str(root)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from datasets.setup_tinyimagenet import sort_val_images

    root = tmp_path_factory.mktemp("tiny")
    top = write_tinyimagenet(str(root), num_classes=200, n_train=10, n_val=2, image_size=64, seed=0)
    sort_val_images(top)
    return str(root)


# ------------------------------------------------------------------ ground truth per family
class Truth:
    """What the raw files say: labels (original ids) by raw index, and raw images by index."""

    def __init__(self, train_labels, test_labels, unknown_labels, train_image, test_image, unknown_image):
        self.train_labels, self.test_labels, self.unknown_labels = train_labels, test_labels, unknown_labels
        self.train_image, self.test_image, self.unknown_image = train_image, test_image, unknown_image


def truth_for(dataset, root, data):
    if dataset in ("MNIST", "FashionMNIST"):
        raw = os.path.join(root, dataset, "raw")
        tr_x, tr_y = read_idx_gz(f"{raw}/train-images-idx3-ubyte.gz"), read_idx_gz(f"{raw}/train-labels-idx1-ubyte.gz")
        te_x, te_y = read_idx_gz(f"{raw}/t10k-images-idx3-ubyte.gz"), read_idx_gz(f"{raw}/t10k-labels-idx1-ubyte.gz")
        return Truth(tr_y.astype(np.int64), te_y.astype(np.int64), te_y.astype(np.int64),
                     tr_x.__getitem__, te_x.__getitem__, te_x.__getitem__)
    if dataset == "SVHN":
        tr_x, _, tr_y = read_svhn(os.path.join(root, "svhn", "train_32x32.mat"))
        te_x, _, te_y = read_svhn(os.path.join(root, "svhn", "test_32x32.mat"))
        return Truth(tr_y, te_y, te_y, tr_x.__getitem__, te_x.__getitem__, te_x.__getitem__)
    if dataset in ("CIFAR10", "CIFAR+10"):
        folder = os.path.join(root, "cifar-10-batches-py")
        tr_x, tr_y = read_cifar(folder, [f"data_batch_{i}" for i in range(1, 6)], "labels")
        te_x, te_y = read_cifar(folder, ["test_batch"], "labels")
        if dataset == "CIFAR10":
            return Truth(tr_y, te_y, te_y, tr_x.__getitem__, te_x.__getitem__, te_x.__getitem__)
        un_x, un_y = read_cifar(os.path.join(root, "cifar-100-python"), ["test"], "fine_labels")
        return Truth(tr_y, te_y, un_y, tr_x.__getitem__, te_x.__getitem__, un_x.__getitem__)
    if dataset == "TinyImageNet":
        top = os.path.join(root, "tiny-imagenet-200")
        with open(os.path.join(top, "wnids.txt")) as f:
            class_id = {w: i for i, w in enumerate(sorted(f.read().split()))}  # ImageFolder: sorted names

        def by_path(split):
            ds = data._test_set("TinyImageNet") if split == "val" else data.train_set
            paths = [p for p, _ in ds.samples]
            labels = []
            for p in paths:  # .../<split>/<wnid>/[images/]file.JPEG
                rel = os.path.relpath(p, os.path.join(top, split)).split(os.sep)
                labels.append(class_id[rel[0]])
            def image(i):
                with Image.open(paths[i]) as img:
                    return np.asarray(img.convert("RGB"))

            return np.asarray(labels, np.int64), image

        tr_y, tr_img = by_path("train")
        te_y, te_img = by_path("val")
        return Truth(tr_y, te_y, te_y, tr_img, te_img, te_img)
    if dataset == "Digits":
        from datasets.digits import Digits

        train, test = Digits(train=True), Digits(train=False)
        return Truth(train.targets, test.targets, test.targets, train.data.__getitem__,
                     test.data.__getitem__, test.data.__getitem__)
    raise AssertionError(dataset)


FAMILIES = [("MNIST", 0, "mnist_root"), ("SVHN", 0, "svhn_root"), ("CIFAR10", 5, "cifar_root"),
            ("CIFAR+10", 0, "cifar_root"), ("TinyImageNet", 0, "tiny_root"), ("Digits", 0, None),
            ("FashionMNIST", 0, "fashion_root")]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    dataset, trial, root_fixture = request.param
    root = request.getfixturevalue(root_fixture) if root_fixture else "/nonexistent-digits-needs-no-files"
    data = OpenSetData(dataset, trial, data_root=root, download=False)
    known, unknown = read_split(dataset, trial)
    return dict(dataset=dataset, trial=trial, root=root, data=data, known=known, unknown=unknown,
                truth=truth_for(dataset, root, data))


def expected_map(known):
    return {c: i for i, c in enumerate(sorted(known))}


# ------------------------------------------------------------------ label remapping, shapes
def test_cifar10_paper_trial_mapping_example(cifar_root):
    # the seed README's example: CIFAR10 trial 5 (first-release split) = Known [6, 8, 2, 4, 9, 3]
    data = OpenSetData("CIFAR10", 5, data_root=cifar_root, download=False)
    assert sorted(data.known) == [2, 3, 4, 6, 8, 9] and sorted(data.unknown) == [0, 1, 5, 7]
    mapping = {c: int(data.label_map[c]) for c in range(10)}
    assert mapping == {2: 0, 3: 1, 4: 2, 6: 3, 8: 4, 9: 5, 0: 6, 1: 6, 5: 6, 7: 6}


def test_split_matches_split_file(family):
    data = family["data"]
    size, channels, num_known, _ = SHAPES[family["dataset"]]
    assert list(data.known) == family["known"] and list(data.unknown) == family["unknown"]
    assert data.num_known == num_known == len(family["known"])
    if family["dataset"] == "Digits":  # 6 known / 4 unknown of the 10 digits
        assert sorted(family["known"] + family["unknown"]) == list(range(10))


def test_labels_remapped_in_ascending_order_of_original_id(family):
    data, truth, known = family["data"], family["truth"], family["known"]
    mapping = expected_map(known)
    for ds, raw in ((data.train_dataset(), truth.train_labels), (data.val_dataset(), truth.train_labels),
                    (data.anchor_dataset(), truth.train_labels), (data.known_test_dataset(), truth.test_labels)):
        expected = [mapping[int(raw[i])] for i in ds.indices]
        assert torch.as_tensor(ds.labels).tolist() == expected
        assert sorted(set(expected)) == list(range(len(known)))
    unknown = data.unknown_test_dataset()
    assert torch.as_tensor(unknown.labels).tolist() == [len(known)] * len(unknown.indices)


def test_items_have_shape_label_and_pixels(family):
    data, truth = family["data"], family["truth"]
    size, channels, _, _ = SHAPES[family["dataset"]]
    mapping = expected_map(family["known"])
    mean = np.asarray(data.mean, np.float64).reshape(-1, 1, 1)
    std = np.asarray(data.std, np.float64).reshape(-1, 1, 1)
    cases = [(data.train_dataset(), truth.train_labels, truth.train_image, False),
             (data.val_dataset(), truth.train_labels, truth.train_image, True),
             (data.known_test_dataset(), truth.test_labels, truth.test_image, True),
             (data.unknown_test_dataset(), truth.unknown_labels, truth.unknown_image, True)]
    for ds, raw_labels, raw_image, exact in cases:
        for k in (0, len(ds) - 1):
            image, label = ds[k]
            assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
            assert tuple(image.shape) == (channels, size, size)
            raw = int(raw_labels[ds.indices[k]])
            assert int(label) == mapping.get(raw, len(family["known"]))
            if exact:  # evaluation transform: Resize, ToTensor, Normalize - no randomness
                expected = (pil_resize(raw_image(ds.indices[k]), size) - mean) / std
                np.testing.assert_allclose(image.numpy(), expected, atol=1e-4)


# ------------------------------------------------------------------ train / val / test subsets
def test_train_val_split_per_class(family):
    data, truth, known = family["data"], family["truth"], family["known"]
    fraction = SHAPES[family["dataset"]][3]
    train, val = np.asarray(data.train_idx), np.asarray(data.val_idx)
    assert np.array_equal(np.asarray(data.train_dataset().indices), train)
    assert np.array_equal(np.asarray(data.val_dataset().indices), val)
    assert not set(train.tolist()) & set(val.tolist())
    assert len(set(train.tolist())) == len(train) and len(set(val.tolist())) == len(val)
    all_known = np.flatnonzero(np.isin(truth.train_labels, known))
    assert sorted(train.tolist() + val.tolist()) == all_known.tolist()
    for c in known:
        n = int((truth.train_labels == c).sum())
        n_val = int((truth.train_labels[val] == c).sum())
        assert n_val >= 1 and abs(n_val - fraction * n) <= 0.5 + 1e-9, (c, n, n_val)


def test_known_test_set_is_test_images_of_known_classes(family):
    data, truth = family["data"], family["truth"]
    ds = data.known_test_dataset()
    expected = np.flatnonzero(np.isin(truth.test_labels, family["known"]))
    assert len(expected) > 0 and sorted(np.asarray(ds.indices).tolist()) == expected.tolist()


def test_unknown_test_set_is_test_images_of_unknown_classes(family):
    data, truth = family["data"], family["truth"]
    ds = data.unknown_test_dataset()
    expected = np.flatnonzero(np.isin(truth.unknown_labels, family["unknown"]))
    assert len(expected) > 0 and sorted(np.asarray(ds.indices).tolist()) == expected.tolist()


def test_cifar_plus_unknowns_are_the_cifar100_test_images(cifar_root):
    data = OpenSetData("CIFAR+10", 0, data_root=cifar_root, download=False)
    known, unknown = read_split("CIFAR+10", 0)
    assert known == [0, 1, 8, 9] and len(unknown) == 10
    images, fine = read_cifar(os.path.join(cifar_root, "cifar-100-python"), ["test"], "fine_labels")
    want = np.flatnonzero(np.isin(fine, unknown))
    assert len(want) == 10 * 5  # write_cifar100: 5 test images per class
    ds = data.unknown_test_dataset()
    assert len(ds) == len(want)
    got = sorted(np.asarray(ds.indices).tolist())
    assert got == want.tolist()
    for k, i in enumerate(ds.indices):  # the very pixels of the CIFAR-100 *test* file
        pil, _ = ds.base[int(i)]
        assert np.array_equal(np.asarray(pil), images[int(i)])
    # known classes come from CIFAR-10: its test images of classes 0, 1, 8, 9
    _, te_y = read_cifar(os.path.join(cifar_root, "cifar-10-batches-py"), ["test_batch"], "labels")
    assert sorted(np.asarray(data.known_test_dataset().indices).tolist()) == \
        np.flatnonzero(np.isin(te_y, known)).tolist()


def test_svhn_label_10_is_digit_0(svhn_root):
    _, y_file, y = read_svhn(os.path.join(svhn_root, "svhn", "train_32x32.mat"))
    assert (y_file == 10).any() and not (y_file == 0).any()  # the file stores digit 0 as 10
    data = OpenSetData("SVHN", 0, data_root=svhn_root, download=False)
    assert 0 in data.known
    zeros = set(np.flatnonzero(y_file == 10).tolist())
    train = data.train_dataset()
    labels = torch.as_tensor(train.labels).tolist()
    picked = [lab for i, lab in zip(train.indices, labels) if int(i) in zeros]
    assert picked and set(picked) == {0}  # digit 0 is the smallest known id: label 0


def test_tinyimagenet_images_and_class_folders(tiny_root):
    data = OpenSetData("TinyImageNet", 0, data_root=tiny_root, download=False)
    assert len(data.train_set) == 200 * 10
    top = os.path.join(tiny_root, "tiny-imagenet-200")
    with open(os.path.join(top, "wnids.txt")) as f:
        wnids = sorted(f.read().split())
    assert data.train_set.classes == wnids  # class id = position of the wnid in sorted order
    val = data._test_set("TinyImageNet")
    assert val.classes == wnids and len(val) == 200 * 2
    image, label = data.known_test_dataset()[0]
    assert tuple(image.shape) == (3, 64, 64)


def test_digits_is_the_real_sklearn_set_split_70_30_per_class():
    from sklearn.datasets import load_digits

    from datasets.digits import Digits

    bunch = load_digits()
    assert len(bunch.target) == 1797
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) + len(test) == 1797
    for c in range(10):
        n = int((bunch.target == c).sum())
        n_test = int((np.asarray(test.targets) == c).sum())
        assert abs(n_test - 0.3 * n) <= 0.5 + 1e-9, (c, n, n_test)
    # the two parts together are exactly the 1,797 images (scaled 0..16 -> 0..255) with their labels
    full = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)

    def key(img, lab):
        return (np.asarray(img, np.uint8).tobytes(), int(lab))

    want = Counter(key(img, lab) for img, lab in zip(full, bunch.target))
    got = Counter(key(img, lab) for part in (train, test) for img, lab in zip(part.data, part.targets))
    assert got == want
    image, label = train[0]
    assert image.size == (8, 8) and image.mode == "L" and label == int(train.targets[0])


# ------------------------------------------------------------------ normalization
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
def test_computed_normalization_for_trials_without_listed_values(request, isolated_datasets_dir, dataset,
                                                                 trial, root_fixture):
    root = request.getfixturevalue(root_fixture) if root_fixture else "/nonexistent"
    splits = isolated_datasets_dir / dataset / "class_splits"
    if trial == 10:  # a user's own split: trial 5's classes under a number with no listed row
        (splits / "10.json").write_text((splits / "5.json").read_text())
    data = OpenSetData(dataset, trial, data_root=root, download=False)
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
    cache = isolated_datasets_dir / dataset / "normalization" / f"{trial}.json"
    cached = json.loads(cache.read_text())
    assert cached["mean"] == data.mean and cached["std"] == data.std
    cached["mean"] = [0.5] * len(mean)
    cache.write_text(json.dumps(cached))
    assert OpenSetData(dataset, trial, data_root=root, download=False).mean == [0.5] * len(mean)
    # ... but not once it was made from other data, for other known classes or another image size
    other_known = known[:-1] + read_split(dataset, 5 if trial == 10 else trial)[1][:1]
    for field, value in (("Fingerprint", {"num_samples": 1, "labels_sha1": "0" * 40}), ("Known", other_known),
                         ("im_size", 2 * SHAPES[dataset][0])):
        stale = {**cached, field: value}
        cache.write_text(json.dumps(stale))
        again = OpenSetData(dataset, trial, data_root=root, download=False)
        np.testing.assert_allclose(again.mean, mean, rtol=1e-9)


# ------------------------------------------------------------------ the train/val split cache
def mnist_labels(root):
    return read_idx_gz(os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte.gz")).astype(np.int64)


def assert_split_fits(split, labels, fraction=0.2):
    """The Train/Val lists cover each class's images once, with its class's label, ~fraction in Val."""
    for c in range(10):
        tr, va = split["Train"][str(c)], split["Val"][str(c)]
        assert sorted(tr + va) == np.flatnonzero(labels == c).tolist()
        n = len(tr) + len(va)
        assert abs(len(va) - fraction * n) <= 0.5 + 1e-9


def test_trainval_cache_is_rewritten_when_labels_change(isolated_datasets_dir, mnist_root, tmp_path):
    cache = isolated_datasets_dir / "MNIST" / "trainval_idxs.json"
    labels_a = mnist_labels(mnist_root)
    data_a = OpenSetData("MNIST", 0, data_root=mnist_root, download=False)
    first = json.loads(cache.read_text())
    assert_split_fits(first, labels_a)
    known = read_split("MNIST", 0)[0]
    assert data_a.val_idx.tolist() == sorted(i for c in known for i in first["Val"][str(c)])

    root_b = str(tmp_path / "b")
    write_mnist(root_b, n_train=15, n_test=6, seed=7)  # other labels, other count
    labels_b = mnist_labels(root_b)
    assert len(labels_b) == 150
    data_b = OpenSetData("MNIST", 0, data_root=root_b, download=False)
    second = json.loads(cache.read_text())
    assert second != first
    assert_split_fits(second, labels_b)
    assert second["Fingerprint"]["num_samples"] == 150
    assert data_b.val_idx.tolist() == sorted(i for c in known for i in second["Val"][str(c)])
    assert data_b.train_idx.tolist() == sorted(i for c in known for i in second["Train"][str(c)])

    # a config with another validation share does not reuse the 80/20 split
    from datasets import load_config
    OpenSetData("MNIST", 0, data_root=root_b, download=False, config={**load_config("MNIST"), "val_fraction": 0.4})
    third = json.loads(cache.read_text())
    assert third["Fingerprint"]["train_share"] == 0.6
    assert_split_fits(third, labels_b, fraction=0.4)


def test_tiny_classes_keep_one_validation_image(isolated_datasets_dir, tmp_path):
    root = str(tmp_path / "two")
    write_mnist(root, n_train=2, n_test=2, seed=3)  # 0.2 * 2 rounds to 0: one goes to val anyway
    data = OpenSetData("MNIST", 0, data_root=root, download=False)
    labels = mnist_labels(root)
    for c in read_split("MNIST", 0)[0]:
        assert int((labels[data.val_idx] == c).sum()) == 1 and int((labels[data.train_idx] == c).sum()) == 1


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("dataset,fragments", [
    ("MNIST", ["MNIST", "raw", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
    ("SVHN", ["SVHN", os.path.join("svhn", "train_32x32.mat")]),
    ("CIFAR10", ["CIFAR10", "cifar-10-batches-py", "data_batch_1", "batches.meta"]),
    ("CIFAR+10", ["CIFAR10", "cifar-10-batches-py", "data_batch_1"]),
    ("TinyImageNet", ["tiny-imagenet-200", "train", "setup_tinyimagenet.py"]),
])
def test_missing_data_offline_names_expected_files(tmp_path, dataset, fragments):
    empty = str(tmp_path / "empty")
    with pytest.raises(UserError) as err:
        OpenSetData(dataset, 0, data_root=empty, download=False)
    msg = str(err.value)
    assert "\n" not in msg and empty in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_missing_cifar100_names_it(tmp_path, cifar_root):
    root = tmp_path / "only10"
    root.mkdir()
    os.symlink(os.path.join(cifar_root, "cifar-10-batches-py"), root / "cifar-10-batches-py")
    data = OpenSetData("CIFAR+10", 0, data_root=str(root), download=False)  # known side is there
    with pytest.raises(UserError) as err:
        data.unknown_test_dataset()
    assert "CIFAR100" in str(err.value) and "cifar-100-python" in str(err.value)
    assert "test" in str(err.value)


def test_missing_mnist_test_files_named(tmp_path, mnist_root):
    raw = tmp_path / "m" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(mnist_root, "MNIST", "raw", name), raw / name)
    with pytest.raises(UserError) as err:
        data = OpenSetData("MNIST", 0, data_root=str(tmp_path / "m"), download=False)
        data.known_test_dataset()
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg and "corrupt" not in msg, msg


def test_cifar100_without_its_train_file(tmp_path, cifar_root):
    root = tmp_path / "c"
    root.mkdir()
    os.symlink(os.path.join(cifar_root, "cifar-10-batches-py"), root / "cifar-10-batches-py")
    shutil.copytree(os.path.join(cifar_root, "cifar-100-python"), root / "cifar-100-python")
    os.remove(root / "cifar-100-python" / "train")
    data = OpenSetData("CIFAR+10", 0, data_root=str(root), download=False)
    try:
        unknown = data.unknown_test_dataset()  # fine: only the test file is needed
        assert len(unknown) == 10 * 5
    except UserError as e:  # or a message that names the missing file, not a corrupt one
        assert "corrupt" not in str(e) and "train" in str(e), str(e)


def test_truncated_mnist_gz(tmp_path, mnist_root):
    raw = tmp_path / "m" / "MNIST" / "raw"
    shutil.copytree(os.path.join(mnist_root, "MNIST", "raw"), raw,
                    ignore=lambda d, names: [n for n in names if not n.endswith(".gz")])
    path = raw / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", 0, data_root=str(tmp_path / "m"), download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and ("corrupt" in msg or "truncated" in msg)
    assert "\n" not in msg


def test_corrupt_cifar_pickle(tmp_path, cifar_root):
    folder = tmp_path / "c" / "cifar-10-batches-py"
    shutil.copytree(os.path.join(cifar_root, "cifar-10-batches-py"), folder)
    (folder / "data_batch_3").write_bytes(b"\x00garbage, not a pickle\xff" * 40)
    with pytest.raises(UserError) as err:
        OpenSetData("CIFAR10", 0, data_root=str(tmp_path / "c"), download=False)
    msg = str(err.value)
    assert "CIFAR10" in msg and "corrupt" in msg and "\n" not in msg


def test_corrupt_svhn_mat(tmp_path):
    folder = tmp_path / "s" / "svhn"
    folder.mkdir(parents=True)
    (folder / "train_32x32.mat").write_bytes(b"MATLAB? no" * 100)
    with pytest.raises(UserError) as err:
        OpenSetData("SVHN", 0, data_root=str(tmp_path / "s"), download=False)
    assert "SVHN" in str(err.value) and "corrupt" in str(err.value)


# split files written into the repo's datasets/MNIST/class_splits/ under unused trial numbers
# (one number per case, so parallel workers never share a file), removed afterwards
BAD_SPLITS = [
    ("not json", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [6, 7, 8, 9]', ["not valid JSON"]),
    ("no Known", '{"Unknown": [6, 7, 8, 9]}', ["'Known'"]),
    ("repeat", '{"Known": [0, 1, 2, 3, 4, 4], "Unknown": [6, 7, 8, 9]}', ["Known", "repeats"]),
    ("out of range", '{"Known": [0, 1, 2, 3, 4, 10], "Unknown": [6, 7, 8, 9]}', ["Known", "10", "0..9"]),
    ("negative unknown", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [-1, 7, 8, 9]}', ["Unknown", "-1"]),
    ("overlap", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [5, 7, 8, 9]}', ["both Known and Unknown", "5"]),
    ("five known", '{"Known": [0, 1, 2, 3, 4], "Unknown": [6, 7, 8, 9]}', ["5 known classes", "6"]),
    ("strings", '{"Known": ["0", "1", "2", "3", "4", "5"], "Unknown": [6, 7, 8, 9]}', ["Known", "integer"]),
]


@pytest.fixture
def split_file(request):
    """Write request.param = (trial, text) as datasets/MNIST/class_splits/<trial>.json; delete it after."""
    trial, text = request.param
    path = os.path.join(DATASETS, "MNIST", "class_splits", f"{trial}.json")
    if os.path.exists(path):  # only a file left by an interrupted run of this test may be replaced
        with open(path) as f:
            left = f.read()
        if left != text and left not in [b[1] for b in BAD_SPLITS]:
            pytest.fail(f"{path} exists and is not this test's: move it away to run the test")
    with open(path, "w") as f:
        f.write(text)
    yield trial, path
    os.remove(path)
    norm = os.path.join(DATASETS, "MNIST", "normalization", f"{trial}.json")
    if os.path.exists(norm):
        os.remove(norm)


@pytest.mark.parametrize("split_file,fragments",
                         [((7301 + k, text), frags) for k, (_, text, frags) in enumerate(BAD_SPLITS)],
                         ids=[b[0] for b in BAD_SPLITS], indirect=["split_file"])
def test_bad_split_file(split_file, fragments, mnist_root):
    trial, path = split_file
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", trial, data_root=mnist_root, download=False)
    msg = str(err.value)
    assert path in msg and "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


@pytest.mark.parametrize("split_file", [(7300, '{"Known": [9, 8, 7, 6, 5, 4], "Unknown": [3, 0]}')],
                         indirect=True)
def test_user_added_split_file(split_file, mnist_root):
    trial, _ = split_file
    data = OpenSetData("MNIST", trial, data_root=mnist_root, download=False)
    assert {c: int(data.label_map[c]) for c in range(10)} == {
        4: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5, 0: 6, 1: 6, 2: 6, 3: 6}
    labels = mnist_labels(mnist_root)
    unknown = data.unknown_test_dataset()
    test_labels = read_idx_gz(os.path.join(mnist_root, "MNIST", "raw", "t10k-labels-idx1-ubyte.gz"))
    assert sorted(np.asarray(unknown.indices).tolist()) == np.flatnonzero(np.isin(test_labels, [0, 3])).tolist()
    assert sorted(data.train_idx.tolist() + data.val_idx.tolist()) == \
        np.flatnonzero(np.isin(labels, [4, 5, 6, 7, 8, 9])).tolist()


def test_missing_split_file_lists_existing_trials(mnist_root):
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", 4242, data_root=mnist_root, download=False)
    msg = str(err.value)
    assert "4242" in msg and os.path.join("MNIST", "class_splits", "4242.json") in msg
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in msg


def test_unknown_dataset_name():
    with pytest.raises(UserError) as err:
        OpenSetData("CIFAR11", 0)
    assert "CIFAR11" in str(err.value) and "MNIST" in str(err.value)


def test_test_split_is_opened_once_for_known_and_unknown(mnist_root, isolated_datasets_dir, monkeypatch):
    import datasets.loaders as loaders

    calls = []
    real = loaders.open_source

    def counting(source, root, train, download=True):
        calls.append((source, train))
        return real(source, root, train, download)

    monkeypatch.setattr(loaders, "open_source", counting)
    data = OpenSetData("MNIST", 0, data_root=mnist_root, download=False)
    known, unknown = data.known_test_dataset(), data.unknown_test_dataset()
    assert calls.count(("MNIST", False)) == 1
    assert known.base is unknown.base and len(known) + len(unknown) == len(known.base)
