"""The start-up summary of one trial's data, printed before training starts:

  data: ImageFolder trial 0: 18 train, 6 val images; test 9 known, 5 unknown; 3 known classes
  ('owl', 'cat', 'dog'), 2 unknown ('fox', 'yak'); images 20x28..64x48 (L 5, RGB 13, ...) -> 32x32
  RGB (shorter side resized to 32, centre cut); skipped 1 file that is not an image (e.g. cat/a.txt)"""
import collections
import os

import numpy as np

from datasets.sources import CHANNELS_FIRST

MODE_OF_CHANNELS = {1: "grey", 3: "RGB"}


def _names(names, limit=12):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _sizes(sizes):
    """'28x28' or '20x28..64x48' (smallest and largest area) of a set of (width, height)."""
    ordered = sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh))
    (w0, h0), (w1, h1) = ordered[0], ordered[-1]
    return f"{w0}x{h0}" if (w0, h0) == (w1, h1) else f"{w0}x{h0}..{w1}x{h1}"


def conversion(data):
    """'28x28 grey -> 32x32 grey (resized 28 -> 32)': the training images as stored (TinyImageNet's files
    are not opened before training) and as the network sees them."""
    size, channels, train = data.cfg["im_size"], data.cfg["im_channels"], data.train_set
    target = f"{size}x{size} {MODE_OF_CHANNELS[channels]}"
    if getattr(train, "image_modes", None) is not None:  # an image folder
        modes = ", ".join(f"{m} {n}" for m, n in sorted(train.image_modes.items()))
        return f"images {_sizes(train.image_sizes)} ({modes}) -> {target} (shorter side resized to {size}, centre cut)"
    if getattr(train, "data", None) is None:
        return f"images -> {target} (shorter side resized to {size}, centre cut)"
    shape = np.shape(train.data)
    if data.known_source in CHANNELS_FIRST:
        shape = (shape[0], *shape[2:], shape[1])
    height, width, stored = shape[1], shape[2], shape[3] if len(shape) > 3 else 1
    mode = MODE_OF_CHANNELS.get(stored, f"{stored} channels")
    changes = [f"resized {width} -> {size}"] if (width, height) != (size, size) else []
    if mode != MODE_OF_CHANNELS[channels]:
        changes.append(f"{mode} -> {channels} channel{'s' if channels > 1 else ''}")
    return f"images {width}x{height} {mode} -> {target}" + (f" ({', '.join(changes)})" if changes else "")


def summary_line(data):
    """The one line said before training starts. Test images are counted for image folders (a
    listing, no image read); the other data sets' official test sets are opened by evaluation only."""
    parts = [f"{len(data.train_idx)} train, {len(data.val_idx)} val images"]
    listing = data.folder.list_images("test") if data.folder is not None else None
    if listing is not None:
        counts = collections.Counter(label for _, label in listing.samples)
        parts[0] += f"; test {sum(counts[c] for c in data.known)} known, {sum(counts[c] for c in data.unknown)} unknown"
    parts.append(f"{len(data.known)} known classes ({_names(data.class_names)}), "  # label order, as results
                 f"{len(data.unknown)} unknown ({_names(data.unknown_names)})")
    parts.append(conversion(data))
    if listing is not None:
        left_out = [os.path.relpath(p, data.root) for p in [*data.train_set.strays, *listing.strays]]
        parts.append(f"skipped {len(left_out)} file(s) that are not images by name"
                     + (f" (e.g. {left_out[0]})" if left_out else ""))
    return f"data: {data.name} trial {data.trial}: " + "; ".join(parts)
