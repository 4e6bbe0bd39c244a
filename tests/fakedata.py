"""Writers of tiny synthetic datasets in each dataset's real on-disk format (the tests' readers
of those formats are in tests/rawfiles.py).

Tests use them to drive the real torchvision dataset classes (and our setup
scripts) offline. Every image is low-level noise plus a bright square whose
position depends on the class (see `patch_box`), so a small CNN - or even a
nearest-centroid classifier - can tell the classes apart.
"""
import gzip
import json
import math
import os
import pickle
import struct
import tempfile
import zipfile

import numpy as np
from PIL import Image


def patch_box(c, num_classes, size):
    """(y0, x0, side) of class c's bright square: classes tile a grid over the image."""
    grid = math.ceil(math.sqrt(num_classes))
    side = size // grid
    row, col = divmod(c, grid)
    return row * side, col * side, side


def _image(rng, c, num_classes, size, channels):
    """One uint8 HWC image (HW if channels == 0) of class c."""
    shape = (size, size) if channels == 0 else (size, size, channels)
    img = rng.integers(0, 64, size=shape, dtype=np.uint8)
    y, x, s = patch_box(c, num_classes, size)
    img[y:y + s, x:x + s] = rng.integers(192, 256, size=img[y:y + s, x:x + s].shape, dtype=np.uint8)
    return img


def _images(rng, labels, num_classes, size, channels):
    return np.stack([_image(rng, int(c), num_classes, size, channels) for c in labels])


def _labels(n_per_class, num_classes, rng):
    # real datasets are not grouped by class, so shuffle
    return rng.permutation(np.repeat(np.arange(num_classes), n_per_class))


