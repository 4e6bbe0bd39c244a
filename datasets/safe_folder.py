"""torchvision's ImageFolder made safe against links (SafeImageFolder): the same samples in the same
order, except that each real folder and file is read once however links point (torchvision's
os.walk goes round a link to a parent folder 40 times, reading those images again each time), and
names that are not plain files (a named pipe would hang) are skipped with a warning. Files that are
not images by their name are left out as torchvision does, and listed in `strays`."""
import os
import stat
import sys

from torchvision import datasets as tvd

from core.errors import UserError


def _refuse_listing(error):
    raise UserError(f"cannot list the image folder {error.filename} ({error.strerror}); fix its permissions or "
                    f"remove it") from None


class SafeImageFolder(tvd.ImageFolder):
    allow_empty = False  # True in a subclass: class folders may be empty (torchvision < 0.18 passes no allow_empty)

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        is_valid_file = is_valid_file or (lambda path: tvd.folder.has_file_allowed_extension(path, extensions))
        seen, repeated, not_files, self.strays = set(), [], [], []

        def first_time(path, folder):
            """True the first time the real folder (or plain file) behind `path` is met. A folder
            that cannot be looked at has nothing to read; a file is kept, to fail later, named."""
            try:
                st = os.stat(path)
            except OSError:
                return not folder
            if not folder and not stat.S_ISREG(st.st_mode):
                not_files.append(path)
                return False
            if (st.st_dev, st.st_ino) in seen:
                repeated.append(path)
                return False
            seen.add((st.st_dev, st.st_ino))
            return True

        first_time(directory, True)  # a link back to the top is a loop, not more images
        # the class folders are claimed first: a link inside one class to another class's folder
        # must not move that class's images under the first one's label
        classes = [c for c in sorted(class_to_idx) if os.path.isdir(os.path.join(directory, c))
                   and first_time(os.path.join(directory, c), True)]
        samples, empty = [], []
        for target_class in classes:
            before, found = len(samples), []
            for folder, subfolders, names in os.walk(os.path.join(directory, target_class), followlinks=True,
                                                     onerror=_refuse_listing):
                subfolders[:] = [d for d in sorted(subfolders) if first_time(os.path.join(folder, d), True)]
                found.append((folder, sorted(names)))
            for folder, names in sorted(found):  # torchvision's order: sorted(os.walk(...))
                for path in (os.path.join(folder, name) for name in names):
                    if not is_valid_file(path):
                        self.strays.append(path)  # not an image file name: left out (counted)
                    elif first_time(path, False):
                        samples.append((path, class_to_idx[target_class]))
            if len(samples) == before:
                empty.append(target_class)
        if repeated:
            print(f"warning: {directory}: skipped {len(repeated)} folder(s) or file(s) reached a second time "
                  f"through links (e.g. {os.path.relpath(repeated[0], directory)}); each image is read once",
                  file=sys.stderr)
        if not_files:
            print(f"warning: {directory}: skipped {len(not_files)} image name(s) that are not plain files "
                  f"(e.g. {os.path.relpath(not_files[0], directory)})", file=sys.stderr)
        missing = sorted(set(class_to_idx) - set(classes) | set(empty))
        if missing and not (allow_empty or self.allow_empty):
            raise UserError(f"no image files in the class folder(s) {', '.join(missing)} under {directory} "
                            f"(extensions: {', '.join(tvd.folder.IMG_EXTENSIONS)})")
        return samples
