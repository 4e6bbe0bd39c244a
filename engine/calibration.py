"""What evaluation stores in a checkpoint under `calibration`, for the next evaluation and predict.py,
and which scorers each method has (SCORERS: their thresholds are stored).

- the class-mean anchors of a CAC network (the pass over the training split is done once;
  `--recompute_anchors` forces it), with a key saying which weights and data made them;
- per scorer, the threshold that accepts 95% of the known validation images;
- what predict.py needs to treat a new image as the trial's test images were treated:
  class names, image size, channels, normalization, the network's arguments.
The rest of the checkpoint (the original's `net`, `acc`, `epoch`, ...) is left as it was.
A stored calibration is checked when read (`calibration_problem`): evaluation ignores an
invalid one with a warning and stores a new one; predict.py refuses it.
"""
import hashlib
import sys

import numpy as np
import torch

from datasets.normalization import normalization_problem
from datasets.splits import labels_fingerprint
from core.errors import UserError
from core.values import is_finite_number, is_whole_number
from networks.checkpoint import read_checkpoint, save_checkpoint
from networks.weights import CAC, CLOSED_SET
from scorers import CACScorers, CrossEntropyScorers

SCORERS = {CAC: CACScorers(), CLOSED_SET: CrossEntropyScorers()}  # each method's scorers
NETWORK_KEYS = {"num_classes", "num_channels", "im_size", "dropout", "backbone", "pretrained"}


def weights_digest(state):
    """sha1 of a state dict's tensors (names, shapes, bytes): changes whenever the weights do."""
    h = hashlib.sha1()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return h.hexdigest()


def anchor_key(data, ckpt):
    """Everything the anchor means depend on: the weights, the training images and their classes,
    how they are transformed, whether flipped copies are added."""
    idx = np.ascontiguousarray(data.train_idx, dtype=np.int64)
    return {"weights": weights_digest(ckpt["net"]), "dataset": data.name, "known": [int(c) for c in data.known],
            "train_labels": labels_fingerprint(data.train_labels[idx])["labels_sha1"],
            "train_idx": hashlib.sha1(idx.tobytes()).hexdigest(), "im_size": int(data.cfg["im_size"]),
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
            "anchor_flip": bool(data.cfg["anchor_flip"]), "source": data.source_fingerprint}


def cached_anchor_means(calibration, key, num_classes, path):
    """The stored anchor means when they were made from exactly `key`, else None; means that
    are not a finite num_classes x num_classes tensor are ignored with a warning."""
    stored = calibration.get("anchor_means") if isinstance(calibration, dict) else None
    if not isinstance(stored, dict) or not _same(stored.get("key"), key):
        return None
    problem = anchor_means_problem(stored, num_classes)
    if problem:
        print(f"warning: ignoring the anchor means stored in {path} ({problem}); computing them again",
              file=sys.stderr)
        return None
    return stored["means"].double()


def _positive_int(value):
    return is_whole_number(value) and value > 0


def anchor_means_problem(stored, num_classes):
    """What is wrong with a stored {"means": N x N tensor, "key": dict}, or None."""
    if not isinstance(stored, dict):
        return f"anchor_means is {type(stored).__name__}, not a dict"
    means = stored.get("means")
    if not torch.is_tensor(means) or not means.is_floating_point():
        return f"anchor_means holds {type(means).__name__}, not a tensor of floats"
    if num_classes is not None and tuple(means.shape) != (num_classes, num_classes):
        return f"anchor means of shape {tuple(means.shape)}, not {num_classes} x {num_classes}"
    if means.dim() != 2 or means.shape[0] != means.shape[1]:
        return f"anchor means of shape {tuple(means.shape)}, not N x N"
    if not bool(torch.isfinite(means).all()):
        return "anchor means that are NaN or inf"
    if not isinstance(stored.get("key"), dict):
        return "anchor means without the key saying what made them"
    return None


def _preprocessing_problem(prep, network):
    if not isinstance(prep, dict) or not {"im_size", "im_channels", "mean", "std"} <= prep.keys():
        return "preprocessing is not a dict with im_size, im_channels, mean and std"
    channels = prep["im_channels"]
    if not _positive_int(channels) or channels not in (1, 3) or not _positive_int(prep["im_size"]):
        return f"preprocessing im_size {prep['im_size']!r}, im_channels {channels!r}"
    problem = normalization_problem(prep["mean"], prep["std"], channels)
    if problem:
        return f"preprocessing: {problem}"
    if (prep["im_size"], channels) != (network["im_size"], network["num_channels"]):
        return (f"preprocessing for {prep['im_size']} px x {channels} channel(s), network for "
                f"{network['im_size']} px x {network['num_channels']}")
    return None


