"""Open the raw data sets (torchvision's, TinyImageNet's folders, Digits) under --data_root, missing
files downloaded where the network allows; otherwise, and for corrupt files, a UserError says what is
expected where. torchvision's md5 checks are relaxed to existence checks so that any file in the real
format loads (a corrupt one still fails, when parsed, with a clear message)."""
import contextlib
import gzip
import io
import os
import shlex
import shutil
import zlib

import numpy as np
from torchvision import datasets as tvd

from datasets.digits import Digits
from datasets.safe_folder import SafeImageFolder
from datasets.splits import brief
from core.errors import UserError
from core.files import atomic_write

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")
NUM_CLASSES = {"MNIST": 10, "SVHN": 10, "CIFAR10": 10, "CIFAR100": 100, "TinyImageNet": 200, "Digits": 10,
               "FashionMNIST": 10}
CHANNELS_FIRST = {"SVHN"}  # sources whose `data` array is (n, C, H, W); the others (n, H, W[, C])
# Debian's package dataset-fashion-mnist installs the four .gz files here (offline machines)
SYSTEM_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class _OneSplitCheck:
    """torchvision's CIFAR classes want the files of both sets and their md5 sums; check only that those
    of the set asked for (training or test) exist (CIFAR+N needs no CIFAR-100 training file)."""

    def _check_integrity(self):
        files = self.train_list if self.train else self.test_list
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, name)) for name, _ in files)


class _CIFAR10(_OneSplitCheck, tvd.CIFAR10):
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(_OneSplitCheck, tvd.CIFAR100):
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _SVHN(tvd.SVHN):
    def _check_integrity(self):
        return os.path.isfile(os.path.join(self.root, self.filename))


TORCHVISION = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST, "CIFAR10": _CIFAR10, "CIFAR100": _CIFAR100}


def expected_files(source, root, train):
    """The files (or folders) a source needs."""
    if source in ("MNIST", "FashionMNIST"):  # torchvision opens either set only when all four files are there
        return [os.path.join(root, source, "raw", name) for name in _MNIST_FILES]
    if source == "SVHN":
        return [os.path.join(root, "svhn", f"{'train' if train else 'test'}_32x32.mat")]
    if source == "CIFAR10":
        names = [n for n, _ in (tvd.CIFAR10.train_list if train else tvd.CIFAR10.test_list)] + ["batches.meta"]
        return [os.path.join(root, "cifar-10-batches-py", n) for n in names]
    if source == "CIFAR100":
        return [os.path.join(root, "cifar-100-python", n) for n in ("train" if train else "test", "meta")]
    if source == "TinyImageNet":
        return [os.path.join(root, "tiny-imagenet-200", "train" if train else "val")]
    return []


def _describe(paths):
    """'folder/{a, b}' for messages: which files are expected where, on one line."""
    folder, names = os.path.dirname(paths[0]), ", ".join(os.path.basename(p) for p in paths)
    return paths[0] if len(paths) == 1 else f"{folder}/{{{names}}}"


def one_line(error):
    """'Type: message' of an exception, on one line and cut short, for a message naming it."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:160]


def system_fashion_mnist():
    """Where the Debian package's Fashion-MNIST files are; CAC_SYSTEM_FASHION_MNIST overrides it."""
    return os.environ.get("CAC_SYSTEM_FASHION_MNIST", SYSTEM_FASHION_MNIST)


def _gunzip_idx(source, root):
    """Decompress the .gz files an MNIST-format folder may hold alone (FashionMNIST's missing there:
    from the Debian package's folder, if installed)."""
    raw = os.path.join(root, source, "raw")
    for name in _MNIST_FILES:
        target = os.path.join(raw, name)
        if os.path.exists(target):
            continue
        archive = target + ".gz"
        if not os.path.isfile(archive) and source == "FashionMNIST":
            archive = os.path.join(system_fashion_mnist(), name + ".gz")
        if not os.path.isfile(archive):
            continue
        try:  # atomic: a bad archive leaves no half-decompressed file behind
            with gzip.open(archive, "rb") as src, atomic_write(target) as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError, zlib.error) as e:  # bad header, truncated, bad data
            raise UserError(f"{archive} is corrupt or truncated ({one_line(e)}); "
                            f"download {source} again") from None


