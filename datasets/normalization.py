"""Per-trial normalization (mean, std per channel): the config's listed rows, else the statistics of
the known classes' training pixels, cached in <cache>/<dataset>/normalization/<trial>.json."""
import os
import sys

import numpy as np

from core.errors import UserError
from core.files import read_json
from core.values import is_finite_number, is_number
from datasets.cache import write_cache
from datasets.splits import brief, labels_fingerprint

FIRST_RELEASE_TRIALS = 5  # trials 5-9 of the paper's data sets are its first-release class splits
RAW_PIXELS = "raw-pixels"  # tag of computed normalization caches: stats of the files' own pixels


def listed_normalization(cfg, trial):
    """(mean, std) listed in the config for `trial`, or None. The rows are of the paper's first-release class
    splits (trials 5-9 here; the released weights'): trial 5 + t uses row t, trial t too, as the original."""
    listed = cfg.get("normalization")
    if not listed:
        return None
    for row in (trial, trial - FIRST_RELEASE_TRIALS):
        if 0 <= row < len(listed["mean"]) and len(listed["mean"][row]) == cfg["im_channels"]:
            return listed["mean"][row], listed["std"][row]
    return None


def raw_pixel_stats(chunks, channels):
    """Per-channel mean and (population) std on the 0-1 scale of uint8 images in chunks (n, H, W[, C]),
    as the original's get_data_stats; exact integer sums, so the chunking does not matter."""
    total, squares, count = np.zeros(channels, dtype=np.int64), np.zeros(channels, dtype=np.int64), 0
    for chunk in chunks:
        pixels = np.asarray(chunk).reshape(-1, channels).astype(np.int64)
        total += pixels.sum(0)
        squares += (pixels * pixels).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return [float(v) for v in mean / 255.0], [float(v) for v in std / 255.0]


def normalization_problem(mean, std, channels):
    """Why a mean/std pair cannot normalize `channels`-channel images (None when it can)."""
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or not all(is_number(v) for v in values):
            return f"{name} is not a list of numbers"
        if len(values) != channels:
            return f"{name} has {len(values)} value(s) for {channels}-channel images"
        if not all(is_finite_number(v) for v in values):
            return f"{name} is not finite"
    return None if all(v > 0 for v in std) else "a std is not above 0"


def _read_cache(path, key, channels):
    """(mean, std) of the cache at `path` when it was made from `key` and is valid, else None: an
    invalid cache gets one warning line, one made from other data is replaced without a word."""
    try:
        cached = read_json(path, "normalization cache", "recomputing it")
    except UserError as e:
        print(f"warning: {e}", file=sys.stderr)
        return None
    if not isinstance(cached, dict) or not {*key, "mean", "std"} <= set(cached):
        problem = f"it is not an object with {sorted({*key, 'mean', 'std'})}"
    elif any(cached[k] != v for k, v in key.items()):
        return None
    else:
        problem = normalization_problem(cached["mean"], cached["std"], channels)
    if problem:
        print(f"warning: normalization cache {path} is invalid ({problem}); recomputing it", file=sys.stderr)
        return None
    return cached["mean"], cached["std"]


def cached_normalization(dataset, trial, known, labels, im_size, compute, channels, folder, source=RAW_PIXELS):
    """Mean/std by `compute()`, cached in `folder` (None: not cached) and reused while the known classes,
    the labels, the image size (image folders are read at that size) and `source` all match."""
    path = None if folder is None else os.path.join(folder, "normalization", f"{trial}.json")
    key = {"Known": list(known), "im_size": im_size, "Fingerprint": labels_fingerprint(labels), "Source": source}
    cached = _read_cache(path, key, channels) if path is not None and os.path.exists(path) else None
    if cached is not None:
        return cached
    mean, std = compute()
    problem = normalization_problem(list(mean), list(std), channels)
    if problem:  # e.g. training images that are all one colour: dividing by a std of 0 gives NaN
        raise UserError(f"cannot normalize the training images of {dataset} trial {trial}: {problem} "
                        f"(mean {brief(list(mean))}, std {brief(list(std))}); check the images")
    if path is not None:
        write_cache({**key, "mean": mean, "std": std}, path)
    return mean, std
