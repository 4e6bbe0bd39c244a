"""Download, unzip and arrange TinyImageNet for torchvision's ImageFolder: the zip keeps the
validation images in one folder (val/images, labels in val/val_annotations.txt); each moves to
val/<wnid>/, so that train/ and val/ list the same 200 classes in the same order.

    python scripts/setup_tinyimagenet.py [--data_root datasets/data] [--zip FILE]
"""
import argparse
import os
import shutil
import sys
import urllib.request
import zipfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
from core.files import atomic_write  # noqa: E402

TOP = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class SetupError(Exception):
    """A problem reported as one line on stderr (no traceback)."""


def _read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        raise SetupError(f"{path} is not UTF-8 text; extract the zip again") from None


def _planned_moves(root):
    """[(source, destination)] of every line of val/val_annotations.txt, checked: well-formed, plain
    names, each file listed once and present, no destination taken, no file of val/images left out
    (ImageFolder would take 'images' for a class). A class unknown to train/ is refused when read."""
    val = os.path.join(root, "val")
    images, ann_path = os.path.join(val, "images"), os.path.join(val, "val_annotations.txt")
    moves, first_line = [], {}
    for lineno, line in enumerate(_read_lines(ann_path), 1):
        if not line.strip():
            continue
        where, fields = f"{ann_path}:{lineno}", line.split("\t")
        if len(fields) < 2:
            raise SetupError(f"{where}: expected 'file<TAB>wnid...', got {line.strip()!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if any(n in ("", ".", "..") or "/" in n or os.sep in n or "\0" in n for n in (name, wnid)):
            raise SetupError(f"{where}: {name!r} / {wnid!r} is not a plain file / folder name")
        if first_line.setdefault(name, lineno) != lineno:
            raise SetupError(f"{where}: {name} is listed again (first on line {first_line[name]}); "
                             f"each image must be listed once, with one class")
        folder = os.path.join(val, wnid)
        if wnid == "images" or os.path.exists(folder) and not os.path.isdir(folder):
            raise SetupError(f"{where}: class folder {folder} clashes with a file of that name; extract the "
                             f"zip again into an empty folder")
        src, dst = os.path.join(images, name), os.path.join(folder, name)
        if not os.path.isfile(src):
            raise SetupError(f"{where}: names a missing file {src}")
        if os.path.lexists(dst):
            raise SetupError(f"{where}: {dst} exists already; remove {root} and run this again")
        moves.append((src, dst))
    left = sorted(set(os.listdir(images)) - set(first_line))
    if left:
        raise SetupError(f"{len(left)} file(s) in {images} are not in val_annotations.txt, e.g. {left[0]}")
    return moves


def sort_val_images(root):
    """Move root/val/images/<f> to root/val/<wnid>/<f>; the number moved. All is checked before a
    file moves; a move that fails midway (disk, permissions) puts the moved files back."""
    moves = _planned_moves(root)
    made = []
    try:
        for moved, (src, dst) in enumerate(moves):  # moved: how many are done before this one
            if not os.path.isdir(os.path.dirname(dst)):
                os.mkdir(os.path.dirname(dst))
                made.append(os.path.dirname(dst))
            os.replace(src, dst)
    except OSError:
        for src, dst in reversed(moves[:moved]):
            os.replace(dst, src)
        for folder in reversed(made):
            os.rmdir(folder)
        raise
    os.rmdir(os.path.join(root, "val", "images"))
    return len(moves)


def download(url, dest):
    """Fetch url into dest through a temporary file, so an interrupted download leaves nothing."""
    print(f"downloading {url} ...", flush=True)
    try:
        with atomic_write(dest) as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: malformed URL
        raise SetupError(f"could not download {url} ({e}); download it elsewhere and pass --zip PATH") from None


def unzip(zip_path, data_root):
    """Extract the tiny-imagenet-200/ entries of zip_path into data_root."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.namelist() if m.startswith(TOP + "/")]
            if not members:
                raise SetupError(f"{zip_path} has no {TOP}/ folder; is it the TinyImageNet zip?")
            print(f"extracting {zip_path} into {data_root} ...", flush=True)
            zf.extractall(data_root, members)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise SetupError(f"{zip_path} is not a valid zip file ({e}); download it again") from None


def setup(args):
    root = os.path.join(args.data_root, TOP)
    val = os.path.join(root, "val")
    if not (os.path.isdir(val) and not os.path.isdir(os.path.join(val, "images"))
            and any(os.path.isdir(os.path.join(val, d)) for d in os.listdir(val))):  # not set up yet
        os.makedirs(args.data_root, exist_ok=True)
        zip_path = args.zip or os.path.join(args.data_root, TOP + ".zip")  # a --zip is the user's to keep
        if args.zip and not os.path.isfile(args.zip):
            raise SetupError(f"--zip {args.zip}: no such file")
        if not args.zip and not os.path.isfile(zip_path):
            download(args.url, zip_path)
        unzip(zip_path, args.data_root)
        print(f"sorted {sort_val_images(root)} validation images into class folders")
        if not args.zip and not args.keep_zip:
            os.remove(zip_path)
    print(f"TinyImageNet is ready in {root}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", default=os.path.join("datasets", "data"),
                        help="folder that gets tiny-imagenet-200/ (default: datasets/data)")
    parser.add_argument("--zip", metavar="PATH", help="use this already-downloaded tiny-imagenet-200.zip instead")
    parser.add_argument("--url", default=URL, help=f"where to download the zip from (default: {URL})")
    parser.add_argument("--keep_zip", action="store_true", help="keep the downloaded zip afterwards")
    try:
        setup(parser.parse_args(argv))
        return 0
    except (SetupError, OSError) as e:  # OSError: disk full, permissions, a file missing from the zip
        print("setup_tinyimagenet: error: " + str(e).replace("\n", " "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
