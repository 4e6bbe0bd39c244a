"""TrainingRun: what both training scripts share around their loop. Set-up (arguments checked, the
device, the trial's data and loaders, seeding), the run's lock, -r's start from the first run's
best checkpoint, --continue's from ...Last.pth (engine/continuing.py), the optimizer, the
checkpoints, the run's log and config in runs/<run>/, and a stop by Ctrl-C or SIGTERM turned into
one line that gives the command continuing the run."""
import contextlib
import functools
import json
import os
import shlex
import signal
import sys
import threading

import torch
from filelock import FileLock, Timeout

from core.errors import Interrupted, UserError
from core.files import atomic_write
from core.logfile import append_line, trim_log
from datasets.pipeline import build_loader, loader_generators
from datasets.summary import summary_line
from datasets.trial import OpenSetData
from engine import loop
from engine.accel import Accel
from engine.cli import git_commit, print_header, resolve_device, seed_everything
from engine.commands import train_command
from engine.continuing import read_last_state, restore_random_states, rng_state
from engine.placement import choose_pipeline, pipeline_name
from engine.recipe import Recipe, phase_schedule, use_normalization
from engine.run_guard import check_run_state, check_training_args, check_writable, remove_old_run, run_files
from networks.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.pretrained import IMAGENET, pretrained_file
from networks.weights import CAC, EVALUATED, LAST, lock_path, saved_under, weights_path

SCHEDULES = {CAC: "openset_training"}  # the config's schedule of each method (else closedset_training)
SCRIPTS = {CAC: "train_cacOpenset.py"}  # each method's training script (else train_closedSet.py)
SIGNAL_STATUS = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it


