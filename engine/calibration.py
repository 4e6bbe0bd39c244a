"""What evaluation stores in a checkpoint under `calibration`, for the next evaluation and predict.py.

- the class-mean anchors of a CAC network (the pass over the training split is done once;
  `--recompute_anchors` forces it), with a key saying which weights and data made them;
- per scorer, the threshold that accepts 95% of the known validation images;
- what predict.py needs to treat a new image as the trial's test images were treated:
  class names, image size, channels, normalization, the network's arguments.
The rest of the checkpoint (the original's `net`, `acc`, `epoch`, ...) is left as it was.
"""
import hashlib
import sys

import numpy as np
import torch

from datasets.splits import labels_fingerprint
from networks.checkpoint import read_checkpoint, save_checkpoint


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


def cached_anchor_means(ckpt, key):
    """The stored anchor means when they were made from exactly `key`, else None."""
    stored = (ckpt.get("calibration") or {}).get("anchor_means")
    if isinstance(stored, dict) and stored.get("key") == key and torch.is_tensor(stored.get("means")):
        return stored["means"].double()
    return None


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
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    return type(a) is type(b) and a == b


def store_calibration(path, record, current=None):
    """Put `record` into the checkpoint at `path` (atomically) unless `current` (the calibration
    the file holds now) is the same already; a read-only file only warns."""
    if current is not None and _same(current, record):
        return False
    try:
        ckpt = read_checkpoint(path, map_location="cpu")
        ckpt["calibration"] = record
        save_checkpoint(ckpt, path)
        return True
    except OSError as e:
        print(f"warning: could not store the calibration in {path} ({e.strerror}); evaluation "
              f"results are unaffected, but predict.py will need --threshold", file=sys.stderr)
        return False
