"""TrainState: where a training run stands, and what lets it stop and go on.

It owns the epochs still to run, the best validation values so far, the image count of the
epoch in progress, SIGINT/SIGTERM, and the ...Last.pth state it saves after every epoch and
on a stop (engine/resume.py says what that file holds). The loop itself stays in the script:

    state = TrainState(run, net, optimizer, run.epochs(start), best={"acc": 0.0})  # --continue: loads
    run.save_config(keep_log_bytes=state.continued_log_size)
    with state.stop_signals():
        for epoch in state.epochs:
            sums = state.epoch_sums(2)  # loss, correct
            for step, (images, targets) in state.iterate(loader, epoch, sums):
                ...  # one training step; sums += its (loss, correct), in place
            (loss,), accuracy = state.epoch_means(sums, len(loader))
            ...  # validate; if state.improved("acc", value): save the checkpoint; log
            state.end_epoch(epoch)  # saves ...Last.pth
"""
import contextlib
import math
import signal
import threading
import time

import torch
from tqdm import tqdm

from core.errors import Interrupted, UserError
from engine.cli import OVERRIDE_ARGS
from engine.resume import RESTART, interrupted_state, read_interrupted, rng_state, set_rng_state
from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.weights import LAST

LOG_EVERY = 20  # steps between host reads of the running loss (no per-step device sync)
PROGRESS_SHARES = 10  # without a terminal (logs): a progress line per tenth of an epoch
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def progress_marks(steps, shares=PROGRESS_SHARES):
    """The steps (from 1) after which a log line reports progress: the first at or past each
    `shares`-th of an epoch of `steps` batches (fewer when the epoch has fewer batches)."""
    return sorted({math.ceil(steps * k / shares) for k in range(1, shares + 1)} - {0})


def progress_line(epoch, step, steps, loss, images, seconds):
    """One line of progress in a log: share done, steps, the epoch's mean loss so far, speed."""
    rate = images / seconds if seconds > 0 else float("inf")
    return (f"epoch {epoch}: {100 * step // steps}% ({step}/{steps} steps), loss {loss:.4f}, "
            f"{rate:.0f} images/s")


def check_finite(values, epoch, first_batch, last_batch):
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"the loss became non-finite in epoch {epoch}, batches {first_batch}-{last_batch}; "
                        f"no checkpoint was written from it: lower the learning rate or check the data")


