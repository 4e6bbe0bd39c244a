"""Continuing an interrupted run (`--continue`) from its ...Last.pth, saved before the first epoch and after
each, and the line a stop prints. A stop loses at most the epoch in progress; on a CPU the continued run
equals the uninterrupted one bit for bit; what cannot be put back (device, process count, pipeline) is re-derived."""
import os
import random
import shlex
import sys

import numpy as np
import torch

from core.errors import UserError
from core.values import is_number, is_whole_number
from engine.loop import all_finite
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

RESTART = "start the run again without --continue, with --overwrite"
PHASES = ("a first run (no -r)", "a second phase (-r)")
# what every ...Last.pth holds, with its type: which run it is, then what restores it
HEAD_TYPES = {"phase": int, "epoch": int, "end_epoch": int, "args": dict}
REST_TYPES = {"optimizer": dict, "best": dict, "rng": dict}
RNG_KEYS = ("python", "numpy", "torch", "cuda", "generators")
# arguments that may differ when continuing: where and how fast it runs, its name (the file gives it)
MAY_DIFFER = {"continue_run", "overwrite", "device", "workers", "pipeline", "data_root", "no_download", "cache_dir",
              "tensorboard", "amp", "compile", "sync_bn", "tf32", "name", "drop_last", "augment_batches"}


def rng_state(generators, device):
    """Every random state this process draws from (`generators`: the loaders'), in types weights_only loads."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
    return {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
            "generators": [g.get_state() for g in generators]}


def set_rng_state(state, generators, device, data=True):
    """Put back what rng_state saved (a CUDA state only on a CUDA run; the data generators when `data`)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    for generator, saved in zip(generators if data else [], state["generators"]):
        generator.set_state(saved)


def _check_types(state, path, types):
    for key, kind in types.items():
        value = state.get(key)
        if not isinstance(value, kind) or (kind is int and not is_whole_number(value)):
            raise UserError(f"{path} is not a usable interrupted-run state ({key!r} is missing or not "
                            f"{'a whole number' if kind is int else 'a dict'}); {RESTART}")


def read_last_state(path, phase, args):
    """The ...Last.pth at `path`, checked for `--continue` of `args` in `phase` (every argument but MAY_DIFFER)."""
    try:
        state = read_checkpoint(path)
    except UserError as e:
        raise UserError(f"{e}; --continue needs the state of an interrupted run: start it without --continue") from None
    _check_types(state, path, HEAD_TYPES)
    if state["phase"] not in (0, 1):
        raise UserError(f"{path} holds an unknown phase {state['phase']!r}; {RESTART}")
    if state["phase"] != phase:
        raise UserError(f"{path} holds {PHASES[state['phase']]} but this command starts {PHASES[phase]}: "
                        f"{'add' if state['phase'] else 'drop'} -r to continue it")
    if state.get("step", 0):
        raise UserError(f"{path} was saved in the middle of epoch {state['epoch']} by an earlier version of this "
                        f"code, which this one cannot continue: continue it with that version, or {RESTART}")
    saved, given = state["args"], vars(args)
    for key in [k for k in saved if k not in MAY_DIFFER and k != "resume" and saved[k] != given.get(k)]:
        flag = f"--{key}"
        was = f"with {flag} {saved[key]}" if saved[key] is not None else f"without {flag}"
        gives = f"no {flag}" if given.get(key) is None else f"{flag} {given[key]}"
        raise UserError(f"{path} was trained {was}, this command gives {gives}: continue it {was}")
    if state["epoch"] >= state["end_epoch"]:
        raise UserError(f"{path}: that run finished all its epochs (to {state['end_epoch'] - 1}); nothing to "
                        f"continue: start the next phase with -r, or evaluate")
    _check_types(state, path, REST_TYPES)
    ranks = [state["rng"], *state.get("ranks", [])]
    if not all(isinstance(r, dict) and all(k in r for k in RNG_KEYS) for r in ranks) or \
            not all(is_number(v) for v in state["best"].values()):
        raise UserError(f"{path} is not a usable interrupted-run state (its random states or best values are "
                        f"damaged); {RESTART}")
    return state


