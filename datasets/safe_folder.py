"""torchvision's ImageFolder made safe against links (SafeImageFolder): the same samples in the
same order, except that each real folder and each real file is read once however links point,
and names that are not plain files (a named pipe, a device) are skipped with a warning; files
that are not images by their name are left out as torchvision does, and listed in `strays`."""
import os
import stat
import sys

from torchvision import datasets as tvd

from core.errors import UserError


def _identity(st):
    return st.st_dev, st.st_ino


class _Walk:
    """The folders and files under one image folder, links followed, each real folder and each
    real file taken once: os.walk(followlinks=True), which torchvision uses, goes round a link
    to a parent folder until the OS refuses (40 times), reading those images again each time."""

    def __init__(self, root):
        self.root = root
        self.claimed_dirs, self.claimed_files = set(), set()
        self.repeated, self.not_files = [], []  # paths skipped, for one warning each

    def claim_dir(self, path):
        """True the first time the real folder behind `path` is met."""
        try:
            ident = _identity(os.stat(path))
        except OSError:
            return False  # a dangling or looping link: nothing to read there
        if ident in self.claimed_dirs:
            self.repeated.append(path)
            return False
        self.claimed_dirs.add(ident)
        return True

    def files(self, top):
        """(folder, sorted file names) of `top` and the folders below it, in os.walk's
        top-down order; a file name is kept whatever it is (the caller filters and checks)."""
        found, stack = [], [top]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                raise UserError(f"cannot list the image folder {folder} ({e.strerror}); fix its "
                                f"permissions or remove it") from None
            names, below = [], []
            for entry in entries:
                if entry.is_dir():  # follows links, like os.walk(followlinks=True)
                    if self.claim_dir(entry.path):
                        below.append(entry.path)
                else:
                    names.append(entry.name)
            found.append((folder, names))
            stack.extend(reversed(below))
        return found

    def claim_file(self, path):
        """True the first time the real file behind `path` is met, and it is a plain file (a
        named pipe or a device would hang or never end). A file that cannot be looked at is
        kept: reading it fails later with a message naming it."""
        try:
            st = os.stat(path)
        except OSError:
            return True
        if not stat.S_ISREG(st.st_mode):
            self.not_files.append(path)
            return False
        if _identity(st) in self.claimed_files:
            self.repeated.append(path)
            return False
        self.claimed_files.add(_identity(st))
        return True

    def warn(self):
        if self.repeated:
            print(f"warning: {self.root}: skipped {len(self.repeated)} folder(s) or file(s) reached a second "
                  f"time through links (e.g. {os.path.relpath(self.repeated[0], self.root)}); each image is "
                  f"read once", file=sys.stderr)
        if self.not_files:
            print(f"warning: {self.root}: skipped {len(self.not_files)} image name(s) that are not plain files "
                  f"(e.g. {os.path.relpath(self.not_files[0], self.root)})", file=sys.stderr)


class SafeImageFolder(tvd.ImageFolder):
    """torchvision's ImageFolder, the same samples in the same order, except that each real
    folder and each real file is read once however links point (see _Walk)."""

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        if is_valid_file is None:
            def is_valid_file(path):
                return tvd.folder.has_file_allowed_extension(path, extensions)
        self.strays = []  # files under the class folders that are not images by their name
        walk = _Walk(directory)
        walk.claim_dir(directory)  # a link back to the top is a loop, not more images
        classes = [c for c in sorted(class_to_idx) if os.path.isdir(os.path.join(directory, c))]
        # the class folders are claimed first: a link inside one class to another class's folder
        # must not move that class's images under the first one's label
        classes = [c for c in classes if walk.claim_dir(os.path.join(directory, c))]
        samples, empty = [], []
        for target_class in classes:
            before = len(samples)
            for folder, names in sorted(walk.files(os.path.join(directory, target_class))):
                for name in names:
                    path = os.path.join(folder, name)
                    if not is_valid_file(path):
                        self.strays.append(path)  # not an image file name: left out (counted)
                    elif walk.claim_file(path):
                        samples.append((path, class_to_idx[target_class]))
            if len(samples) == before:
                empty.append(target_class)
        walk.warn()
        missing = sorted(set(class_to_idx) - set(classes) | set(empty))
        if missing and not allow_empty:
            raise UserError(f"no image files in the class folder(s) {', '.join(missing)} under {directory} "
                            f"(extensions: {', '.join(tvd.folder.IMG_EXTENSIONS)})")
        return samples
