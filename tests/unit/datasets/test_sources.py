"""The raw sources (datasets/sources.py) under missing, truncated or corrupt files: one line
naming what is expected where; FashionMNIST's routes to its files (--data_root, else Debian's
dataset-fashion-mnist, replaced here by a fake folder through CAC_SYSTEM_FASHION_MNIST)."""
import gzip
import os
import shutil
import struct
import sys

import numpy as np
import pytest
from conftest import one_line
from fakedata import read_idx_gz, write_mnist, write_svhn, write_tinyimagenet

from core.errors import UserError
from scripts.setup_tinyimagenet import sort_val_images
from datasets.sources import expected_files, open_source
from datasets.trial import OpenSetData


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
    unknown = data.unknown_test_dataset()  # only the test file of CIFAR-100 is needed
    assert len(unknown) == 10 * 5
    assert unknown.base.train is False and not (root / "cifar-100-python" / "train").exists()


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


def _rewrite_idx_labels(root, labels):
    path = os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte.gz")
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes())
    raw = path[:-3]
    if os.path.exists(raw):
        os.remove(raw)


@pytest.mark.parametrize("labels,fragment", [(np.arange(150) % 10, "150 labels"),
                                             (np.r_[np.arange(199) % 10, 12], "label 12")],
                         ids=["more labels than images", "label out of range"])
def test_mnist_labels_that_do_not_fit_the_images_are_one_line(labels, fragment, tmp_path):
    write_mnist(str(tmp_path), n_train=20, n_test=5)  # 200 training images
    _rewrite_idx_labels(str(tmp_path), labels)
    with pytest.raises(UserError, match=fragment) as err:
        open_source("MNIST", str(tmp_path), train=True, download=False)
    one_line(err.value)


@pytest.mark.parametrize("source,module", [("SVHN", "scipy.io"), ("Digits", "sklearn.datasets")])
def test_a_missing_module_is_named_not_called_corrupt_data(source, module, tmp_path, monkeypatch):
    if source == "SVHN":
        write_svhn(str(tmp_path / "svhn"), n_train=2, n_test=2)
    monkeypatch.setitem(sys.modules, module, None)  # `import scipy.io` now raises ImportError
    with pytest.raises(UserError) as err:
        open_source(source, str(tmp_path), train=True, download=False)
    message = one_line(err.value)
    assert module in message and "corrupt" not in message


def test_tinyimagenet_with_unsorted_or_mismatched_val_folders_is_refused(tmp_path):
    top = write_tinyimagenet(str(tmp_path), num_classes=4, n_train=1, n_val=2)
    with pytest.raises(UserError, match="setup_tinyimagenet") as err:  # val/images not sorted yet
        open_source("TinyImageNet", str(tmp_path), train=False, download=False)
    one_line(err.value)
    sort_val_images(top)
    assert len(open_source("TinyImageNet", str(tmp_path), train=False, download=False)) == 8
    missing = sorted(os.listdir(os.path.join(top, "val")))[0]
    shutil.rmtree(os.path.join(top, "val", missing))  # class ids of val would shift by one
    with pytest.raises(UserError, match=missing) as err:
        open_source("TinyImageNet", str(tmp_path), train=False, download=False)
    one_line(err.value)


# ------------------------------------------------------------------ FashionMNIST: --data_root, else Debian's package


@pytest.fixture
def system_folder(tmp_path, monkeypatch):
    """A fake /usr/share/datasets/fashion-mnist: the four .gz files side by side."""
    raw = write_mnist(str(tmp_path / "debian"), n_train=20, n_test=10, seed=3, folder="fashion-mnist")
    folder = os.path.join(raw, "raw")
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", folder)
    return folder


def test_missing_files_are_taken_from_the_debian_package(tmp_path, system_folder):
    root = str(tmp_path / "data")
    data = OpenSetData("FashionMNIST", 0, data_root=root, download=False)
    # decompressed under --data_root, where torchvision's class reads them
    assert all(os.path.isfile(p) for p in expected_files("FashionMNIST", root, train=True))
    labels = read_idx_gz(os.path.join(system_folder, "train-labels-idx1-ubyte.gz"))
    images = read_idx_gz(os.path.join(system_folder, "train-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.train_labels, labels)
    i = int(data.train_idx[0])
    np.testing.assert_array_equal(np.asarray(data.train_set[i][0]), images[i])
    assert len(data.known_test_dataset()) == np.isin(
        read_idx_gz(os.path.join(system_folder, "t10k-labels-idx1-ubyte.gz")), data.known).sum()


def test_files_under_data_root_win_over_the_debian_package(tmp_path, system_folder):
    root = str(tmp_path / "data")
    write_mnist(root, n_train=20, n_test=10, seed=7, folder="FashionMNIST")  # other images than the system's
    data = OpenSetData("FashionMNIST", 0, data_root=root, download=False)
    own = read_idx_gz(os.path.join(root, "FashionMNIST", "raw", "train-labels-idx1-ubyte.gz"))
    np.testing.assert_array_equal(data.train_labels, own)
    assert not np.array_equal(own, read_idx_gz(os.path.join(system_folder, "train-labels-idx1-ubyte.gz")))


def test_missing_everywhere_says_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(tmp_path / "not-installed"))
    root = str(tmp_path / "empty")
    with pytest.raises(UserError) as err:
        OpenSetData("FashionMNIST", 0, data_root=root, download=False)
    msg = str(err.value)
    for fragment in ("FashionMNIST not found", root, "train-images-idx3-ubyte",
                     "apt-get install dataset-fashion-mnist", "--no_download"):
        assert fragment in msg, (fragment, msg)
    assert "\n" not in msg


def test_corrupt_debian_archive_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "debian"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(folder))
    root = tmp_path / "data"
    with pytest.raises(UserError, match="corrupt or truncated"):
        OpenSetData("FashionMNIST", 0, data_root=str(root), download=False)
    assert not list((root / "FashionMNIST" / "raw").iterdir())  # no half-decompressed file left