# ---------------------------------------------------------------- MNIST-style
def _write_idx_gz(path, array, magic):
    # IDX: big-endian magic, then one big-endian uint32 per dimension, then raw uint8
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def read_idx_gz(path):
    """An IDX file (.gz) as a uint8 array: the dimension count is the magic's low byte, then
    one big-endian uint32 per dimension, then the bytes. Tests read files with it on their own,
    independently of torchvision."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    ndim = buf[3]
    dims = struct.unpack(">" + "I" * ndim, buf[4:4 + 4 * ndim])
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_mnist(root, n_train=20, n_test=10, num_classes=10, seed=0, folder="MNIST"):
    """Write root/<folder>/raw/*-idx?-ubyte.gz (only the .gz files); returns root/<folder>."""
    rng = np.random.default_rng(seed)
    out = os.path.join(root, folder)
    raw = os.path.join(out, "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = _labels(n, num_classes, rng)
        images = _images(rng, labels, num_classes, 28, 0)
        _write_idx_gz(os.path.join(raw, f"{prefix}-images-idx3-ubyte.gz"), images, 2051)
        _write_idx_gz(os.path.join(raw, f"{prefix}-labels-idx1-ubyte.gz"), labels, 2049)
    return out


# ---------------------------------------------------------------- CIFAR
def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(images):
    # the real files store each image as 3072 bytes: all R, then all G, then all B
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def write_cifar10(root, n_train=20, n_test=10, seed=0):
    """Write root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; returns that folder."""
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(out, exist_ok=True)
    train = _labels(n_train, 10, rng)
    # five training batches like the real dataset (array_split copes with any count)
    batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train, 5))]
    batches.append(("test_batch", _labels(n_test, 10, rng)))
    for name, labels in batches:
        _pickle(os.path.join(out, name), {
            "batch_label": name,
            "labels": [int(c) for c in labels],
            "data": _cifar_rows(_images(rng, labels, 10, 32, 3)),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
        })
    _pickle(os.path.join(out, "batches.meta"), {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer",
                        "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": len(batches[0][1]),
        "num_vis": 3072,
    })
    return out


def write_cifar100(root, n_train=5, n_test=5, seed=0):
    """Write root/cifar-100-python/{train,test,meta}; returns that folder."""
    rng = np.random.default_rng(seed)
    out = os.path.join(root, "cifar-100-python")
    os.makedirs(out, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = _labels(n, 100, rng)
        _pickle(os.path.join(out, name), {
            "batch_label": name,
            "fine_labels": [int(c) for c in fine],
            "coarse_labels": [int(c) // 5 for c in fine],  # 5 fine classes per superclass
            "data": _cifar_rows(_images(rng, fine, 100, 32, 3)),
            "filenames": [f"{name}_{i}.png" for i in range(len(fine))],
        })
    _pickle(os.path.join(out, "meta"), {
        "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
    })
    return out


# ---------------------------------------------------------------- SVHN
def write_svhn(root, n_train=20, n_test=10, seed=0):
    """Write root/{train,test}_32x32.mat (X: 32x32x3xN uint8, y: Nx1, digit 0 stored as 10); returns root."""
    import scipy.io

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        digits = _labels(n, 10, rng)
        images = _images(rng, digits, 10, 32, 3)  # N, H, W, C
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(os.path.join(root, f"{split}_32x32.mat"),
                         {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": y})
    return root


# ---------------------------------------------------------------- TinyImageNet
def write_tinyimagenet(root, num_classes=200, n_train=3, n_val=2, image_size=64, seed=0):
    """Write the raw layout of the official zip under root/tiny-imagenet-200; returns that folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = os.path.join(root, "tiny-imagenet-200")
    # unique n%08d ids; class c is the c-th id in file order, which is not sorted
    wnids = [f"n{i:08d}" for i in rng.choice(10 ** 8, size=num_classes, replace=False)]
    if wnids == sorted(wnids) and num_classes > 1:
        wnids[0], wnids[1] = wnids[1], wnids[0]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "wnids.txt"), "w") as f:
        f.writelines(w + "\n" for w in wnids)
    with open(os.path.join(out, "words.txt"), "w") as f:
        f.writelines(f"{w}\tthing {c}, object {c}\n" for c, w in enumerate(wnids))

    def save(c, path):
        Image.fromarray(_image(rng, c, num_classes, image_size, 3)).save(path, "JPEG", quality=90)
        y, x, s = patch_box(c, num_classes, image_size)
        return f"{x}\t{y}\t{x + s - 1}\t{y + s - 1}"

    for c, w in enumerate(wnids):
        img_dir = os.path.join(out, "train", w, "images")
        os.makedirs(img_dir)
        lines = []
        for i in range(n_train):
            name = f"{w}_{i}.JPEG"
            lines.append(f"{name}\t{save(c, os.path.join(img_dir, name))}\n")
        with open(os.path.join(out, "train", w, f"{w}_boxes.txt"), "w") as f:
            f.writelines(lines)

    os.makedirs(os.path.join(out, "val", "images"))
    with open(os.path.join(out, "val", "val_annotations.txt"), "w") as f:
        for k, c in enumerate(_labels(n_val, num_classes, rng)):
            name = f"val_{k}.JPEG"
            box = save(int(c), os.path.join(out, "val", "images", name))
            f.write(f"{name}\t{wnids[c]}\t{box}\n")

    os.makedirs(os.path.join(out, "test", "images"))
    for k in range(2):  # unlabeled, like the real test split
        save(int(rng.integers(num_classes)), os.path.join(out, "test", "images", f"test_{k}.JPEG"))
    return out


def make_tinyimagenet_zip(zip_path, **kwargs):
    """Zip a write_tinyimagenet layout so the top-level entry is tiny-imagenet-200/; returns zip_path."""
    with tempfile.TemporaryDirectory() as tmp:
        top = write_tinyimagenet(tmp, **kwargs)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                rel = os.path.relpath(dirpath, tmp)
                zf.write(dirpath, rel + "/")  # directory entries, as in the official zip
                for name in sorted(filenames):
                    zf.write(os.path.join(dirpath, name), os.path.join(rel, name))
    return zip_path



# ---------------------------------------------------------------- users' own folders (ImageFolder layout)
_FOLDER_FORMATS = (("RGB", ".png"), ("L", ".png"), ("RGBA", ".png"), ("P", ".png"), ("RGB", ".jpg"))
_FOLDER_SIZES = ((40, 30), (24, 24), (64, 48), (33, 50), (20, 28))  # (width, height): any size, any shape


def write_image_folder(root, train, test, seed=0):
    """root/{train,test}/<class>/<i>.<ext> with {class: count} per part; images of assorted sizes,
    modes and formats (RGB, grey, RGBA, palette; PNG and JPEG), the class drawn as a bright
    square whose place depends on the class's position in the sorted class list."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(train) | set(test))
    for part, counts in (("train", train), ("test", test)):
        for name, n in counts.items():
            folder = os.path.join(root, part, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                width, height = _FOLDER_SIZES[i % len(_FOLDER_SIZES)]
                mode, ext = _FOLDER_FORMATS[(i + classes.index(name)) % len(_FOLDER_FORMATS)]
                square = _image(rng, classes.index(name), len(classes), 32, 3)
                image = Image.fromarray(square).resize((width, height))
                image = image.convert(mode) if mode != "P" else image.quantize(16)
                image.save(os.path.join(folder, f"{i}{ext}"))
    return root


# ---------------------------------------------------------------- a training set's labels in each real format
def write_training_labels(dataset, root, train_labels):
    """Write `dataset`'s training split (and a small test split, where torchvision needs one to
    open either) under `root` in the real on-disk format, with exactly `train_labels` in file
    order and blank images: enough to drive everything that depends on the labels only (the
    train/validation partition) through the real torchvision classes, without gigabytes.
    MNIST and CIFAR-10 keep their real image shape; SVHN's images are 2x2 (the .mat format
    allows any size, and 73,257 real-sized ones would be 225 MB); TinyImageNet's are empty
    files (ImageFolder lists files without opening them)."""
    labels = np.asarray(train_labels, dtype=np.uint8)
    if dataset == "MNIST":
        raw = os.path.join(root, "MNIST", "raw")
        os.makedirs(raw, exist_ok=True)
        for prefix, y in (("train", labels), ("t10k", np.arange(10, dtype=np.uint8))):
            _write_idx_gz(os.path.join(raw, f"{prefix}-images-idx3-ubyte.gz"), np.zeros((len(y), 28, 28), np.uint8), 2051)
            _write_idx_gz(os.path.join(raw, f"{prefix}-labels-idx1-ubyte.gz"), y, 2049)
    elif dataset == "SVHN":
        import scipy.io

        folder = os.path.join(root, "svhn")
        os.makedirs(folder, exist_ok=True)
        for split, y in (("train", labels), ("test", np.arange(10, dtype=np.uint8))):
            scipy.io.savemat(os.path.join(folder, f"{split}_32x32.mat"),
                             {"X": np.zeros((2, 2, 3, len(y)), np.uint8),
                              "y": np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)})
    elif dataset == "CIFAR10":
        out = os.path.join(root, "cifar-10-batches-py")
        os.makedirs(out, exist_ok=True)
        parts = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(labels, 5))]
        for name, y in parts + [("test_batch", np.arange(10, dtype=np.uint8))]:
            _pickle(os.path.join(out, name), {"batch_label": name, "labels": [int(c) for c in y],
                                              "data": np.zeros((len(y), 3072), np.uint8)})
        _pickle(os.path.join(out, "batches.meta"), {"label_names": [f"class_{c}" for c in range(10)]})
    elif dataset == "TinyImageNet":
        train = os.path.join(root, "tiny-imagenet-200", "train")
        for c, count in enumerate(np.bincount(labels, minlength=int(labels.max()) + 1)):
            folder = os.path.join(train, f"n{c:08d}", "images")  # sorted wnids = label order
            os.makedirs(folder)
            for i in range(count):
                open(os.path.join(folder, f"n{c:08d}_{i:04d}.JPEG"), "wb").close()
        os.makedirs(os.path.join(root, "tiny-imagenet-200", "val"), exist_ok=True)
    else:
        raise ValueError(f"no label writer for {dataset}")
    return root


# ------------------------------------------------------------------ image folders


PETS_TRAIN = {"cat": 8, "dog": 8, "owl": 8, "fox": 2}  # fox: a class with training images that stays unknown


PETS_TEST = {"cat": 3, "dog": 3, "owl": 3, "fox": 3, "yak": 2}  # yak: only in test/


PETS_SPLIT = {"Known": ["owl", "cat", "dog"], "Unknown": ["fox", "yak"]}


def write_pets(root):
    """The users' own image folder of the README: root/pets (PETS_TRAIN, PETS_TEST) and
    root/split.json (PETS_SPLIT); returns root."""
    write_image_folder(str(root / "pets"), PETS_TRAIN, PETS_TEST, seed=0)
    with open(root / "split.json", "w") as f:
        json.dump(PETS_SPLIT, f)
    return root


def write_bmp_folder(root, seed):
    """A tiny folder of uncompressed BMP images: an image's file size depends only on its
    width, height and mode, so other pixels give a file of the same name and the same size."""
    rng = np.random.default_rng(seed)
    counts = {"train": {"a": 6, "b": 6, "c": 6}, "test": {"a": 2, "b": 2, "c": 2, "u": 3}}
    for part, classes in counts.items():
        for k, (name, n) in enumerate(sorted(classes.items())):
            os.makedirs(os.path.join(root, part, name), exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
                pixels[:, 4 * k:4 * k + 4] = 255  # a bright stripe per class
                Image.fromarray(pixels).save(os.path.join(root, part, name, f"{i}.bmp"))
    return root


def replace_training_images_keeping_name_size_and_time(root):
    """Other pixels in every training image: same names, same sizes, same modification times."""
    for folder, _, names in os.walk(os.path.join(root, "train")):
        for name in names:
            path = os.path.join(folder, name)
            before = os.stat(path)
            with Image.open(path) as image:
                pixels = 255 - np.asarray(image)
            Image.fromarray(np.ascontiguousarray(pixels[::-1])).save(path)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.path.getsize(path) == before.st_size


# ------------------------------------------------------------------ split files, however malformed


MALFORMED = {
    "nested 200,000 deep": ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    "5,000-digit number": ('{"Known": [' + "9" * 5000 + '], "Unknown": [1]}', "integer too long"),
    "NaN": ('{"Known": [NaN], "Unknown": [1]}', "NaN"),
    "not UTF-8": (b'{"Known": ["\xff"], "Unknown": [1]}', "not UTF-8"),
    "empty file": ("", "not valid JSON"),
    "a folder in the way": (None, "is a folder"),
    "floats as ids": ('{"Known": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "Unknown": [6]}', "integer class ids"),
    "bools as ids": ('{"Known": [true, false, 2, 3, 4, 5], "Unknown": [6]}', "integer class ids"),
    "4,000-digit id": ('{"Known": [' + "9" * 4000 + ', 1, 2, 3, 4, 5], "Unknown": [6]}', "outside 0..9"),
    "list, not object": ("[1, 2]", "'Known' and 'Unknown'"),
}


def write_split_file(path, content):
    """Write MALFORMED content at `path` (None: a folder in the way)."""
    if content is None:
        os.makedirs(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