class TrainState:
    """The interrupt/continue state of one training run (`run`, an engine.training.TrainingRun).

    `planned`: the epochs of a new run (a range); `best`: the starting best values, by name
    (saved and restored in this order); `must_match`: the arguments a --continue must repeat
    (the script's own, such as CAC's --alpha and --lbda). With --continue, the constructor
    loads the interrupted run's network, optimizer, best values and random states, and
    `epochs` is what remains of its epochs."""

    def __init__(self, run, net, optimizer, planned, best, must_match=()):
        self.run, self.accel, self.net, self.optimizer = run, run.accel, net, optimizer
        self.best = dict(best)
        self.generators = run.generators()
        self.path = run.weights(LAST[run.method])
        self.stop_signal = None  # name of the signal that asked to stop
        self.saved = None  # the state --continue loaded, until its epoch has started again
        self.epoch_rng = None  # the random states at the start of the epoch in progress
        self.seen = 0  # images trained on in the epoch in progress
        self.continued_log_size = None  # --continue: metrics.jsonl's size in the state it continues
        self.end = planned.stop  # first epoch not to run
        must_match = (*must_match, *OVERRIDE_ARGS)  # a change would silently make another run
        self.epochs = self._continue(run.args, must_match) if run.args.continue_run else planned

    def _continue(self, args, must_match):
        """Load the interrupted run's state; its remaining epochs."""
        state = read_interrupted(self.path, self.run.phase, args, must_match)
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
        self.continued_log_size = state.get("log_size")  # older states: None, the log as it is
        print(f"continuing {self.path}: epoch {state['epoch']}, after batch {state['step']}", flush=True)
        return range(state["epoch"], state["end_epoch"])

    def improved(self, key, value, lower=False, ties=True):
        """Whether `value` beats the best `key` so far (lower or higher is better; with `ties`,
        an equal value counts); if so it becomes the best."""
        best = self.best[key]
        if lower:
            better = value <= best if ties else value < best
        else:
            better = value >= best if ties else value > best
        if better:
            self.best[key] = value
        return better

    def epoch_sums(self, count):
        """The epoch's running sums (float64, on the device; the last one counts correct
        predictions): zeros, or the saved sums of the interrupted epoch being continued."""
        zeros = torch.zeros(count, device=self.accel.device, dtype=torch.float64)
        if self.saved is None or self.saved["step"] == 0:
            return zeros
        return self.saved["train_sums"].to(zeros.device)

    def iterate(self, loader, epoch, sums):
        """(step, batch) for each batch of `loader` still to train in `epoch`, steps from 1.

        When continuing mid-epoch the batches already trained on are loaded first, not
        yielded (the same permutation and augmentation draws). After each step the loop adds
        to `sums`; every LOG_EVERY steps it is read once from the device, checked finite and
        shown on the tqdm bar. Without a terminal (tqdm's bar off: a log) rank 0 prints a
        progress line instead at each tenth of the epoch (progress_marks; read at the same time,
        so at most 10 more reads an epoch). After SIGINT/SIGTERM the state is saved and the run stops."""
        saved, self.saved = self.saved, None
        start, self.seen = (saved["step"], saved["seen"]) if saved else (0, 0)
        bar = tqdm(self._batches(loader, saved), desc=f"epoch {epoch}", total=len(loader), initial=start,
                   leave=False, disable=None if self.accel.is_main else True)
        marks = set(progress_marks(len(loader))) if self.accel.is_main and bar.disable else set()
        began, seen_before = time.perf_counter(), self.seen
        for step, batch in enumerate(bar, start=start + 1):
            yield step, batch
            self.seen += len(batch[1])
            if step % LOG_EVERY == 0 or step == len(loader) or step in marks:
                values = sums.tolist()  # the one host sync every LOG_EVERY steps
                check_finite(values[:-1], epoch, start + 1, step)
                start = step
                bar.set_postfix(loss=f"{values[0] / step:.3f}", acc=f"{100 * values[-1] / self.seen:.1f}")
                if step in marks:
                    images = (self.seen - seen_before) * self.accel.world
                    print(progress_line(epoch, step, len(loader), values[0] / step, images,
                                        time.perf_counter() - began), flush=True)
            self.stop_if_asked(epoch, step, len(loader), sums)

    def _batches(self, loader, saved):
        skip = saved["step"] if saved else 0
        self.epoch_rng = rng_state(self.generators)  # fixes this epoch's permutation and worker seeds
        batches = iter(loader)
        for _ in range(skip):
            next(batches)  # loaded, not trained on: the augmentation draws advance as they did
        if skip:
            set_rng_state(saved["rng"], self.generators)
        yield from batches

    def epoch_means(self, sums, steps):
        """(each sum but the last per batch, accuracy in %) of the finished epoch of `steps`
        batches; with torchrun: losses averaged over ranks, images counted over all."""
        *losses, correct, seen = self.accel.sum(torch.cat([sums, sums.new_full((1,), self.seen)])).tolist()
        n = steps * self.accel.world
        return [loss / n for loss in losses], 100.0 * correct / seen

    def stop_if_asked(self, epoch, step, steps, sums):
        """After each step (iterate): save and stop when a signal asked to; the last step of an
        epoch stops at end_epoch. Under torchrun the ranks stop together at the end of the epoch
        instead: a signal reaches them at different steps, and a rank that left mid-epoch would
        hang the others."""
        if self.stop_signal is None or step == steps or self.accel.world > 1:
            return
        check_finite(sums.tolist(), epoch, 1, step)
        self._save(epoch, step, sums, self.seen, self.epoch_rng)
        raise Interrupted(f"{self.stop_signal} in epoch {epoch} after batch {step} of {steps}; saved "
                          f"{self.path}: run the same command with --continue to go on", self._exit_status())

    def end_epoch(self, epoch):
        """Save the state after a finished epoch; stop here if a signal came during it."""
        self._save(epoch + 1, 0, None, 0, None)
        if self.accel.world > 1:  # one rank signalled: all stop here, together
            asked = self.accel.sum(torch.tensor([float(self.stop_signal is not None)],
                                                device=self.accel.device)).item()
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
        now, run = rng_state(self.generators), self.run
        save_checkpoint(interrupted_state(
            self.net.state_dict(), self.optimizer.state_dict(), epoch, step, self.end, run.phase, dict(self.best),
            None if sums is None else sums.detach().cpu(), seen, now, epoch_rng or now, run.args.backbone,
            run.method, vars(run.args), run.log_size()), self.path)  # log_size: see core.logfile.trim_log

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
