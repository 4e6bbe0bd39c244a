"""What the raw files say, read by the tests on their own, independently of the code under test:
CIFAR pickles, SVHN .mat files, class split files, each family's labels and images by raw
index (truth_for), and the set-up Tiny ImageNet folder (check_ready)."""
import json
import os
import pickle

import numpy as np
import scipy.io
from fakedata import read_idx_gz
from PIL import Image
from torchvision.datasets import ImageFolder


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


REPO_DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")


def read_split(dataset, trial):
    with open(os.path.join(REPO_DATASETS, dataset, "class_splits", f"{trial}.json")) as f:
        s = json.load(f)
    return s["Known"], s["Unknown"]


def mnist_train_labels(root):
    """The labels of a fake MNIST training set under `root`, read from its file."""
    return read_idx_gz(os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte.gz")).astype(np.int64)


# (image size, channels, number of known classes, validation fraction) per data set (SPEC 4, Digits: config)
SHAPES = {"MNIST": (32, 1, 6, 0.2), "SVHN": (32, 3, 6, 0.2), "CIFAR10": (32, 3, 6, 0.2),
          "CIFAR+10": (32, 3, 4, 0.2), "TinyImageNet": (64, 3, 20, 0.1), "Digits": (16, 1, 6, 0.2),
          "FashionMNIST": (32, 1, 6, 0.2)}


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


# ------------------------------------------------------------------ Tiny ImageNet set up


def read_annotations(top):
    with open(os.path.join(top, "val", "val_annotations.txt")) as f:
        return [line.split("\t")[:2] for line in f.read().splitlines()]


def check_ready(top, classes, n_train, n_val):
    """ImageFolder sees identical classes in train and val, every val image under its annotated wnid."""
    train = ImageFolder(os.path.join(top, "train"))
    val = ImageFolder(os.path.join(top, "val"))
    wnids = open(os.path.join(top, "wnids.txt")).read().split()
    assert train.classes == val.classes == sorted(wnids)
    assert len(train) == classes * n_train and len(val) == classes * n_val
    assert not os.path.exists(os.path.join(top, "val", "images"))
    for name, wnid in read_annotations(top):
        assert os.path.isfile(os.path.join(top, "val", wnid, name))
    for path, label in val.samples:
        assert os.path.basename(os.path.dirname(path)) == val.classes[label]
