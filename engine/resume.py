"""The `...Last.pth` file of an interrupted run: what it holds, its checks, and reading it back.

After every epoch, and when SIGINT or SIGTERM stops a run after its current step, the
training loop (engine/state.py) saves
`networks/weights/<dataset>/<dataset>_<trial>_<name><Method>Last.pth`: network, optimizer,
epoch, batches done in it, phase (-r or not), the epochs planned, best values so far, the
epoch's partial training sums, and every random state (Python, NumPy, torch CPU and CUDA,
each DataLoader generator) both at the start of the epoch and at the moment of saving.
`--continue` reads it here; engine/state.py replays the stopped epoch's first batches and
goes on: with --seed on CPU the result equals the uninterrupted run's, bit for bit.

Under torchrun those are rank 0's; `ranks` holds the same four (rng, epoch_rng, train_sums,
seen) of every other rank (engine/rank_states.py gathers and hands them back), `world` their
count. Where the saved states cannot be put back (another device type, world size or
pipeline) rank_states.py re-derives them and says so in one line (docs/multi_gpu.md).
"""
import random

import numpy as np
import torch

from core.errors import UserError
from core.values import is_number, is_whole_number
from networks.checkpoint import read_checkpoint


def rng_state(generators, device=None):
    """Every random state a run draws from, as tensors and plain Python values (so that a
    weights_only load reads it back); `generators` are the torch.Generators of the data;
    `cuda`: the generator of this process's own CUDA device (none on a CPU run)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    on_cuda = device is not None and device.type == "cuda"
    return {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached],
            "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(device)] if on_cuda else [],
            "generators": [g.get_state() for g in generators]}


def generators_fit(saved, generators):
    """Whether the saved data generator states `saved` can go back into `generators`: as many,
    each of the same kind (a CUDA generator's state is 16 bytes, a CPU one's 5,056)."""
    return len(saved) == len(generators) and all(
        s.shape == g.get_state().shape for s, g in zip(saved, generators))


def set_rng_state(state, generators, device=None, data=True):
    """Put back what rng_state saved; the data `generators` too when `data` (they must fit:
    generators_fit). A CUDA state goes back only to a CUDA run (where none was saved the
    CUDA generator stays as --seed and the rank seeded it)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    if data:
        for generator, saved in zip(generators, state["generators"]):
            generator.set_state(saved)


def interrupted_state(net, optimizer, epoch, step, end_epoch, phase, best, ranks, backbone, method, args, log_size,
                      device, pipeline):
    """The ...Last.pth dict (key order as saved since the first version). `epoch`, `step`: the
    next batch to train is batch step + 1 of epoch `epoch`; `ranks`: each rank's dict of
    train_sums, seen (that epoch's sums and image count so far; None, 0 after a whole epoch),
    rng and epoch_rng, rank 0 first; `log_size`: metrics.jsonl's bytes; `device` (its type) and
    `pipeline` (the data's) say where it was saved."""
    first = ranks[0]
    return {"net": net, "optimizer": optimizer, "epoch": epoch, "step": step, "end_epoch": end_epoch,
            "phase": phase, "best": best, "train_sums": first["train_sums"], "seen": first["seen"],
            "rng": first["rng"], "epoch_rng": first["epoch_rng"], "backbone": backbone, "method": method,
            "args": args, "log_size": log_size, "device": device, "pipeline": pipeline,
            "world": len(ranks), "ranks": ranks[1:]}


RESTART = ("it is damaged or from another version of this code: start the run again without --continue, "
           "with --overwrite")

# what --continue reads from ...Last.pth, and the type each entry must have: the head says which
# run it is (checked first, for the clearest message), the rest restores it
STATE_HEAD = {"phase": int, "epoch": int, "end_epoch": int, "step": int, "args": dict}
STATE_REST = {"seen": int, "optimizer": dict, "best": dict, "rng": dict, "epoch_rng": dict}
RNG_KEYS = ("python", "numpy", "torch", "cuda", "generators")
PHASES = ("a first run (no -r)", "a resumed run (-r)")