class TrainingRun:
    """One training run of `method`, as its command line (`args`, parsed from `argv`) asks.

    A context manager: entering takes the run's lock (rank 0) and turns SIGTERM into a stop like
    Ctrl-C's; leaving releases both. Nothing is written before the loop starts (`prepare`)."""

    def __init__(self, args, method, argv=None):
        """Six steps whose order matters: 1. refuse bad arguments and a run this one would replace,
        before any data is read; 2. open the device (under torchrun: join the process group); 3.
        load the trial, rank 0 first (it writes the caches while the others wait); 4. build the
        loaders; 5. check that every file of the run can be written; 6. seed, last, so that
        whether the caches were warm cannot change the run's numbers."""
        check_training_args(args)  # 1.
        self.args, self.method, self.phase = args, method, int(args.resume)
        self.script = SCRIPTS.get(method, "train_closedSet.py")
        self.argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
        self.run_dir = os.path.join("runs", f"{args.dataset}_{args.trial}_{args.name}{method}")
        self.files, self.last = run_files(args, method), self.weights(LAST[method])
        self.locks = [FileLock(lock_path(ds, args.trial, args.name, method)) for ds in saved_under(args.dataset)]
        self.accel = self.writer = self.resumed_from = None
        self.made_folders = []  # made for the lock files: removed on leaving if still empty
        self.epoch, self.saved_epoch, self.previous_sigterm = None, None, None
        check_run_state(args, method, self.run_dir, self.locks)
        if getattr(args, "pretrained", None) is not None:  # downloaded now if it must be (before the data)
            pretrained_file(args.backbone, args.pretrained, download=not args.no_download)
        try:
            self.accel = Accel(resolve_device(args.device), args.amp, args.compile, args.sync_bn, tf32=args.tf32)  # 2.
            self.device, self.is_main = self.accel.device, self.accel.is_main
            self.git = print_header(args, self.device) if self.is_main else git_commit()
            self._load_trial()  # 3.
            self._build_loaders()  # 4.
            if self.is_main:
                print(summary_line(self.data), flush=True)
                check_writable(self.files, self.run_dir)  # 5.
        except BaseException:
            self.close()  # no __exit__ follows a failed constructor
            raise
        seed_everything(args.seed)  # 6.

    def _load_trial(self):
        if not self.is_main:
            self.accel.barrier()  # rank 0 writes the partition and normalization caches first
        self.data = d = OpenSetData.from_args(self.args, self.args.trial)
        if self.is_main:
            self.accel.barrier()
        for part, idx in (("training", d.train_idx), ("validation", d.val_idx)):
            if len(idx) == 0:
                raise UserError(f"{d.name} trial {d.trial} has no {part} image of its known classes "
                                f"({len(d.train_idx)} training, {len(d.val_idx)} validation images; val_fraction "
                                f"{d.cfg['val_fraction']}): add images (two or more per class), or change "
                                f"val_fraction in datasets/config.json")
        key = SCHEDULES.get(self.method, "closedset_training")
        self.cfg = d.cfg
        self.hparams = self.cfg[key] = phase_schedule(self.cfg[key], self.phase, self.args.lr)
        use_normalization(d, self.args.recipe)  # the recipe's (engine/recipe.py)

    def _build_loaders(self):
        a, batch = self.args, self.recipe.batch_size  # the global batch: torchrun splits it across ranks
        workers = self.cfg["num_workers"] if a.workers is None else a.workers
        train, val = self.data.train_dataset(), self.data.val_dataset()
        train = self.recipe.train_subset(train, val)  # the recipe's images and augmentation (engine/recipe.py)
        pipeline = choose_pipeline(self.accel, a.pipeline, [train, val], self.network_config(), self.method, batch)
        options = {"pipeline": pipeline, "workers": workers, "seed": a.seed, "device": self.device,
                   "shard": self.accel.shard, "channels_last": self.accel.channels_last, "check_memory": False}
        self.train_loader = build_loader(train, batch, True, **options)
        self.val_loader = build_loader(val, batch, False, **options)
        self.pipeline = pipeline_name(self.train_loader)
        if self.is_main:  # the run header's last line: the pipeline used
            print(f"speed: pipeline {self.pipeline}, {self.accel.describe()}", flush=True)

    @functools.cached_property
    def recipe(self):
        """The run's recipe (engine/recipe.py) over the config's schedule."""
        return Recipe.for_run(self.args.recipe, self.args.dataset, self.cfg, self.hparams)

    def weights(self, suffix, dataset=None):
        return weights_path(dataset or self.args.dataset, self.args.trial, self.args.name, suffix)

    def network_config(self):
        """The NetworkConfig of this run; `pretrained`: --pretrained ("imagenet" or the file's absolute
        path), or with -r the first run's (recorded once load_first_run has read it)."""
        pretrained = getattr(self.args, "pretrained", None)
        if pretrained not in (None, IMAGENET):
            pretrained = os.path.abspath(pretrained)
        if self.resumed_from:
            pretrained = (self.resumed_from.get("network") or {}).get("pretrained")
        return NetworkConfig.for_data(self.cfg, self.args.backbone, pretrained)

    def load_first_run(self, net):
        """-r: the first run's best checkpoint (the one evaluation uses) loaded into `net`; its dict.
        A first run: None."""
        if not self.args.resume:
            return None
        try:
            self.resumed_from = load_checkpoint(self.weights(EVALUATED[self.method]), net)
        except UserError as e:
            raise UserError(f"{e}; -r continues a first run: train one with "
                            f"`{train_command(self.script, vars(self.args))}`") from None
        return self.resumed_from

    def prepare(self, net, best):
        """(model, optimizer) for the loop, and the run's first writes. `model` is `net` as the
        training step calls it (autocast, DDP, compiled); `best` the starting best validation
        values. --continue: the interrupted run's network, optimizer, schedule, best values and
        random states, and the epochs it had left. Else the state before the first epoch is saved."""
        a, accel = self.args, self.accel
        start = self.resumed_from["epoch"] + 1 if self.resumed_from else 0
        self.epochs = range(start, start + (a.epochs or self.recipe.max_epoch[self.phase]))
        self.net, model = accel.prepare(net)
        self.evaluator = accel.inference(self.net)  # what validation calls (autocast with --amp)
        self.optimizer = optimizer = self.recipe.optimizer(net.parameters(), self.phase)
        self.scheduler = self.recipe.scheduler(optimizer, len(self.epochs), self.epochs.start)  # None: constant lr
        self.best, self.generators = dict(best), loader_generators([self.train_loader, self.val_loader])
        log_size = self._continue() if a.continue_run else None
        self._first_writes(log_size)
        if not a.continue_run:
            self._save_last(self.epochs.start)
        return model, optimizer

    def _continue(self):
        state = read_last_state(self.last, self.phase, self.args)
        load_checkpoint(self.last, self.net, state)  # checks backbone, class and channel counts
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            changed = restore_random_states(state, self.accel.rank, self.accel.world, self.generators, self.device,
                                            self.args.seed)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise UserError(f"{self.last}: its optimizer, schedule or random state does not fit this run "
                            f"({type(e).__name__}: {str(e)[:100]}); start the run again without --continue, "
                            f"with --overwrite") from None
        self.best.update(state["best"])
        self.epochs, self.saved_epoch = range(state["epoch"], state["end_epoch"]), state["epoch"]
        if self.is_main:
            print(f"continuing {self.last}: epochs {state['epoch']}-{state['end_epoch'] - 1}", flush=True)
            if changed:
                print(f"--continue re-derives what it cannot restore: {'; '.join(changed)}", flush=True)
        return state.get("log_size")

    def epoch_loop(self):
        """The epochs to train, each with its learning rate set (--recipe modern's schedule)."""
        for epoch in self.epochs:
            self.epoch = epoch
            if self.scheduler is not None:
                self.scheduler.set_epoch(epoch)
            yield epoch

    def batches(self, epoch, sums):
        """The training batches of `epoch` on the device, with progress (engine/loop.py)."""
        return loop.batches(self.train_loader, self.accel, epoch, sums)

    def validation_batches(self):
        self.accel.sync_buffers(self.net)  # rank 0's BatchNorm statistics: every rank validates one network
        return loop.on_device(self.val_loader, self.accel)

    def checkpoint(self, net, acc, epoch):
        """The best-checkpoint dict of `net` (networks.checkpoint.make_checkpoint)."""
        a = self.args
        return make_checkpoint(net, acc, epoch, self.network_config(), self.method, a.dataset, a.trial,
                               self.data.known, vars(a), self.git)

    def save(self, checkpoint, suffix):
        if self.is_main:
            for dataset in saved_under(self.args.dataset):  # CIFAR+10: its files serve CIFAR+50 too
                save_checkpoint(checkpoint, self.weights(suffix, dataset=dataset))

    def end_epoch(self, epoch, stats):
        """One JSON line (stdout, runs/<run>/metrics.jsonl, tensorboard with -t), then ...Last.pth."""
        if self.is_main:
            line = json.dumps({"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}})
            print(line, flush=True)
            append_line(self.log_path(), line)  # whole lines only
            for key, value in stats.items() if self.writer is not None else ():
                self.writer.add_scalar(key, value, epoch)
        self._save_last(epoch + 1)

    def _save_last(self, next_epoch):
        """...Last.pth: the state from which `next_epoch` starts (engine/continuing.py)."""
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.net.parameters()]).all()):  # one sync
            raise UserError(f"the network's weights became non-finite by epoch {next_epoch}; {self.last} was not "
                            f"written from them: lower the learning rate or check the data")
        rngs = self.accel.gather(rng_state(self.generators, self.device))  # every rank's, on rank 0
        if self.is_main:
            state = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": next_epoch,
                     "end_epoch": self.epochs.stop, "phase": self.phase, "best": dict(self.best), "rng": rngs[0],
                     "ranks": rngs[1:], "world": len(rngs), "args": vars(self.args), "log_size": self.log_size(),
                     "device": self.device.type, "pipeline": self.pipeline, "backbone": self.args.backbone,
                     "method": self.method}
            if self.scheduler is not None:
                state["scheduler"] = self.scheduler.state_dict()
            save_checkpoint(state, self.last)
        self.saved_epoch = next_epoch

    def log_path(self):
        return os.path.join(self.run_dir, "metrics.jsonl")

    def log_size(self):
        return os.path.getsize(self.log_path()) if os.path.isfile(self.log_path()) else 0

    def _first_writes(self, keep_log_bytes):
        """Rank 0's first writes, once every check has passed: --overwrite removes the old run;
        metrics.jsonl made whole (--continue: cut to the state's size); config.json; tensorboard (-t)."""
        if not self.is_main:
            return
        a, d = self.args, self.data
        if a.overwrite and not a.resume:
            remove_old_run(self.files, self.run_dir)
        config = os.path.join(self.run_dir, "config.json")
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            trim_log(self.log_path(), keep_log_bytes)
            with atomic_write(config, "w") as f:
                json.dump({"args": vars(a), "dataset_config": self.cfg, "git": self.git, "known_classes": d.known,
                           "unknown_classes": d.unknown, "known_class_names": d.known_names,
                           "unknown_class_names": d.unknown_names, "normalization": {"mean": d.mean, "std": d.std}},
                          f, indent=1)
        except OSError as e:
            raise UserError(f"cannot write {e.filename or config} ({e.strerror}): the disk is full or the folder "
                            f"not writable; free space or fix its permissions") from None
        if a.tensorboard:
            from tensorboardX import SummaryWriter  # only needed with -t

            self.writer = SummaryWriter(self.run_dir)

    def __enter__(self):
        """Lock the run (rank 0; the OS releases it if the process dies) and check again, now that
        no other training of it can start; under torchrun every rank learns whether rank 0 refused."""
        refusal = None
        try:
            if self.is_main:
                try:
                    for lock in self.locks:
                        self.made_folders += missing_folders(os.path.dirname(lock.lock_file))
                        lock.acquire(timeout=0)
                    check_run_state(self.args, self.method, self.run_dir, ())
                except Timeout:
                    refusal = UserError(f"run {os.path.basename(self.run_dir)} is being trained now by another "
                                        f"process; wait for it to end, stop it, or give another --name")
                except UserError as e:
                    refusal = e
            if not self.accel.all_agree(refusal is None) and refusal is None:
                refusal = UserError(f"rank 0 refused to start {self.run_dir}: see its message")
            if refusal is not None:
                raise refusal
        except BaseException:
            self.close()  # no __exit__ follows a failed __enter__
            raise
        if threading.current_thread() is threading.main_thread():
            self.previous_sigterm = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return self

    def __exit__(self, kind, error, traceback):
        self.close()
        if isinstance(error, (KeyboardInterrupt, Interrupted)):
            name = error.args[0] if isinstance(error, Interrupted) else "SIGINT"
            raise Interrupted(self._stop_message(name) if self.is_main else "", SIGNAL_STATUS[name]) from None

    def _stop_message(self, name):
        if self.saved_epoch is None:
            return f"{name} before the first epoch; nothing was trained: run the command again"
        words = ["python", self.script, *[w for w in self.argv if w != "--overwrite"]]
        words += [] if "--continue" in words else ["--continue"]
        where = "before its first epoch" if self.saved_epoch == self.epochs.start else \
            f"after epoch {self.saved_epoch - 1}"
        return (f"{name} in epoch {self.epoch}; {self.last} holds the run {where}: continue it with "
                f"`{shlex.join(words)}`" + (" (under torchrun: your torchrun command)" if self.accel.world > 1 else ""))

    def close(self):
        """Close the writer, leave the process group, release the lock and SIGTERM; safe to call again."""
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)
            self.previous_sigterm = None
        try:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        finally:
            try:
                if self.accel is not None:
                    self.accel.close()
            finally:
                for lock in self.locks:
                    if lock.is_locked:  # its file goes too, so that a run leaves nothing but its own files
                        with contextlib.suppress(OSError):
                            os.remove(lock.lock_file)
                        lock.release()
                for folder in reversed(self.made_folders):
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)  # only an empty one
                self.made_folders = []


def missing_folders(folder):
    """`folder` and those above it that do not exist yet, outermost first."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    return missing


def _stop_on_sigterm(signum, frame):
    raise Interrupted("SIGTERM", SIGNAL_STATUS["SIGTERM"])
