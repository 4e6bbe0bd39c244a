"""A checkpoint's calibration in X.calibration.json beside X.pth, keyed on the SHA-256 of its bytes: the scorers'
thresholds, what predict.py needs to treat new images as test images, CAC's anchor means and their data."""
import json
import os
import re
import sys

import numpy as np
import torch

from core.errors import os_error_cause
from core.files import atomic_write
from core.values import is_finite_number, is_whole_number
from datasets.normalization import normalization_problem
from datasets.splits import labels_fingerprint
from metrics import ACCEPT_RATE
from networks.weights import CAC, CROSS_ENTROPY, calibration_path
from scorers import CACScorers, CrossEntropyScorers

SCORERS = {CAC: CACScorers(), CROSS_ENTROPY: CrossEntropyScorers()}  # each method's scorers
NETWORK_KEYS = {"num_classes", "num_channels", "im_size", "dropout", "backbone", "pretrained"}


def anchor_data_key(data):
    """What the anchor means depend on besides the weights."""
    idx = np.ascontiguousarray(data.train_idx, dtype=np.int64)
    return {"dataset": data.name, "known": [int(c) for c in data.known],
            "train_labels": labels_fingerprint(data.train_labels[idx])["labels_sha1"],
            "train_idx": labels_fingerprint(idx)["labels_sha1"], "im_size": int(data.cfg["im_size"]),
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
            "anchor_flip": bool(data.cfg["anchor_flip"]), "source": data.source_fingerprint}


