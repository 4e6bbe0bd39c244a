"""Interrupted runs: the `...Last.pth` state, SIGINT/SIGTERM, and `--continue`.

After every epoch, and when SIGINT or SIGTERM stops a run after its current step, the
training loop saves `networks/weights/<dataset>/<dataset>_<trial>_<name><Method>Last.pth`:
network, optimizer, epoch, batches done in it, phase (-r or not), the epochs planned, best
values so far, the epoch's partial training sums, and every random state (Python, NumPy,
torch CPU and CUDA, each DataLoader generator) both at the start of the epoch and at the
moment of saving. `--continue` loads it, replays the stopped epoch's first batches from the
loader without training on them (the same permutation, and the same augmentation draws in
worker processes), restores the random states of the moment of saving, and goes on: with
--seed on CPU the result equals the uninterrupted run's, bit for bit.
"""
import contextlib
import random
import signal
import threading

import numpy as np
import torch

from core.errors import Interrupted, UserError
from engine.training import check_finite
from core.values import is_number, is_whole_number
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def rng_state(generators):
    """Every random state a run draws from, as tensors and plain Python values (so that a
    weights_only load reads it back); `generators` are the torch.Generators of the data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.get_state() for g in generators]}


def set_rng_state(state, generators):
    """Put back what rng_state saved, in the same generators (same number, same order)."""
    if len(state["generators"]) != len(generators):
        raise UserError(f"the saved state has {len(state['generators'])} data generators, this run "
                        f"{len(generators)}: continue it with the code version that saved it")
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)


RESTART = ("it is damaged or from another version of this code: start the run again without --continue, "
           "with --overwrite")

# what --continue reads from ...Last.pth, and the type each entry must have: the head says which
# run it is (checked first, for the clearest message), the rest restores it
STATE_HEAD = {"phase": int, "epoch": int, "end_epoch": int, "step": int, "args": dict}
STATE_REST = {"seen": int, "optimizer": dict, "best": dict, "rng": dict, "epoch_rng": dict}
RNG_KEYS = ("python", "numpy", "torch", "cuda", "generators")


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
    for key in ("rng", "epoch_rng"):
        if any(k not in state[key] for k in RNG_KEYS) or not isinstance(state[key]["generators"], list):
            _refuse(path, f"{key!r} lacks one of {', '.join(RNG_KEYS)}")
    if not isinstance(state["optimizer"].get("state"), dict) or \
            not isinstance(state["optimizer"].get("param_groups"), list):
        _refuse(path, "'optimizer' is not an optimizer's state dict")
    size = state.get("log_size", 0)
    if not is_whole_number(size) or size < 0:
        _refuse(path, f"'log_size' is {size!r}")


class Progress:
    """Where a training run stands; the loop calls begin_epoch / batches / after_step / end_epoch.

    `best` is the loop's dict of best values so far, kept up to date by the loop itself.
    """

    def __init__(self, run, net, optimizer, best, generators, suffix):
        self.run, self.net, self.optimizer, self.best = run, net, optimizer, best
        self.generators = generators
        self.path = run.weights(suffix)
        self.stop_signal = None  # name of the signal that asked to stop
        self.saved = None  # the state --continue loaded, until its epoch has started again
        self.end = None  # first epoch not to run
        self.epoch_rng = None

    def epochs(self, planned):
        """`planned` (a range) for a new run; with --continue, the rest of the saved run's."""
        self.end = planned.stop
        if not self.run.args.continue_run:
            return planned
        a = self.run.args
        try:
            state = read_checkpoint(self.path)
        except UserError as e:
            raise UserError(f"{e}; --continue needs the state of an interrupted run (written after each "
                            f"epoch): start it without --continue") from None
        check_state_head(state, self.path)
        phases = ("a first run (no -r)", "a resumed run (-r)")
        if state["phase"] != self.run.phase:
            raise UserError(f"{self.path} holds {phases[state['phase']]} but this command starts "
                            f"{phases[self.run.phase]}: {'add' if not a.resume else 'drop'} -r to continue it")
        saved_args = state["args"]
        for key in ("alpha", "lbda"):  # the loss itself: a change would silently make another run
            if key in saved_args and saved_args[key] != getattr(a, key, None):
                raise UserError(f"{self.path} was trained with --{key} {saved_args[key]}, this command says "
                                f"{getattr(a, key, None)}: continue it with --{key} {saved_args[key]}")
        if state["epoch"] >= state["end_epoch"]:
            raise UserError(f"{self.path}: that run finished all its epochs (to {state['end_epoch'] - 1}); "
                            f"nothing to continue: start the next phase with -r, or evaluate")
        check_state(state, self.path)
        load_checkpoint(self.path, self.net, state)  # checks backbone, class and channel counts
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"], self.generators)  # tried for its shape only: the next line
            set_rng_state(state["epoch_rng"], self.generators)  # sets every generator again
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise UserError(f"{self.path}: its optimizer or random state does not fit this run "
                            f"({type(e).__name__}: {str(e)[:100]}); {RESTART}") from None
        self.best.update(state["best"])
        self.saved, self.end = state, state["end_epoch"]
        self.run.continued_log_size = state.get("log_size")  # older states: None, the log as it is
        print(f"continuing {self.path}: epoch {state['epoch']}, after batch {state['step']}", flush=True)
        return range(state["epoch"], state["end_epoch"])

    def begin_epoch(self, zero_sums):
        """(sums, images seen, batches done) of the epoch so far: zeros, or what was saved."""
        if self.saved is None or self.saved["step"] == 0:
            return zero_sums, 0, 0
        return self.saved["train_sums"].to(zero_sums.device), self.saved["seen"], self.saved["step"]

    def batches(self, loader):
        """Iterate `loader`; when continuing mid-epoch, first replay the batches already trained on."""
        saved, self.saved = self.saved, None
        skip = saved["step"] if saved else 0
        self.epoch_rng = rng_state(self.generators)  # fixes this epoch's permutation and worker seeds
        batches = iter(loader)
        for _ in range(skip):
            next(batches)  # loaded, not trained on: the augmentation draws advance as they did
        if skip:
            set_rng_state(saved["rng"], self.generators)
        yield from batches

    def after_step(self, epoch, step, steps, sums, seen):
        """Save and stop when a signal asked to; the last step of an epoch stops at end_epoch.
        Under torchrun the ranks stop together at the end of the epoch instead: a signal reaches
        them at different steps, and a rank that left mid-epoch would hang the others."""
        if self.stop_signal is None or step == steps or self.run.accel.world > 1:
            return
        check_finite(sums.tolist(), epoch, 1, step)
        self._save(epoch, step, sums, seen, self.epoch_rng)
        raise Interrupted(f"{self.stop_signal} in epoch {epoch} after batch {step} of {steps}; saved "
                          f"{self.path}: run the same command with --continue to go on", self._exit_status())

    def end_epoch(self, epoch):
        """Save the state after a finished epoch; stop here if a signal came during it."""
        self._save(epoch + 1, 0, None, 0, None)
        accel = self.run.accel
        if accel.world > 1:  # one rank signalled: all stop here, together
            asked = accel.sum(torch.tensor([float(self.stop_signal is not None)], device=accel.device)).item()
            if asked and self.stop_signal is None:
                self.stop_signal = "SIGTERM"
        if self.stop_signal is not None:
            raise Interrupted(f"{self.stop_signal} after epoch {epoch}; saved {self.path}: run the same "
                              f"command with --continue to go on", self._exit_status())

    def _exit_status(self):
        return 128 + signal.Signals[self.stop_signal].value

    def _save(self, epoch, step, sums, seen, epoch_rng):
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            raise UserError(f"the network's weights became non-finite by epoch {epoch}; {self.path} was "
                            f"not written from them: lower the learning rate or check the data")
        if not self.run.is_main:  # under torchrun rank 0 alone writes files
            return
        now = rng_state(self.generators)
        state = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                 "step": step, "end_epoch": self.end, "phase": self.run.phase, "best": dict(self.best),
                 "train_sums": None if sums is None else sums.detach().cpu(), "seen": seen,
                 "rng": now, "epoch_rng": epoch_rng or now, "backbone": self.run.args.backbone,
                 "method": self.run.method, "args": vars(self.run.args),
                 "log_size": self.run.log_size()}  # metrics.jsonl so far: see engine.training.trim_log
        save_checkpoint(state, self.path)

    @contextlib.contextmanager
    def stop_signals(self):
        """SIGINT/SIGTERM ask the loop to stop after the current step; a second one acts at once."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may
            yield
            return

        def ask_to_stop(signum, frame):
            self.stop_signal = signal.Signals(signum).name
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            signal.signal(sig, ask_to_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
