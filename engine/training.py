"""TrainingRun: what both training scripts share around their loop: set-up, lock, the start of -r or --continue,
checkpoints, the log and config in runs/<run>/, and a stop (Ctrl-C, SIGTERM) as one line saying how to continue."""
import contextlib
import functools
import json
import os
import signal
import sys
import threading

from core.errors import Interrupted, UserError
from core.logfile import append_line, trim_log
from datasets.pipeline import build_loader, loader_generators
from datasets.resident import ResidentLoader
from datasets.summary import summary_line
from datasets.trial import OpenSetData
from engine import continuing, loop
from engine.accel import Accel
from engine.cli import git_commit, print_header, resolve_device, seed_everything
from engine.commands import TRAIN_SCRIPTS, train_command
from engine.placement import choose_pipeline
from engine.recipe import Recipe, phase_schedule, use_normalization
from engine.run_files import (RunLock, check_training_args, check_writable, refuse_to_replace, remove_old_run,
                              run_files, write_config)
from networks.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.pretrained import IMAGENET, pretrained_file
from networks.weights import CAC, EVALUATED, LAST, lock_path, saved_under, weights_path

SCHEDULES = {CAC: "openset_training"}  # the config's schedule of each method (else closedset_training)
SIGNAL_STATUS = {s.name: 128 + s for s in (signal.SIGINT, signal.SIGTERM)}  # as a shell reports a stop by signal
# metrics.jsonl names the unit of a percentage (results files hold shares); tensorboard keeps the original's tags
LOGGED = {"train/accuracy": "train/accuracy_percent", "val/accuracy": "val/accuracy_percent"}


