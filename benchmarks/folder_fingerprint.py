"""What reading an image folder's training files costs: listing and header check, and the
content fingerprint (every byte hashed) that keys its caches, against the old path-and-size one.

    python benchmarks/folder_fingerprint.py --images 3000 30000 [--side 28] [--repeats 3] [--keep DIR]

Writes Fashion-MNIST training images (Debian's dataset-fashion-mnist, else random 28x28 grey
images) as PNG files into DIR/<n>/{train,test}/<class>/, then times, per folder size, the
steps every training or evaluation run does when it opens the folder. `--side 224` enlarges
each image to 224 x 224 RGB with added noise (saved as JPEG, about photo-sized files), for the
cost per byte. Prints one JSON line
per size: seconds (min over the repeats) and the folder's bytes. The files are in the page
cache (just written): a first read from a cold disk adds its read time on top.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere


def fashion_images(n):
    """n 28x28 uint8 images and labels: the real Fashion-MNIST when installed, else noise."""
    import numpy as np  # here and below: after parsing, so that --help answers at once

    from datasets.sources import system_fashion_mnist

    path = os.path.join(system_fashion_mnist(), "train-images-idx3-ubyte.gz")
    if os.path.isfile(path):
        with gzip.open(path) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(os.path.join(system_fashion_mnist(), "train-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        return images[:n], labels[:n], "Fashion-MNIST"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10, "random"


def write_folder(root, n, side):
    import numpy as np
    from PIL import Image

    images, labels, kind = fashion_images(n)
    ext = ".png" if side == 28 else ".jpg"
    for part in ("train", "test"):
        for c in range(10):
            os.makedirs(os.path.join(root, part, f"class{c}"), exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (image, label) in enumerate(zip(images, labels)):
        image = Image.fromarray(image, "L")
        if side != 28:  # noise: JPEG would shrink a smooth enlarged image to a few kB
            big = np.asarray(image.resize((side, side)).convert("RGB"), dtype=np.int16)
            image = Image.fromarray(np.clip(big + rng.integers(-40, 41, big.shape), 0, 255).astype(np.uint8))
        image.save(os.path.join(root, "train", f"class{label}", f"{i}{ext}"))
    for c in range(10):  # a test image per class: the folder must be a whole data set
        Image.fromarray(images[0], "L").save(os.path.join(root, "test", f"class{c}", "0.png"))
    with open(os.path.join(root, "split.json"), "w") as f:
        json.dump({"Known": [f"class{c}" for c in range(6)], "Unknown": [f"class{c}" for c in range(6, 10)]}, f)
    return kind


def path_and_size(folder, dataset):
    """The fingerprint before content hashing: relative path, size and label of each file."""
    h = hashlib.sha1()
    for path, label in dataset.samples:
        h.update(f"{os.path.relpath(path, folder.root)}\0{os.path.getsize(path)}\0{label}\n".encode())
    return h.hexdigest()


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[3000, 30000])
    p.add_argument("--side", type=int, default=28, help="image side in pixels (default: 28, grey PNG)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", help="write the folders here and keep them (default: a temporary folder)")
    args = p.parse_args(argv)
    from datasets.folder import FolderData  # after parsing: --help answers at once

    base = args.keep or tempfile.mkdtemp(prefix="folder_fingerprint_")
    for n in args.images:
        root = os.path.join(base, f"{n}x{args.side}")
        kind = write_folder(root, n, args.side) if not os.path.isdir(root) else "existing"
        folder = FolderData(root, os.path.join(root, "split.json"), 32, 1)
        open_s, dataset = timed(lambda: folder.open(train=True), args.repeats)
        old_s, _ = timed(lambda: path_and_size(folder, dataset), args.repeats)
        new_s, _ = timed(lambda: folder.fingerprint(dataset), args.repeats)
        hashed = sum(os.path.getsize(path) for path, label in dataset.samples if label in folder.known)
        print(json.dumps({"images": n, "side": args.side, "content": kind, "known_files_hashed": sum(
            label in folder.known for _, label in dataset.samples), "bytes_hashed": hashed,
            "open_and_check_s": round(open_s, 3), "path_size_fingerprint_s": round(old_s, 3),
            "content_fingerprint_s": round(new_s, 3)}), flush=True)


if __name__ == "__main__":
    main()
