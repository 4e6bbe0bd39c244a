"""Users' own images: `--dataset ImageFolder --data_root FOLDER --split_file SPLIT.json`.

FOLDER holds train/ and test/, each with one sub-folder of images per class (torchvision's ImageFolder
layout); SPLIT.json names the class folders: {"Known": ["cat", "dog"], "Unknown": ["fox"]}. Class ids
are positions in the sorted union of the folder names of train/ and test/, so unknown classes need no
training images. Every image is converted as `prepare_image` says, as predict.py converts new ones."""
import collections
import functools
import hashlib
import os
import re
import sys

from PIL import Image, UnidentifiedImageError
from torchvision import datasets as tvd
from torchvision import transforms as T

from datasets.names import FOLDER_DATASET
from datasets.safe_folder import SafeImageFolder
from datasets.splits import brief, read_split_json
from core.errors import UserError


def prepare_image(image, im_size, channels):
    """A PIL image -> grey (1 channel) or RGB (3), shorter side im_size, centre square cut out."""
    image = image.convert("L" if channels == 1 else "RGB")
    return T.CenterCrop(im_size)(T.Resize(im_size)(image))


def read_image(path, im_size, channels):
    """ImageFolder's loader (through functools.partial, which DataLoader workers can pickle)."""
    with open(path, "rb") as f:
        return prepare_image(Image.open(f), im_size, channels)


class _FixedClasses(SafeImageFolder):
    """ImageFolder whose class list is given (shared by train/ and test/), not read from one folder."""

    allow_empty = True  # a class may have no image in one of train/ and test/

    def __init__(self, root, classes, loader):
        self._classes = classes
        super().__init__(root, loader=loader)

    def find_classes(self, directory):
        return list(self._classes), {name: i for i, name in enumerate(self._classes)}


def _subfolders(path):
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise UserError(f"cannot list the image folder {path} ({e.strerror}); fix its permissions") from None


def _check_images(dataset, root):
    """Read each image's header once, so a broken file fails here, named, not mid-epoch; the modes and
    sizes met are kept on `dataset` for the start-up summary."""
    dataset.image_modes, dataset.image_sizes = collections.Counter(), set()
    for path, _ in dataset.samples:
        try:
            with Image.open(path) as image:
                dataset.image_modes[image.mode] += 1
                dataset.image_sizes.add(image.size)
        except Image.DecompressionBombError:
            raise UserError(f"image {path} has more pixels than PIL's safety limit ({Image.MAX_IMAGE_PIXELS} "
                            f"x 2); shrink or delete it") from None
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"cannot read image {path} ({type(e).__name__}); delete or replace it") from None
    if not dataset.samples:
        raise UserError(f"no image files under {root}/<class>/ (extensions: {', '.join(tvd.folder.IMG_EXTENSIONS)})")


