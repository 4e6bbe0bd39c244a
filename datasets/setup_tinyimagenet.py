"""Download, unzip and arrange TinyImageNet so torchvision's ImageFolder reads it.

The official zip puts all validation images in one folder (val/images) with
labels in val/val_annotations.txt; ImageFolder needs one folder per class, so
we move each val image to val/<wnid>/. Train and val then list the same 200
classes in the same (sorted) order.

    python datasets/setup_tinyimagenet.py [--data_root datasets/data] [--zip FILE]
"""
import argparse
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib

TOP = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class SetupError(Exception):
    """A problem reported as one line on stderr (no traceback)."""


def is_ready(root):
    """True when root/val holds class folders and no unsorted val/images folder."""
    val = os.path.join(root, "val")
    if not os.path.isdir(val) or os.path.isdir(os.path.join(val, "images")):
        return False
    return any(os.path.isdir(os.path.join(val, d)) for d in os.listdir(val))


def _read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        raise SetupError(f"{path} is not UTF-8 text; extract the zip again") from None


def _plain_name(name):
    """A file or folder name that stays inside its folder: no separator, not '.' or '..'."""
    return name not in ("", ".", "..") and "/" not in name and os.sep not in name and "\0" not in name


def _planned_moves(root):
    """[(source, destination)] for every line of val/val_annotations.txt, after checking every
    one: well-formed, a class of wnids.txt with a plain folder name, each file listed once and
    present, no destination taken, no file of val/images left out."""
    val = os.path.join(root, "val")
    images = os.path.join(val, "images")
    ann_path = os.path.join(val, "val_annotations.txt")
    if not os.path.isfile(ann_path):
        raise SetupError(f"missing {ann_path}")
    known = None  # wnids.txt, when present, lists every valid class
    wnids_path = os.path.join(root, "wnids.txt")
    if os.path.isfile(wnids_path):
        known = {line.strip() for line in _read_lines(wnids_path) if line.strip()}

    moves, first_line = [], {}
    for lineno, line in enumerate(_read_lines(ann_path), 1):
        if not line.strip():
            continue
        where = f"{ann_path}:{lineno}"
        fields = line.split("\t")
        if len(fields) < 2:
            raise SetupError(f"{where}: expected 'file<TAB>wnid...', got {line.strip()!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if not _plain_name(name) or not _plain_name(wnid):
            raise SetupError(f"{where}: {name!r} / {wnid!r} is not a plain file / folder name")
        if known is not None and wnid not in known:
            raise SetupError(f"{where}: class {wnid} is not in wnids.txt")
        if name in first_line:
            raise SetupError(f"{where}: {name} is listed again (first on line {first_line[name]}); "
                             f"each image must be listed once, with one class")
        first_line[name] = lineno
        if wnid == "images" or os.path.exists(os.path.join(val, wnid)) and not os.path.isdir(os.path.join(val, wnid)):
            raise SetupError(f"{where}: class folder {os.path.join(val, wnid)} clashes with a file of "
                             f"that name; extract the zip again into an empty folder")
        src, dst = os.path.join(images, name), os.path.join(val, wnid, name)
        if not os.path.isfile(src):
            raise SetupError(f"{where}: names a missing file {src}")
        if os.path.lexists(dst):
            raise SetupError(f"{where}: {dst} exists already; remove {root} and run this again")
        moves.append((src, dst))

    left = sorted(set(os.listdir(images)) - set(first_line))
    if left:  # ImageFolder would take 'images' for a class
        raise SetupError(f"{len(left)} file(s) in {images} are not in val_annotations.txt, e.g. {left[0]}")
    return moves


def sort_val_images(root):
    """Move root/val/images/<f> to root/val/<wnid>/<f> as val/val_annotations.txt says.

    Everything is checked before anything moves, so a bad annotation file leaves the folder
    untouched; a move that fails midway (disk, permissions) puts the moved files back.
    Returns the number of images moved.
    """
    moves = _planned_moves(root)
    made, done = [], []
    try:
        for src, dst in moves:
            folder = os.path.dirname(dst)
            if not os.path.isdir(folder):
                os.mkdir(folder)
                made.append(folder)
            os.replace(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            os.replace(dst, src)
        for folder in reversed(made):
            os.rmdir(folder)
        raise
    os.rmdir(os.path.join(root, "val", "images"))
    return len(moves)


def download(url, dest):
    """Fetch url into dest via a temporary file, so an interrupted download leaves nothing."""
    print(f"downloading {url} ...", flush=True)
    fd, tmp = tempfile.mkstemp(prefix=".tiny-imagenet-", suffix=".part", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, dest)
    except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: malformed URL
        raise SetupError(f"could not download {url} ({e}); download it elsewhere and pass --zip PATH") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    data_root = args.data_root
    root = os.path.join(data_root, TOP)
    if is_ready(root):
        print(f"TinyImageNet is ready in {root}")
        return
    os.makedirs(data_root, exist_ok=True)

    # a zip passed by the user is theirs to keep; one we found or fetched is ours
    if args.zip:
        if not os.path.isfile(args.zip):
            raise SetupError(f"--zip {args.zip}: no such file")
        zip_path, ours = args.zip, False
    else:
        zip_path, ours = os.path.join(data_root, TOP + ".zip"), True
        if not os.path.isfile(zip_path):
            download(args.url, zip_path)

    unzip(zip_path, data_root)
    n = sort_val_images(root)
    print(f"sorted {n} validation images into class folders")
    if ours and not args.keep_zip:
        os.remove(zip_path)
    print(f"TinyImageNet is ready in {root}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", default=os.path.join("datasets", "data"),
                        help="folder that gets tiny-imagenet-200/ (default: datasets/data)")
    parser.add_argument("--zip", metavar="PATH",
                        help="use this already-downloaded tiny-imagenet-200.zip instead of downloading")
    parser.add_argument("--url", default=URL, help=f"where to download the zip from (default: {URL})")
    parser.add_argument("--keep_zip", action="store_true", help="keep the downloaded zip afterwards")
    args = parser.parse_args(argv)
    try:
        setup(args)
    except (SetupError, OSError) as e:  # OSError: disk full, permissions, ...
        msg = str(e).replace("\n", " ")  # keep it to one line
        print(f"setup_tinyimagenet: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