def _network_problem(network, num_classes):
    if not isinstance(network, dict) or not {"num_classes", "num_channels", "im_size"} <= network.keys() \
            or not network.keys() <= NETWORK_KEYS:
        return f"network is not a dict of {', '.join(sorted(NETWORK_KEYS))}"
    if not all(_positive_int(network[k]) for k in ("num_classes", "num_channels", "im_size")):
        return f"network {network!r} has a size that is not a positive integer"
    if "dropout" in network and not (is_finite_number(network["dropout"]) and 0 <= network["dropout"] < 1):
        return f"network dropout {network['dropout']!r}"
    if "backbone" in network and not isinstance(network["backbone"], str):
        return f"network backbone {network['backbone']!r}"
    if network.get("pretrained") is not None and not isinstance(network["pretrained"], str):
        return f"network pretrained {network['pretrained']!r}"
    if num_classes is not None and network["num_classes"] != num_classes:
        return f"a network of {network['num_classes']} classes, not {num_classes}"
    return None


def calibration_problem(cal, method=None, num_classes=None):
    """What is wrong with a stored calibration (type, keys, shapes, finite values, agreement
    with the network: `method`, `num_classes` when known), or None when it can be used."""
    if not isinstance(cal, dict):
        return f"it is {type(cal).__name__}, not a dict"
    if not isinstance(cal.get("method"), str) or cal["method"] not in SCORERS \
            or (method is not None and cal["method"] != method):
        return f"method {cal.get('method')!r}, not {method or ' or '.join(SCORERS)}"
    thresholds, offered = cal.get("thresholds"), SCORERS[cal["method"]].names
    if not isinstance(thresholds, dict) or not thresholds or not set(thresholds) <= set(offered) \
            or not all(map(is_finite_number, thresholds.values())):
        return f"thresholds {thresholds!r} are not finite numbers for scorers of {', '.join(offered)}"
    if not isinstance(cal.get("scorer"), str) or cal["scorer"] not in thresholds:
        return f"scorer {cal.get('scorer')!r} has no threshold"
    if not (is_finite_number(cal.get("accept_rate")) and 0 < cal["accept_rate"] <= 1):
        return f"accept_rate {cal.get('accept_rate')!r} is not in (0, 1]"
    problem = _network_problem(cal.get("network"), num_classes)
    if problem:
        return problem
    names = cal.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
            or len(names) != cal["network"]["num_classes"]:
        return f"class_names is not a list of {cal['network']['num_classes']} names"
    problem = _preprocessing_problem(cal.get("preprocessing"), cal["network"])
    if problem:
        return problem
    if cal["method"] == CAC:
        return anchor_means_problem(cal.get("anchor_means"), cal["network"]["num_classes"])
    return None


def stored_calibration(ckpt, path, method, num_classes):
    """The calibration `ckpt` holds, or None when it holds none or an invalid one (one warning:
    the evaluation then computes it again and stores it in place of the invalid one)."""
    cal = ckpt.get("calibration")
    if cal is None:
        return None
    problem = calibration_problem(cal, method, num_classes)
    if problem:
        print(f"warning: ignoring the calibration stored in {path} ({problem}); this evaluation computes "
              f"it again and stores it", file=sys.stderr)
        return None
    return cal


def calibration_record(method, data, network_kwargs, scorer, thresholds, accept_rate, anchors=None, key=None):
    record = {
        "method": method, "dataset": data.name, "trial": data.trial, "scorer": scorer,
        "thresholds": {name: float(t) for name, t in thresholds.items()}, "accept_rate": accept_rate,
        "class_names": list(data.class_names), "known_classes": sorted(int(c) for c in data.known),
        "preprocessing": {"im_size": int(data.cfg["im_size"]), "im_channels": int(data.cfg["im_channels"]),
                          "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]},
        "network": dict(network_kwargs),
    }
    if anchors is not None:
        record["anchor_means"] = {"means": torch.as_tensor(anchors, dtype=torch.float64).cpu(), "key": key}
    return record


def _same(a, b):
    """Equal in type, structure and value (tensors included), never raising on odd values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    return type(a) is type(b) and a == b


def store_calibration(path, record, current=None):
    """Put `record` into the checkpoint at `path` (atomically) unless `current` (the calibration
    the file holds now) is the same already. A failed write (a read-only file, a full disk:
    torch then raises RuntimeError "unexpected pos") is one warning line: the evaluation's
    results do not depend on it. Returns whether the file was rewritten."""
    if current is not None and _same(current, record):
        return False
    try:
        ckpt = read_checkpoint(path, map_location="cpu")
        ckpt["calibration"] = record
        save_checkpoint(ckpt, path)
        return True
    except (OSError, RuntimeError, UserError) as e:
        reason = (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip().splitlines()[0][:200]
        print(f"warning: could not store the calibration in {path} ({reason}); the evaluation's results are "
              f"still written, but predict.py needs the calibration: free space and evaluate again",
              file=sys.stderr)
        return False
