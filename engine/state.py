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
from engine.progress import progress_line, progress_marks
from engine.rank_states import changes, rank_share, reseed, share
from engine.resume import RESTART, generators_fit, interrupted_state, read_interrupted, rng_state, set_rng_state
from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.weights import LAST

LOG_EVERY = 20  # steps between host reads of the running loss (no per-step device sync); under
# torchrun also between the ranks' agreements on a stop (a signal saves within LOG_EVERY steps)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        self.saved = None  # the state --continue loaded (this rank's share), until its epoch has started again
        self.data_rng_fits = True  # False: --continue re-seeded the data generators (engine/rank_states.py)
        self.epoch_rng = None  # the random states at the start of the epoch in progress
        self.seen = 0  # images trained on in the epoch in progress
        self.continued_log_size = None  # --continue: metrics.jsonl's size in the state it continues
        self.end = planned.stop  # first epoch not to run
        self.scheduler = run.recipe.scheduler(optimizer, len(planned), planned.start)  # None: constant lr
        must_match = ("recipe", *must_match, *OVERRIDE_ARGS)  # a change would silently make another run
        self.epochs = self._continue(run.args, must_match) if run.args.continue_run else planned

    def _continue(self, args, must_match):
        """Load the interrupted run's state; its remaining epochs."""
        state = read_interrupted(self.path, self.run.phase, args, must_match)
        load_checkpoint(self.path, self.net, state)  # checks backbone, class and channel counts
        accel = self.accel
        changed = changes(state, accel.world, accel.device, self.run.pipeline, self.generators)
        self.data_rng_fits = generators_fit(state["rng"]["generators"], self.generators)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            mine = rank_share(state, accel.rank, accel.world)
            set_rng_state(mine["epoch_rng"], self.generators, accel.device, data=self.data_rng_fits)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise UserError(f"{self.path}: its optimizer or random state does not fit this run "
                            f"({type(e).__name__}: {str(e)[:100]}); {RESTART}") from None
        if not self.data_rng_fits:
            reseed(self.generators, args.seed, state["epoch"])
        if self.scheduler is not None:
            if not isinstance(state.get("scheduler"), dict):
                raise UserError(f"{self.path} has no learning-rate schedule state; {RESTART}")
            self.scheduler.load_state_dict(state["scheduler"])
        self.best.update(state["best"])
        self.saved, self.end = {**state, **mine}, state["end_epoch"]
        self.continued_log_size = state.get("log_size")  # older states: None, the log as it is
        if accel.is_main:
            print(f"continuing {self.path}: epoch {state['epoch']}, after batch {state['step']}", flush=True)
            if changed:
                print(f"--continue re-derives what it cannot restore: {'; '.join(changed)}", flush=True)
        return range(state["epoch"], state["end_epoch"])

    def improved(self, key, value, lower=False, ties=True):
        """Whether `value` beats the best `key` so far (lower or higher is better; with `ties`,
        an equal value counts); if so it becomes the best."""
        best = self.best[key]
        if self.run.recipe.whole_train:  # --recipe vaze: every epoch's network is kept, so the last one is
            better = True
        elif lower:
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
        if self.scheduler is not None:
            self.scheduler.set_epoch(epoch)  # the lr of this epoch (--recipe modern)
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
        self.epoch_rng = rng_state(self.generators, self.accel.device)  # fixes this epoch's permutation and worker seeds
        batches = iter(loader)
        for _ in range(skip):
            next(batches)  # loaded, not trained on: the augmentation draws advance as they did
        if skip:
            set_rng_state(saved["rng"], self.generators, self.accel.device, data=self.data_rng_fits)
        yield from batches

    def epoch_means(self, sums, steps):
        """(each sum but the last per batch, accuracy in %) of the finished epoch of `steps`
        batches; with torchrun: losses averaged over ranks, images counted over all."""
        *losses, correct, seen = self.accel.sum(torch.cat([sums, sums.new_full((1,), self.seen)])).tolist()
        n = steps * self.accel.world
        return [loss / n for loss in losses], 100.0 * correct / seen

    def stop_if_asked(self, epoch, step, steps, sums):
        """After each step (iterate): save and stop when a signal asked to; the last step of an
        epoch stops at end_epoch. Under torchrun a signal reaches the ranks at different steps,
        and a rank that left alone would hang the others: every LOG_EVERY steps they agree
        (one all-reduce of one number), and all save and stop at the same step."""
        if step == steps:
            return
        if self.accel.world > 1:
            if step % LOG_EVERY:
                return
            self._agree_on_stop()
        if self.stop_signal is None:
            return
        check_finite(sums.tolist(), epoch, 1, step)
        self._save(epoch, step, sums, self.seen, self.epoch_rng)
        raise Interrupted(f"{self.stop_signal} in epoch {epoch} after batch {step} of {steps}; saved "
                          f"{self.path}: run the same command with --continue to go on", self._exit_status())

    def end_epoch(self, epoch):
        """Save the state after a finished epoch; stop here if a signal came during it."""
        self._save(epoch + 1, 0, None, 0, None)
        if self.accel.world > 1:  # one rank signalled: all stop here, together
            self._agree_on_stop()
        if self.stop_signal is not None:
            raise Interrupted(f"{self.stop_signal} after epoch {epoch}; saved {self.path}: run the same "
                              f"command with --continue to go on", self._exit_status())

    def _agree_on_stop(self):
        """Under torchrun: whether any rank was asked to stop, known to all (a rank that got no
        signal stops too, as on SIGTERM)."""
        asked = self.accel.sum(torch.tensor([float(self.stop_signal is not None)], device=self.accel.device))
        if asked.item() and self.stop_signal is None:
            self.stop_signal = "SIGTERM"

    def _exit_status(self):
        return 128 + signal.Signals[self.stop_signal].value

    def _save(self, epoch, step, sums, seen, epoch_rng):
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            raise UserError(f"the network's weights became non-finite by epoch {epoch}; {self.path} was "
                            f"not written from them: lower the learning rate or check the data")
        now, run = rng_state(self.generators, self.accel.device), self.run
        ranks = self.accel.gather(share(now, epoch_rng or now, sums, seen))  # every rank's, on rank 0
        if not run.is_main:  # under torchrun rank 0 alone writes files
            return
        state = interrupted_state(
            self.net.state_dict(), self.optimizer.state_dict(), epoch, step, self.end, run.phase, dict(self.best),
            ranks, run.args.backbone, run.method, vars(run.args), run.log_size(),  # log_size: see core.logfile
            self.accel.device.type, run.pipeline)
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
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