class TrainingRun:
    """One training run of `method` as `args` (from `argv`) asks, holding its lock; no write before `prepare`."""

    def __init__(self, args, method, argv=None):
        """Six steps in an order that matters: 1. the device (the process group); 2. the run's lock, then the
        refusals, before any data is read or downloaded; 3. the trial, rank 0 first (it writes the caches); 4. the
        loaders; 5. every file checked writable; 6. seed, last, so that warm caches cannot change the numbers."""
        check_training_args(args, method)  # the arguments alone, first
        self.args, self.method, self.phase, self.script = args, method, int(args.resume), TRAIN_SCRIPTS[method]
        self.argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
        self.run_dir = os.path.join("runs", f"{args.dataset}_{args.trial}_{args.name}{method}")
        self.log = os.path.join(self.run_dir, "metrics.jsonl")
        self.files, self.last = run_files(args, method), self.weights(LAST[method])
        self.locks = [RunLock(lock_path(ds, args.trial, args.name, method), os.path.basename(self.run_dir))
                      for ds in saved_under(args.dataset)]
        self.accel = self.writer = self.first_run = self.epoch = self.saved_epoch = self.previous_sigterm = None
        try:
            self.accel = Accel(resolve_device(args.device), args.amp, args.compile, args.sync_bn, tf32=args.tf32)  # 1.
            self.device, self.is_main = self.accel.device, self.accel.is_main
            self._lock_and_check()  # 2.
            if getattr(args, "pretrained", None) is not None:  # downloaded now if it must be (before the data)
                pretrained_file(args.backbone, args.pretrained, download=not args.no_download)
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

    def _lock_and_check(self):
        """Rank 0 locks the run, then refuses to replace another (one check: no other training of it can start
        meanwhile); every rank stops with it."""
        refusal = None
        if self.is_main:
            try:
                for lock in self.locks:
                    lock.acquire()
                refuse_to_replace(self.args, self.method, self.run_dir)
            except UserError as e:
                refusal = e
        if not self.accel.all_agree(refusal is None):
            raise refusal or UserError(f"rank 0 refused to start {self.run_dir}: see its message")

    def _load_trial(self):
        if not self.is_main:
            self.accel.barrier()  # rank 0 writes the partition and normalization caches first
        self.data = d = OpenSetData.from_args(self.args, self.args.trial)
        if self.is_main:
            self.accel.barrier()
        for part, idx in (("training", d.train_idx), ("validation", d.val_idx)):
            if len(idx) == 0:
                raise UserError(f"{d.name} trial {d.trial} has no {part} image of its known classes ({len(d.train_idx)}"
                                f" training, {len(d.val_idx)} validation images; val_fraction {d.cfg['val_fraction']}):"
                                f" add images (two or more per class), or change val_fraction in datasets/config.json")
        self.cfg, key = d.cfg, SCHEDULES.get(self.method, "closedset_training")
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
        self.train_loader = build_loader(train, batch, True, drop_last=a.drop_last,
                                         augment_batches=a.augment_batches, **options)
        self.val_loader = build_loader(val, batch, False, **options)
        self.pipeline = "resident" if isinstance(self.train_loader, ResidentLoader) else "torchvision"
        if self.is_main:  # the run header's last line: the pipeline used (config.json: pipeline_used)
            asked = "" if self.pipeline == a.pipeline else (f" (--pipeline {a.pipeline} asked: it holds only in-memory "
                                                            f"data sets that fit, without RandAugment or shrinking crops)")
            print(f"speed: pipeline {self.pipeline}{asked}, {self.accel.describe()}", flush=True)

    @functools.cached_property
    def recipe(self):
        return Recipe.for_run(self.args.recipe, self.args.dataset, self.cfg, self.hparams)

    def weights(self, suffix, dataset=None):
        return weights_path(dataset or self.args.dataset, self.args.trial, self.args.name, suffix)

    def network_config(self):
        """This run's NetworkConfig; `pretrained`: --pretrained (a file: its absolute path), or the first run's."""
        pretrained = getattr(self.args, "pretrained", None)
        pretrained = pretrained if pretrained in (None, IMAGENET) else os.path.abspath(pretrained)
        if self.first_run:
            pretrained = (self.first_run.get("network") or {}).get("pretrained")
        return NetworkConfig.for_data(self.cfg, self.args.backbone, pretrained)

    def load_first_run(self, net):
        """-r: the first run's best checkpoint (the one evaluation reads) loaded into `net`; its dict, else None."""
        if not self.args.resume:
            return None
        try:
            self.first_run = load_checkpoint(self.weights(EVALUATED[self.method]), net)
        except UserError as e:
            raise UserError(f"{e}; the second phase (-r) starts from a first run: train one with "
                            f"`{train_command(self.script, vars(self.args))}`") from None
        return self.first_run

    def prepare(self, net, best):
        """(model, optimizer) for the loop, from `best` or --continue's state; then the run's first writes."""
        a, accel = self.args, self.accel
        start = self.first_run["epoch"] + 1 if self.first_run else 0
        self.epochs = range(start, start + (a.epochs or self.recipe.max_epoch[self.phase]))
        self.net, model = accel.prepare(net)
        self.evaluator = accel.inference(self.net)  # what validation calls (autocast with --amp)
        self.optimizer = optimizer = self.recipe.optimizer(net.parameters(), self.phase)
        self.scheduler = self.recipe.scheduler(optimizer, len(self.epochs), self.epochs.start)  # None: constant lr
        self.best, self.generators = dict(best), loader_generators([self.train_loader, self.val_loader])
        state = continuing.restore(self) if a.continue_run else None
        if state:
            self.epochs, self.saved_epoch = range(state["epoch"], state["end_epoch"]), state["epoch"]
        self._first_writes(state and state.get("log_size"))
        if not state:
            self.saved_epoch = continuing.save_last(self, self.epochs.start)
        return model, optimizer

    def epoch_loop(self):
        """The epochs to train, each with its learning rate set."""
        for epoch in self.epochs:
            self.epoch = epoch
            if self.scheduler is not None:
                self.scheduler.set_epoch(epoch)
            yield epoch

    def batches(self, epoch, sums):
        return loop.batches(self.train_loader, self.accel, epoch, sums)

    def validation_batches(self):
        self.accel.sync_buffers(self.net)  # rank 0's BatchNorm statistics: every rank validates one network
        return loop.on_device(self.val_loader, self.accel)

    def checkpoint(self, net, acc, epoch):
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
            line = json.dumps({"epoch": epoch, **{LOGGED.get(k, k): round(v, 6) for k, v in stats.items()}})
            print(line, flush=True)
            append_line(self.log, line)  # whole lines only
            for key, value in stats.items() if self.writer is not None else ():
                self.writer.add_scalar(key, value, epoch)
        self.saved_epoch = continuing.save_last(self, epoch + 1)

    def log_size(self):
        return os.path.getsize(self.log) if os.path.isfile(self.log) else 0

    def _first_writes(self, keep_log_bytes):
        """Rank 0's first writes, once every check has passed (--continue: metrics.jsonl cut to the state's size)."""
        if not self.is_main:
            return
        a, d = self.args, self.data
        if a.overwrite and not a.resume:
            remove_old_run(self.files, self.run_dir)
        write_config(self.run_dir, {"args": vars(a), "dataset_config": self.cfg, "git": self.git,
                                    "pipeline_used": self.pipeline,  # labels 0..N-1, as results files list them:
                                    "known_classes": sorted(int(c) for c in d.known), "known_class_names": d.class_names,
                                    "unknown_classes": d.unknown, "unknown_class_names": d.unknown_names,
                                    "normalization": {"mean": d.mean, "std": d.std}})
        trim_log(self.log, keep_log_bytes)
        if a.tensorboard:
            from tensorboardX import SummaryWriter  # only needed with -t

            self.writer = SummaryWriter(self.run_dir)

    def __enter__(self):
        """SIGTERM stops the run from here on (the lock is taken in __init__)."""
        if threading.current_thread() is threading.main_thread():
            self.previous_sigterm = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return self

    def __exit__(self, kind, error, traceback):
        self.close()
        if isinstance(error, (KeyboardInterrupt, Interrupted)):
            name = error.args[0] if isinstance(error, Interrupted) else "SIGINT"
            message = continuing.stop_message(self, name) if self.is_main else ""
            raise Interrupted(message, SIGNAL_STATUS[name]) from None

    def close(self):
        """Undo everything the run holds (SIGTERM, writer, process group, lock); safe to call again."""
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)
        self.previous_sigterm = None
        with contextlib.ExitStack() as steps:  # each runs, whatever the others raise (last added, first run)
            for lock in self.locks:
                steps.callback(lock.release)
            if self.accel is not None:
                steps.callback(self.accel.close)
            if self.writer is not None:
                steps.callback(self.writer.close)
            self.writer = None


def _stop_on_sigterm(signum, frame):
    raise Interrupted("SIGTERM", SIGNAL_STATUS["SIGTERM"])