class FolderData:
    """The class folders of one image folder and the split file naming known and unknown ones."""

    def __init__(self, root, split_file, im_size, channels):
        self.root, self.im_size, self.channels = root, im_size, channels
        parts = {p: os.path.join(root, p) for p in ("train", "test")}
        missing = [p for p in parts.values() if not os.path.isdir(p)]
        if missing:
            raise UserError(f"{FOLDER_DATASET}: no folder {missing[0]}; pass --data_root FOLDER holding "
                            f"train/ and test/, each with one sub-folder of images per class")
        self.train_classes, self.test_classes = _subfolders(parts["train"]), _subfolders(parts["test"])
        self.classes = sorted(set(self.train_classes) | set(self.test_classes))
        self.known_names, self.unknown_names = self._read_split(split_file)
        self.known = [self.classes.index(c) for c in self.known_names]
        self.unknown = [self.classes.index(c) for c in self.unknown_names]

    def _read_split(self, path):
        example = '{"Known": ["class_a", "class_b"], "Unknown": ["class_c"]}'
        if not path:
            raise UserError(f"--dataset {FOLDER_DATASET} needs --split_file SPLIT.json naming class folders, "
                            f"e.g. {example}")
        if not os.path.exists(path):
            raise UserError(f"split file {path} not found; write {example} there with the class folder names")
        known, unknown = read_split_json(path, "split file", f"fix it, e.g. {example}", "class folder names (strings)",
                                         lambda name: isinstance(name, str), example)
        test = os.path.join(self.root, "test")  # unknown classes without test images: left out, one warning each
        absent = [n for n in unknown if n not in self.test_classes]
        if len(absent) == len(unknown):
            raise UserError(f"Unknown classes {brief(absent)} in {path} have no folder under {test} "
                            f"(its class folders: {brief(self.test_classes)})")
        for name in absent:
            print(f"warning: unknown class {name!r} of {path} has no folder under {test}; it is left out "
                  f"of the evaluation", file=sys.stderr)
        unknown = [n for n in unknown if n not in absent]
        absent = [n for n in known if n not in self.train_classes]
        if absent:
            raise UserError(f"Known classes {brief(absent)} in {path} have no folder under "
                            f"{os.path.join(self.root, 'train')} (its class folders: {brief(self.train_classes)})")
        if len(known) < 2:
            raise UserError(f"{path} lists {len(known)} known class; open-set training needs at least 2")
        both = sorted(set(known) & set(unknown))
        if both:
            raise UserError(f"{path} lists classes {brief(both)} as both Known and Unknown")
        return known, unknown

    def list_images(self, part):
        """The images of train/ or test/ (`part`), listed without reading one."""
        loader = functools.partial(read_image, im_size=self.im_size, channels=self.channels)
        return _FixedClasses(os.path.join(self.root, part), self.classes, loader)

    def open(self, train):
        part = "train" if train else "test"
        dataset, folder = self.list_images(part), os.path.join(self.root, part)
        _check_images(dataset, folder)
        counts = collections.Counter(label for _, label in dataset.samples)
        if train:
            empty = [self.classes[c] for c in self.known if not counts[c]]
            if empty:
                raise UserError(f"known class folder(s) {brief(empty)} under {folder} hold no image file; "
                                f"add images or move the class to Unknown in the split file")
            return dataset
        for kind, ids in (("known", self.known), ("unknown", self.unknown)):  # both kinds need test images
            if not any(counts[c] for c in ids):
                raise UserError(f"no {kind} class has a test image under {folder} (class folders "
                                f"{brief([self.classes[c] for c in ids])}); open-set evaluation needs at least one")
        for kind, ids in (("known", self.known), ("unknown", self.unknown)):  # a class without: one warning
            for name in (self.classes[c] for c in ids if not counts[c]):
                where = os.path.join(folder, name)
                state = "holds no image file" if os.path.isdir(where) else "does not exist"
                print(f"warning: {kind} class {name!r} has no test images ({where} {state}); the evaluation "
                      f"goes on without it", file=sys.stderr)
        return dataset

    def cache_folder(self, cache_dir):
        """This folder's own folder in the cache folder `cache_dir`: ImageFolder/<its name>-<sha1 of its
        real path>/ (each cache is still checked against the labels and bytes it was made from)."""
        real = os.path.realpath(self.root)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(real))[:40] or "root"
        tag = hashlib.sha1(real.encode()).hexdigest()[:12]
        return os.path.join(cache_dir, FOLDER_DATASET, f"{name}-{tag}")

    def fingerprint(self, dataset):
        """sha1 of the known classes' training files (relative path, label, every byte): any change of an
        image's content, same name and size included, rebuilds the caches keyed on it."""
        h = hashlib.sha1()
        known = set(self.known)
        for path, label in dataset.samples:
            if label not in known:
                continue
            h.update(f"{os.path.relpath(path, self.root)}\0{label}\0".encode())
            try:
                with open(path, "rb") as f:
                    h.update(f"{os.fstat(f.fileno()).st_size}\n".encode())
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            except OSError as e:
                raise UserError(f"cannot read image {path} ({e.strerror}); delete or replace it") from None
        return h.hexdigest()