def _construct(source, root, train, download):
    if source in TORCHVISION:
        return TORCHVISION[source](root, train=train, download=download)
    if source == "SVHN":
        return _SVHN(os.path.join(root, "svhn"), split="train" if train else "test", download=download)
    if source == "TinyImageNet":
        return SafeImageFolder(expected_files(source, root, train)[0])
    return Digits(train=train)  # scikit-learn's: nothing to read


def open_source(source, root, train, download=True):
    """The training or test set of a raw source; UserError when it is missing offline or corrupt."""
    if source in ("MNIST", "FashionMNIST"):
        _gunzip_idx(source, root)
    missing = [p for p in expected_files(source, root, train) if not os.path.exists(p)]
    if missing and source == "TinyImageNet":
        raise UserError(f"TinyImageNet not found: expected {missing[0]}; set it up with "
                        f"`python scripts/setup_tinyimagenet.py --data_root {shlex.quote(root)}`")
    # Fashion-MNIST has an offline route: the Debian package (read by _gunzip_idx)
    apt = (f"`apt-get install dataset-fashion-mnist` (files in {system_fashion_mnist()}), "
           if source == "FashionMNIST" else "")
    if missing and not download:
        raise UserError(f"{source} not found under {root}: expected {_describe(missing)}; "
                        f"{apt}put the files there, or drop --no_download to fetch them")
    if source == "TinyImageNet" and not train:  # training reads train/ alone
        _check_tinyimagenet_folders(root)
    try:  # torchvision prints each mirror it tries; the errors below sum a failure up in one line
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = _construct(source, root, train, download=bool(missing))
    except UserError:
        raise
    except ImportError as e:  # e.g. SVHN's .mat files need scipy: not a corrupt file
        raise UserError(f"reading {source} needs the Python module {e.name or e}, which is not installed; "
                        f"install it (see requirements.txt)") from None
    except Exception as e:  # a download failure (offline, proxy, bad mirror), else damaged files
        if missing:
            raise UserError(f"{source} not found under {root} (expected {_describe(missing)}) and the download "
                            f"failed ({one_line(e)}); {apt or 'copy the files there '}or connect to the "
                            f"network") from None
        raise UserError(f"{source} files under {root} are corrupt or truncated "
                        f"({one_line(e)}); delete them and download again") from None
    _check_labels(dataset, source, root)
    return dataset


def _check_tinyimagenet_folders(root):
    """val/ (the test set) must list the classes of train/: a class id is a folder's place in the sorted
    list, so a folder missing on one side, or val/images unsorted, would silently give other classes' ids."""
    top = os.path.join(root, "tiny-imagenet-200")
    setup = f"`python scripts/setup_tinyimagenet.py --data_root {shlex.quote(root)}`"
    if os.path.isdir(os.path.join(top, "val", "images")):
        raise UserError(f"{os.path.join(top, 'val', 'images')} is not sorted into class folders; run {setup}")
    if not os.path.isdir(os.path.join(top, "train")):
        return  # val/ alone: nothing to compare with
    try:
        train, val = (sorted(e.name for e in os.scandir(os.path.join(top, p)) if e.is_dir()) for p in ("train", "val"))
    except OSError as e:
        raise UserError(f"cannot list {e.filename} ({e.strerror}); fix its permissions") from None
    if train != val:
        raise UserError(f"TinyImageNet under {top}: train/ and val/ hold different class folders (in one only: "
                        f"{brief(sorted(set(train) ^ set(val)))}); set the folder up again with {setup}")


def _check_labels(dataset, source, root):
    """As many labels as images, each a class id of the source: damaged files can disagree and
    would fail later, mid-epoch, with an index error."""
    labels = source_labels(dataset)
    if len(labels) == 0:
        raise UserError(f"{source} under {root} holds no images; check the folder")
    images = getattr(dataset, "data", None)
    if images is not None and len(images) != len(labels):
        raise UserError(f"{source} files under {root} disagree: {len(images)} images but {len(labels)} labels; "
                        f"delete them and download again")
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES[source])]
    if len(bad):
        raise UserError(f"{source} files under {root} hold label {int(bad[0])}, outside 0..{NUM_CLASSES[source] - 1}; "
                        f"delete them and download again")


def source_labels(dataset):
    """Labels of a raw data set as an int64 numpy array, without reading any image."""
    labels = getattr(dataset, "labels", None)  # SVHN
    if labels is None:
        labels = dataset.targets
    return np.asarray(labels, dtype=np.int64)