def calibration_record(digest, method, data, network, thresholds, anchors=None):
    """The calibration of the checkpoint whose bytes have SHA-256 `digest` (JSON: float64 round-trips exactly)."""
    record = {"checkpoint_sha256": digest, "method": method, "dataset": data.name, "trial": data.trial,
              "scorer": SCORERS[method].paper, "thresholds": {name: float(t) for name, t in thresholds.items()},
              "accept_rate": ACCEPT_RATE, "class_names": list(data.class_names),
              "known_classes": sorted(int(c) for c in data.known),
              "preprocessing": {"im_size": int(data.cfg["im_size"]), "im_channels": int(data.cfg["im_channels"]),
                                "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]},
              "network": dict(network)}
    if anchors is not None:
        record["anchor_means"] = {"means": np.asarray(anchors, np.float64).tolist(), "data": anchor_data_key(data)}
    return record


def calibration_problem(cal, method=None, num_classes=None):
    """What is wrong with a calibration (for a `method` network of `num_classes` classes, if given), or None."""
    if not isinstance(cal, dict):
        return f"it is {type(cal).__name__}, not a dict"
    if not isinstance(cal.get("method"), str) or cal["method"] not in SCORERS or method not in (None, cal["method"]):
        return f"method {cal.get('method')!r}, not {method or ' or '.join(SCORERS)}"
    thresholds, offered = cal.get("thresholds"), SCORERS[cal["method"]].names
    if not (isinstance(thresholds, dict) and thresholds and set(thresholds) <= set(offered)
            and all(map(is_finite_number, thresholds.values()))):
        return f"thresholds {thresholds!r} are not finite numbers for scorers of {', '.join(offered)}"
    if not isinstance(cal.get("scorer"), str) or cal["scorer"] not in thresholds:
        return f"scorer {cal.get('scorer')!r} has no threshold"
    if not (is_finite_number(cal.get("accept_rate")) and 0 < cal["accept_rate"] <= 1):
        return f"accept_rate {cal.get('accept_rate')!r} is not in (0, 1]"
    network, sizes = cal.get("network"), ("num_classes", "num_channels", "im_size")
    if not (isinstance(network, dict) and set(sizes) <= network.keys() <= NETWORK_KEYS):
        return f"network is not a dict of {', '.join(sorted(NETWORK_KEYS))}"
    if not all(is_whole_number(network[k]) and network[k] > 0 for k in sizes):
        return f"network {network!r} has a size that is not a positive integer"
    if "dropout" in network and not (is_finite_number(network["dropout"]) and 0 <= network["dropout"] < 1):
        return f"network dropout {network['dropout']!r}"
    if not isinstance(network.get("backbone", ""), str) or not isinstance(network.get("pretrained") or "", str):
        return f"network backbone {network.get('backbone')!r}, pretrained {network.get('pretrained')!r}"
    n = network["num_classes"]
    if num_classes not in (None, n):
        return f"a network of {n} classes, not {num_classes}"
    names = cal.get("class_names")
    if not (isinstance(names, list) and len(names) == n and all(isinstance(name, str) for name in names)):
        return f"class_names is not a list of {n} names"
    prep = cal.get("preprocessing")
    if not (isinstance(prep, dict) and {"im_size", "im_channels", "mean", "std"} <= prep.keys()):
        return "preprocessing is not a dict with im_size, im_channels, mean and std"
    shape = (prep["im_size"], prep["im_channels"])
    if not all(map(is_whole_number, shape)) or shape != (network["im_size"], network["num_channels"]) \
            or prep["im_channels"] not in (1, 3):
        return (f"preprocessing for {prep['im_size']!r} px x {prep['im_channels']!r} channel(s), network for "
                f"{network['im_size']} px x {network['num_channels']}")
    problem = normalization_problem(prep["mean"], prep["std"], prep["im_channels"])
    if problem or cal["method"] != CAC:
        return problem and f"preprocessing: {problem}"
    stored = cal.get("anchor_means")
    if not (isinstance(stored, dict) and isinstance(stored.get("data"), dict)):
        return "anchor_means is not a dict of the means and the data that made them"
    means = stored.get("means")
    if not (isinstance(means, list) and len(means) == n and all(
            isinstance(row, list) and len(row) == n and all(map(is_finite_number, row)) for row in means)):
        return f"anchor means are not {n} x {n} finite numbers"
    return None


def read_calibration(checkpoint, digest, method, num_classes):
    """(cal, None): the file beside `checkpoint`, made from its bytes; (None, None): none or stale; (None, why)."""
    path = calibration_path(checkpoint)
    if not os.path.lexists(path):
        return None, None
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):  # opening a named pipe waits
        return None, f"calibration {path} is not a regular file (a named pipe, socket or device)"
    try:
        with open(path, encoding="utf-8") as f:
            cal = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8, too long a number
        return None, f"calibration {path} cannot be read ({type(e).__name__}: {str(e)[:100]})"
    key = cal.get("checkpoint_sha256") if isinstance(cal, dict) else None
    if isinstance(key, str) and re.fullmatch("[0-9a-f]{64}", key) and key != digest:
        return None, None  # made from other weights: stale, not damaged
    problem = "checkpoint_sha256 is not a SHA-256" if key != digest else calibration_problem(cal, method, num_classes)
    return (None, f"calibration {path} is invalid ({problem})") if problem else (cal, None)


def write_calibration(checkpoint, record):
    """Write `record` beside `checkpoint`, all or nothing; the path, or None after a warning."""
    path = calibration_path(checkpoint)
    try:
        with atomic_write(path, "w") as f:
            f.write(json.dumps(record, indent=1, allow_nan=False) + "\n")
        return path
    except OSError as e:
        print(f"warning: could not write the calibration {path} {os_error_cause(e, path)}; it is made again next "
              f"time", file=sys.stderr)
        return None


def cached_anchor_means(calibration, data):
    """The anchor means of a valid calibration made from `data`, else None."""
    stored = (calibration or {}).get("anchor_means")
    if stored is None or stored["data"] != anchor_data_key(data):
        return None
    return torch.tensor(stored["means"], dtype=torch.float64)


def embedded_calibration(ckpt, method, num_classes):
    """The valid calibration an earlier version stored inside the checkpoint, in today's form; else None."""
    cal = ckpt.get("calibration")
    stored = cal.get("anchor_means") if isinstance(cal, dict) else None
    if isinstance(stored, dict) and torch.is_tensor(stored.get("means")) and stored["means"].is_floating_point():
        cal = {**cal, "anchor_means": {"means": stored["means"].double().tolist(), "data": stored.get("key")}}
    return cal if calibration_problem(cal, method, num_classes) is None else None