def _refuse(path, what):
    raise UserError(f"{path} is not a usable interrupted-run state ({what}); {RESTART}")


def _check_types(state, path, types):
    for key, kind in types.items():
        value = state.get(key)
        if value is None:
            _refuse(path, f"no {key!r}")
        if not isinstance(value, kind) or (kind is int and not is_whole_number(value)):
            _refuse(path, f"{key!r} is a {type(value).__name__}, not a {kind.__name__}")


def check_state_head(state, path):
    """Phase, epochs and arguments of a ...Last.pth: present, of the right type, in range."""
    _check_types(state, path, STATE_HEAD)
    if state["phase"] not in (0, 1):
        _refuse(path, f"unknown phase {state['phase']} (0: first run, 1: -r)")
    if not 0 <= state["epoch"] <= state["end_epoch"] or state["step"] < 0:
        _refuse(path, f"epoch {state['epoch']}, step {state['step']}, end_epoch {state['end_epoch']}")


def check_state(state, path):
    """Refuse, in one line, a ...Last.pth that --continue cannot restore: an entry missing or of
    the wrong type, partial sums missing mid-epoch, random states without their parts."""
    _check_types(state, path, STATE_REST)
    if state["seen"] < 0:
        _refuse(path, f"'seen' is {state['seen']}")
    if state["step"] > 0 and not isinstance(state.get("train_sums"), torch.Tensor):
        _refuse(path, "a stop mid-epoch without its partial sums 'train_sums'")
    if not all(is_number(v) for v in state["best"].values()):  # inf: no best value yet
        _refuse(path, "'best' holds a value that is not a number")
    ranks = state.get("ranks", [])  # older states: one process
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks):
        _refuse(path, "'ranks' is not a list of per-rank states")
    for holder in [state, *ranks]:
        for key in ("rng", "epoch_rng"):
            rng = holder.get(key)
            if not isinstance(rng, dict) or any(k not in rng for k in RNG_KEYS) or \
                    not isinstance(rng["generators"], list):
                _refuse(path, f"{key!r} lacks one of {', '.join(RNG_KEYS)}")
    if not isinstance(state["optimizer"].get("state"), dict) or \
            not isinstance(state["optimizer"].get("param_groups"), list):
        _refuse(path, "'optimizer' is not an optimizer's state dict")
    size = state.get("log_size", 0)
    if not is_whole_number(size) or size < 0:
        _refuse(path, f"'log_size' is {size!r}")


def read_interrupted(path, phase, args, must_match):
    """The ...Last.pth at `path` that `--continue` in phase `phase` (0: first run, 1: -r) with
    `args` can pick up, checked; `must_match`: the arguments it must have been saved with
    (those that change what is computed, such as the loss), as the calling script names them."""
    try:
        state = read_checkpoint(path)
    except UserError as e:
        raise UserError(f"{e}; --continue needs the state of an interrupted run (written after each "
                        f"epoch): start it without --continue") from None
    check_state_head(state, path)
    if state["phase"] != phase:
        raise UserError(f"{path} holds {PHASES[state['phase']]} but this command starts "
                        f"{PHASES[phase]}: {'add' if not args.resume else 'drop'} -r to continue it")
    saved_args = state["args"]
    for key in must_match:  # a change would silently make another run
        if key in saved_args and saved_args[key] != getattr(args, key, None):
            saved, given = saved_args[key], getattr(args, key, None)
            if saved is None:  # an override the run did not have (its config's value)
                raise UserError(f"{path} was trained without --{key}, this command gives --{key} {given}: "
                                f"continue it without --{key}")
            raise UserError(f"{path} was trained with --{key} {saved}, this command says "
                            f"{'nothing' if given is None else given}: continue it with --{key} {saved}")
    if state["epoch"] >= state["end_epoch"]:
        raise UserError(f"{path}: that run finished all its epochs (to {state['end_epoch'] - 1}); "
                        f"nothing to continue: start the next phase with -r, or evaluate")
    check_state(state, path)
    return state
