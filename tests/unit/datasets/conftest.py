"""Fake data roots shared by the datasets/ unit tests: each real on-disk format written once
per session (tests/fakedata.py), and the small trials the pipelines are compared on."""
import pytest
from fakedata import write_cifar10, write_cifar100, write_mnist, write_pets, write_svhn, write_tinyimagenet

from datasets.trial import OpenSetData


MNIST_FAKE = dict(n_train=20, n_test=10, seed=0)  # per class: 200 training, 100 test images


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(str(root), **MNIST_FAKE)
    return str(root)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    write_mnist(str(root), **MNIST_FAKE, folder="FashionMNIST")
    return str(root)


@pytest.fixture(scope="session")
def svhn_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn")
    write_svhn(str(root / "svhn"), n_train=20, n_test=10, seed=0)
    return str(root)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(str(root), n_train=20, n_test=10, seed=0)
    write_cifar100(str(root), n_train=2, n_test=5, seed=0)
    return str(root)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    from scripts.setup_tinyimagenet import sort_val_images

    root = tmp_path_factory.mktemp("tiny")
    top = write_tinyimagenet(str(root), num_classes=200, n_train=10, n_val=2, image_size=64, seed=0)
    sort_val_images(top)
    return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The README's own image folder: pets/ and split.json (tests/fakedata.py's PETS_*)."""
    return write_pets(tmp_path_factory.mktemp("own"))


@pytest.fixture
def trials(tmp_path):
    """Digits (8 -> 16 px), fake MNIST (28 -> 32 px, grey) and fake CIFAR10 (3 channels)."""
    write_mnist(str(tmp_path), n_train=12, n_test=6)
    write_cifar10(str(tmp_path), n_train=12, n_test=6)
    return [OpenSetData("Digits", 0), OpenSetData("MNIST", 0, data_root=str(tmp_path), download=False),
            OpenSetData("CIFAR10", 0, data_root=str(tmp_path), download=False)]