def restore_random_states(state, rank, world, generators, device, seed):
    """Put back this process's random states (data generators: rank 0's, re-seeded if unfit); returns what changed."""
    ranks = [state["rng"], *state.get("ranks", [])]
    own = ranks[rank] if rank < len(ranks) else {**ranks[0], "torch": torch.get_rng_state(), "cuda": []}
    saved = ranks[0]["generators"]  # they fit when as many, of the same kind (CUDA: 16 bytes, CPU: 5,056)
    fits = len(saved) == len(generators) and all(s.shape == g.get_state().shape for s, g in zip(saved, generators))
    set_rng_state({**own, "generators": saved}, generators, device, data=fits)
    changed = []
    if state.get("device", device.type) != device.type:
        changed.append(f"saved on {state['device']}, continued on {device.type}: the CUDA generator "
                       f"{'is not used' if device.type != 'cuda' else 'starts from --seed + rank'}")
    if state.get("world", 1) != world:
        changed.append(f"saved by {state.get('world', 1)} process(es), continued by {world}: a rank that was not "
                       f"saved draws its dropout from --seed + rank")
    if not fits:
        for i, generator in enumerate(generators):
            generator.manual_seed((seed * 1_000_003 + state["epoch"] * 101 + i) % 2**63)
        changed.append(f"the data generators ({state.get('pipeline')} pipeline on {state.get('device')}) do not "
                       f"fit this run's: re-seeded from --seed and the epoch, so epoch {state['epoch']} draws "
                       f"another batch order")
    return changed


def save_last(run, next_epoch):
    """Write `run`'s ...Last.pth (rank 0, every rank's random states) from which `next_epoch` starts; returns it."""
    if not all_finite(list(run.net.parameters())):  # one check of every weight, in a few launches
        raise UserError(f"the network's weights became non-finite by epoch {next_epoch}; {run.last} was not "
                        f"written from them: lower the learning rate or check the data")
    rngs = run.accel.gather(rng_state(run.generators, run.device))  # every rank's, on rank 0
    if run.is_main:
        state = {"net": run.net.state_dict(), "optimizer": run.optimizer.state_dict(), "epoch": next_epoch,
                 "end_epoch": run.epochs.stop, "phase": run.phase, "best": dict(run.best), "rng": rngs[0],
                 "ranks": rngs[1:], "world": len(rngs), "args": vars(run.args), "log_size": run.log_size(),
                 "device": run.device.type, "pipeline": run.pipeline, "backbone": run.args.backbone,
                 "method": run.method}
        if run.scheduler is not None:
            state["scheduler"] = run.scheduler.state_dict()
        save_checkpoint(state, run.last)
    return next_epoch


def restore(run):
    """--continue: put `run`'s ...Last.pth back into it and say what was re-derived; returns the state read."""
    state = read_last_state(run.last, run.phase, run.args)
    load_checkpoint(run.last, run.net, state)  # checks backbone, class and channel counts
    try:
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scheduler is not None:
            run.scheduler.load_state_dict(state["scheduler"])
        changed = restore_random_states(state, run.accel.rank, run.accel.world, run.generators, run.device,
                                        run.args.seed)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise UserError(f"{run.last}: its optimizer, schedule or random state does not fit this run "
                        f"({type(e).__name__}: {str(e)[:100]}); {RESTART}") from None
    run.best.update(state["best"])
    if run.is_main:
        print(f"continuing {run.last}: epochs {state['epoch']}-{state['end_epoch'] - 1}", flush=True)
        if changed:
            print(f"--continue re-derives what it cannot restore: {'; '.join(changed)}", flush=True)
    return state


def stop_message(run, name):
    """Where `run`, stopped by signal `name`, stands, and the command that continues it."""
    if run.saved_epoch is None:
        return f"{name} before the first epoch; nothing was trained: run the command again"
    script = sys.argv[0] if os.path.basename(sys.argv[0]) == run.script else run.script  # the path as typed
    dropped = run.args.overwrite and [w for w in run.argv if len(w) > 2 and "--overwrite".startswith(w)]  # argparse
    words = ["python", script, *[w for w in run.argv if w not in (dropped or ())]]  # takes a prefix (--over) too
    words += [] if run.args.continue_run else ["--continue"]
    where = "before its first epoch" if run.saved_epoch == run.epochs.start else f"after epoch {run.saved_epoch - 1}"
    return (f"{name} in epoch {run.saved_epoch if run.epoch is None else run.epoch}; {run.last} holds the run "
            f"{where}: continue it with `{shlex.join(words)}`"
            + (" (under torchrun: with your torchrun command)" if run.accel.world > 1 else ""))
