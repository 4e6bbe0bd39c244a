"""Checkpoints: plain dicts {'net': state_dict, 'acc', 'epoch', + how the network was built}, written
atomically. Loading accepts the original code's files too (aliased layer names, `means` for `anchors`,
unused `covars`/`invcovars`), always with `weights_only=True`: a checkpoint can never run code."""
import hashlib
import io
import os
import pickle
import re
import warnings
import zipfile

import torch

from core.errors import FULL, UserError, os_error_cause
from core.files import atomic_write, check_file_writable

_ALIAS = re.compile(r"^encoder\.encoder[123]\.")  # the original registered each layer twice
_UNUSED = ("covars", "invcovars")  # Gaussian fits saved by the original, never used


def make_checkpoint(net, acc, epoch, config, method, dataset, trial, known_classes, args, git):
    """A best-checkpoint dict: the original's {'net', 'acc', 'epoch'} (weights under the original's layer
    names too) plus what rebuilds and explains the network. (...Last.pth is another schema: engine/continuing.py.)"""
    return {"net": net.state_dict_with_aliases(), "acc": acc, "epoch": epoch, "backbone": config.backbone,
            "network": config.as_dict(), "method": method, "dataset": dataset, "trial": trial,
            "known_classes": list(known_classes), "args": args, "git": git}


def save_checkpoint(state, path):
    """Write `state` to `path` all or nothing; a failed save is one UserError line. A full disk reaches
    here as torch's RuntimeError ("unexpected pos ...", "failed writing file"), which never mentions space."""
    check_file_writable(path, "give another --name", what="checkpoint ")
    try:
        with atomic_write(path) as f:
            torch.save(state, f)
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path} {os_error_cause(e, path)}; the previous file is intact; "
                        f"then run the command again") from None
    except RuntimeError as e:  # torch's words for a full disk
        raise UserError(f"cannot write checkpoint {path} ({' '.join(str(e).split())[:120]}); {FULL}; the previous "
                        f"file is intact; then run the command again") from None


def read_checkpoint(path, map_location="cpu", with_digest=False):
    """Load a checkpoint dict safely; UserError for a missing, corrupt or code-carrying file. `with_digest`: (dict,
    SHA-256 of the very bytes loaded), a calibration's key; only then is the whole file read into memory."""
    if not os.path.isfile(path):  # a named pipe that exists is not "not found"
        raise UserError(f"checkpoint {path} is not a regular file (a folder, a named pipe, a socket or a device)"
                        if os.path.exists(path) else f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read() if with_digest else f.read(2)  # 2 bytes: enough to tell a plain pickle
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol, then refuses it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(io.BytesIO(data) if with_digest else path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
            IndexError) as e:  # KeyError/IndexError: the weights-only unpickler on arbitrary bytes
        # weights_only names the callable it refused ("... GLOBAL posix.system ..."), or the opcode of
        # a plain pickle that torch.save files never use; anything else is damage
        refused = [line.strip()[:120] for line in str(e).splitlines() if "global" in line.lower()] or \
            re.findall(r"Unsupported class [\w.]+", str(e))  # torch before 2.4 names the class so
        unpickling = isinstance(e, pickle.UnpicklingError)  # `data`: the file, or its first 2 bytes
        plain_pickle = unpickling and len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5  # PROTO 2-5
        if unpickling and (refused or "Unsupported operand" in str(e) and plain_pickle):
            raise UserError(f"refusing to load {path}: it could run code ({(refused or ['a plain pickle'])[0]}), "
                            f"not just tensors; load only checkpoints you trust") from None
        raise UserError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
                        f"delete it and train again") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        raise UserError(f"checkpoint {path} is not a dict with a 'net' state dict")
    return (ckpt, hashlib.sha256(data).hexdigest()) if with_digest else ckpt


def load_checkpoint(path, net, ckpt=None):
    """Load `path` (or its dict `ckpt`, already read) into `net` and return the dict; a checkpoint that
    does not fit the network or holds NaN or inf weights is one UserError line naming it."""
    if ckpt is None:
        ckpt = read_checkpoint(path, map_location=next(net.parameters()).device)
    saved_backbone = ckpt.get("backbone", "cnn")  # the original's files are all the paper's CNN
    if saved_backbone != net.backbone:
        raise UserError(f"checkpoint {path} was trained with backbone {saved_backbone!r}, but the "
                        f"network is {net.backbone!r}: pass --backbone {saved_backbone}")
    own = net.state_dict()
    state = {k: v for k, v in ckpt["net"].items() if not _ALIAS.match(k) and k not in _UNUSED}
    means = state.pop("means", None)  # the released checkpoints' name for the anchors
    if "anchors" in own and "anchors" not in state and means is not None:
        state["anchors"] = means.double()
    check_fits(state, {k: v.shape for k, v in own.items()}, f"checkpoint {path}", f"a {type(net).__name__}",
               keys_fix="is it a CAC checkpoint loaded as cross-entropy, or the other way round?",
               shape_fix="use the checkpoint trained for this data set, or train one", describe=_describe_mismatch,
               values_fix="it cannot be used: train it again or use another checkpoint")
    net.load_state_dict(state)
    return ckpt


def check_fits(state, shapes, what, target, keys_fix, shape_fix, values_fix, describe=None):
    """Refuse in one UserError line tensors `state` that cannot load where `shapes` ({name: shape}) is
    expected: names missing or unexpected, a shape that differs (`describe(name, saved, wanted)` says
    why), NaN or inf values (refused now, not later as NaN scores or another library's error)."""
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise UserError(f"{what} does not fit {target}: missing {missing[:3]}, unexpected {unexpected[:3]} "
                        f"({len(missing)} and {len(unexpected)} keys): {keys_fix}")
    for name, tensor in state.items():
        saved, wanted = tuple(tensor.shape), tuple(shapes[name])
        if saved != wanted:
            why = f" ({describe(name, saved, wanted)})" if describe else ""
            raise UserError(f"{what} does not fit {target}: {name} is {saved} in the file but {wanted} here{why}: "
                            f"{shape_fix}")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(f"{what} holds non-finite weights (NaN or inf): {bad} of {tensor.numel()} values of "
                            f"{name}; {values_fix}")


def _describe_mismatch(name, saved, wanted):
    if name == "classify.weight" and saved[0] != wanted[0]:
        return f"{saved[0]} known classes in the file, {wanted[0]} in this dataset's config"
    if name == "classify.weight":
        return f"{saved[1]} features in the file, {wanted[1]} here: another image size"
    if name.endswith("conv1.weight") and saved[1] != wanted[1]:
        return f"{saved[1]} input channels in the file, {wanted[1]} in this dataset's config"
    if name == "anchors":
        return f"{saved[0]} known classes in the file, {wanted[0]} here"
    return "another architecture"
