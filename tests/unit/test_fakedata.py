"""Check tests/fakedata.py writers by loading their output with the real torchvision classes."""
import gzip
import os
import shutil
import zipfile

import fakedata
import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision import datasets as tvd


def gunzip_all(folder):
    # torchvision's MNIST reads the decompressed files; fakedata writes only .gz
    for name in os.listdir(folder):
        if name.endswith(".gz"):
            with gzip.open(os.path.join(folder, name)) as src, open(os.path.join(folder, name[:-3]), "wb") as dst:
                shutil.copyfileobj(src, dst)


def assert_counts(targets, num_classes, per_class):
    counts = np.bincount(np.asarray(targets), minlength=num_classes)
    assert counts.tolist() == [per_class] * num_classes


def assert_patches(images, targets, num_classes):
    """Every HWC/HW image is brightest inside its class's square: layout and labels agree."""
    for img, c in zip(images, targets):
        img = np.asarray(img, dtype=float)
        y, x, s = fakedata.patch_box(int(c), num_classes, img.shape[0])
        mask = np.zeros(img.shape[:2], bool)
        mask[y:y + s, x:x + s] = True
        assert img[mask].mean() > 150 and img[~mask].mean() < 80


def nearest_centroid_accuracy(xtr, ytr, xte, yte, num_classes):
    # a stand-in for "a small CNN can learn it": class means must separate test images
    xtr, xte = xtr.reshape(len(xtr), -1).astype(float), xte.reshape(len(xte), -1).astype(float)
    centroids = np.stack([xtr[np.asarray(ytr) == c].mean(0) for c in range(num_classes)])
    pred = ((xte[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    return (pred == np.asarray(yte)).mean()


@pytest.mark.parametrize("cls,folder", [(tvd.MNIST, "MNIST"), (tvd.FashionMNIST, "FashionMNIST")])
def test_mnist_format(tmp_path, cls, folder):
    out = fakedata.write_mnist(tmp_path, n_train=6, n_test=3, folder=folder)
    assert out == os.path.join(tmp_path, folder)
    raw = os.path.join(out, "raw")
    assert sorted(os.listdir(raw)) == sorted(
        f"{p}-{k}-idx{d}-ubyte.gz" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))
    with gzip.open(os.path.join(raw, "train-images-idx3-ubyte.gz")) as f:
        assert f.read(16) == bytes.fromhex("00000803 0000003c 0000001c 0000001c")  # 2051, 60, 28, 28
    gunzip_all(raw)
    train = cls(tmp_path, train=True, download=False)
    test = cls(tmp_path, train=False, download=False)
    assert tuple(train.data.shape) == (60, 28, 28) and tuple(test.data.shape) == (30, 28, 28)
    assert str(train.data.dtype) == "torch.uint8"
    assert_counts(train.targets, 10, 6)
    assert_counts(test.targets, 10, 3)
    img, label = train[0]
    assert isinstance(img, Image.Image) and img.size == (28, 28) and 0 <= label < 10
    assert_patches(train.data.numpy(), train.targets.numpy(), 10)
    assert nearest_centroid_accuracy(train.data.numpy(), train.targets.numpy(),
                                     test.data.numpy(), test.targets.numpy(), 10) == 1.0


def test_mnist_other_class_count(tmp_path):
    fakedata.write_mnist(tmp_path, n_train=2, n_test=1, num_classes=4)
    gunzip_all(os.path.join(tmp_path, "MNIST", "raw"))
    ds = tvd.MNIST(tmp_path, train=True)
    assert_counts(ds.targets, 4, 2)
    assert_patches(ds.data.numpy(), ds.targets.numpy(), 4)


class CIFAR10NoMD5(tvd.CIFAR10):
    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class CIFAR100NoMD5(tvd.CIFAR100):
    train_list = [[f, None] for f, _ in tvd.CIFAR100.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


def check_cifar(dataset_class, root, num_classes, n_train, n_test):
    """The files read back through torchvision's class: uint8 32x32x3 arrays, n images a class, patches
    that tell the classes apart. Returns the training set."""
    train, test = dataset_class(root, train=True), dataset_class(root, train=False)
    assert train.data.shape == (num_classes * n_train, 32, 32, 3) and train.data.dtype == np.uint8
    assert test.data.shape == (num_classes * n_test, 32, 32, 3)
    assert_counts(train.targets, num_classes, n_train)
    assert_counts(test.targets, num_classes, n_test)
    assert len(train.classes) == num_classes
    assert_patches(train.data, train.targets, num_classes)
    assert nearest_centroid_accuracy(train.data, train.targets, test.data, test.targets, num_classes) == 1.0
    return train


def test_cifar10_format(tmp_path):
    out = fakedata.write_cifar10(tmp_path, n_train=7, n_test=4)
    assert sorted(os.listdir(out)) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    sizes = [len(np.load(os.path.join(out, f"data_batch_{i}"), allow_pickle=True, encoding="latin1")["labels"])
             for i in range(1, 6)]
    assert sum(sizes) == 70 and min(sizes) > 0
    train = check_cifar(CIFAR10NoMD5, tmp_path, 10, n_train=7, n_test=4)
    assert train.classes[0] == "airplane"


def test_cifar100_format(tmp_path):
    out = fakedata.write_cifar100(tmp_path, n_train=2, n_test=1)
    assert sorted(os.listdir(out)) == ["meta", "test", "train"]
    check_cifar(CIFAR100NoMD5, tmp_path, 100, n_train=2, n_test=1)
    raw = np.load(os.path.join(out, "train"), allow_pickle=True, encoding="latin1")
    assert set(raw["coarse_labels"]) == set(range(20))


class SVHNNoMD5(tvd.SVHN):
    def _check_integrity(self):
        return os.path.isfile(os.path.join(self.root, self.filename))


def test_svhn_format(tmp_path):
    assert fakedata.write_svhn(tmp_path, n_train=5, n_test=2) == tmp_path
    mat = scipy.io.loadmat(os.path.join(tmp_path, "train_32x32.mat"))
    assert mat["X"].shape == (32, 32, 3, 50) and mat["X"].dtype == np.uint8
    assert mat["y"].shape == (50, 1) and set(mat["y"].ravel()) == set(range(1, 11))
    train = SVHNNoMD5(tmp_path, split="train")
    test = SVHNNoMD5(tmp_path, split="test")
    assert train.data.shape == (50, 3, 32, 32) and test.data.shape == (20, 3, 32, 32)
    assert_counts(train.labels, 10, 5)
    assert_counts(test.labels, 10, 2)
    img, label = train[0]
    assert img.size == (32, 32) and img.mode == "RGB"
    assert_patches(train.data.transpose(0, 2, 3, 1), train.labels, 10)
    assert nearest_centroid_accuracy(train.data, train.labels, test.data, test.labels, 10) == 1.0


def test_tinyimagenet_layout(tmp_path):
    out = fakedata.write_tinyimagenet(tmp_path, num_classes=5, n_train=3, n_val=2, image_size=64)
    assert out == os.path.join(tmp_path, "tiny-imagenet-200")
    wnids = open(os.path.join(out, "wnids.txt")).read().split()
    assert len(set(wnids)) == 5 and wnids != sorted(wnids)
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert len(open(os.path.join(out, "words.txt")).read().splitlines()) == 5
    assert sorted(os.listdir(os.path.join(out, "train"))) == sorted(wnids)
    for w in wnids:
        files = sorted(os.listdir(os.path.join(out, "train", w, "images")))
        assert files == [f"{w}_{i}.JPEG" for i in range(3)]
        boxes = open(os.path.join(out, "train", w, f"{w}_boxes.txt")).read().splitlines()
        assert [b.split("\t")[0] for b in boxes] == files and all(len(b.split("\t")) == 5 for b in boxes)
    ann = [line.split("\t") for line in open(os.path.join(out, "val", "val_annotations.txt")).read().splitlines()]
    assert len(ann) == 10 and all(len(a) == 6 for a in ann)
    assert sorted(a[0] for a in ann) == sorted(os.listdir(os.path.join(out, "val", "images")))
    assert sorted(a[1] for a in ann) == sorted(wnids * 2)
    assert len(os.listdir(os.path.join(out, "test", "images"))) == 2
    # images are RGB JPEGs with the class square where the annotation box says
    for name, w, x0, y0, x1, y1 in ann:
        img = Image.open(os.path.join(out, "val", "images", name))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 64)
        assert_patches([np.asarray(img)], [wnids.index(w)], 5)
        assert (int(y0), int(x0), int(x1) - int(x0) + 1) == fakedata.patch_box(wnids.index(w), 5, 64)


def test_tinyimagenet_zip(tmp_path):
    zpath = str(tmp_path / "t.zip")
    assert fakedata.make_tinyimagenet_zip(zpath, num_classes=3, n_train=1, n_val=1) == zpath
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert "tiny-imagenet-200/" in names
    assert all(n.startswith("tiny-imagenet-200/") for n in names)
    assert sum(n.endswith(".JPEG") for n in names) == 3 + 3 + 2  # train + val + test
    assert "tiny-imagenet-200/val/val_annotations.txt" in names
