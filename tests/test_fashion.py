"""FashionMNIST's routes to its files: --data_root, else Debian's dataset-fashion-mnist, else an error.

The Debian folder is replaced by a fake one through CAC_SYSTEM_FASHION_MNIST, so these tests
run (and mean the same) whether or not the package is installed on the machine.
"""
import gzip
import os

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script
from datasets import OpenSetData
from datasets.sources import expected_files
from core.errors import UserError
from fakedata import write_mnist


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        buf = f.read()
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture
def system_folder(tmp_path, monkeypatch):
    """A fake /usr/share/datasets/fashion-mnist: the four .gz files side by side."""
    raw = write_mnist(str(tmp_path / "debian"), n_train=20, n_test=10, seed=3, folder="fashion-mnist")
    folder = os.path.join(raw, "raw")
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", folder)
    return folder


def test_missing_files_are_taken_from_the_debian_package(tmp_path, system_folder, isolated_datasets_dir):
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


def test_files_under_data_root_win_over_the_debian_package(tmp_path, system_folder, isolated_datasets_dir):
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


def test_cli_missing_everywhere_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(tmp_path / "not-installed"))
    proc = run_script("train_cacOpenset.py", "--dataset", "FashionMNIST", "--trial", "0", "--no_download",
                      "--data_root", tmp_path / "empty", cwd=tmp_path)
    assert_one_line_error(proc, "FashionMNIST not found", "apt-get install dataset-fashion-mnist")
    assert not (tmp_path / "networks").exists() and not (tmp_path / "runs").exists()


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
