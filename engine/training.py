"""TrainingRun: what both training scripts share around their loop: set-up (device, data,
loaders, seeding), the run's lock and checks, -r's start, the optimizer, best-checkpoint saving,
and the run's log and config in runs/<run>/. (The loop's own state: engine/state.py.)"""
import json
import math
import os

import torch

from core.errors import UserError
from core.files import atomic_write
from core.lock import RunLock
from core.logfile import append_line, trim_log
from datasets.pipeline import build_loader
from datasets.summary import summary_line
from datasets.trial import OpenSetData
from engine.accel import Accel
from engine.commands import train_command
from engine.cli import check_common_args, git_commit, print_header, resolve_device, seed_everything
from engine.run_guard import check_run_state, check_writable, remove_old_run, run_files
from networks.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.weights import lock_path, saved_under, weights_path


def check_training_args(args):
    check_common_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr {args.lr}: give a positive, finite learning rate, e.g. --lr 0.01")
    if args.overwrite and args.continue_run:
        raise UserError("--overwrite starts the run afresh and --continue picks up the interrupted one: "
                        "give one of them")


def phase_schedule(schedule, phase, lr=None):
    """A copy of a config's schedule (openset_training / closedset_training) with --lr, when
    given, as the learning rate of `phase` (0: first run, 1: -r); the other phase's stays."""
    schedule = dict(schedule)
    if lr is not None:
        rates = list(schedule["learning_rate"])
        rates[phase] = lr
        schedule["learning_rate"] = rates
    return schedule


class TrainingRun:
    """Device, data loaders, epoch range and logs of one training run.

    A context manager: entering takes the run's lock (rank 0), leaving releases it. Nothing
    is written before __enter__, and __enter__ writes only the lock file."""

    def __init__(self, args, method, phase_key):
        """Set up in six steps whose order matters:
        1. refuse at once (arguments; a run this one would replace, or one training now), before
           the data is read: a refusal then costs nothing and writes nothing;
        2. open the device (under torchrun: join the process group, which step 3's barrier needs);
        3. load the trial, rank 0 first: it writes the split and normalization caches while the
           other ranks wait at a barrier, then they read them, so no two processes write a cache;
        4. build the loaders (each rank its shard of every global batch);
        5. check (rank 0) that every file of the run can be written, before any training;
        6. seed, last: whether the steps above hit their caches (and drew random numbers to
           fill them) must not change the run's numbers."""
        check_training_args(args)  # 1.
        self.args, self.method = args, method
        self.phase = int(args.resume)  # 0: first run, 1: resumed run with the lower learning rate
        self.run_dir = os.path.join("runs", f"{args.dataset}_{args.trial}_{args.name}{method}")
        self.datasets = saved_under(args.dataset)  # CIFAR+10: its files serve CIFAR+50 too
        self.files = run_files(args, method)
        self.resumed_from = None  # with -r: the first run's checkpoint dict (see start_epoch)
        self.writer = None  # made by save_config: bad input found before then leaves no file behind
        self.locks = [RunLock(lock_path(ds, args.trial, args.name, method), f"run {ds}_{args.trial}_{args.name}{method}")
                      for ds in self.datasets]
        self.check_run_state()  # 1. at once; again under the lock (__enter__)
        self._open_device()  # 2.
        self._load_trial_rank0_first(phase_key)  # 3.
        self._build_loaders()  # 4.
        if self.is_main:
            print(summary_line(self.data), flush=True)
            check_writable(self.files, self.run_dir)  # 5.
        seed_everything(args.seed)  # 6.

    def _open_device(self):
        a = self.args
        self.accel = Accel(resolve_device(a.device), a.amp, a.compile, a.sync_bn)
        self.device, self.is_main = self.accel.device, self.accel.is_main
        self.git = print_header(a, self.device) if self.is_main else git_commit()

    def _load_trial_rank0_first(self, phase_key):
        if not self.is_main:
            self.accel.barrier()  # rank 0 writes the split and normalization caches first
        self.data = OpenSetData.from_args(self.args, self.args.trial)
        if self.is_main:
            self.accel.barrier()
        self.cfg = self.data.cfg
        d = self.data
        for part, idx in (("training", d.train_idx), ("validation", d.val_idx)):
            if len(idx) == 0:
                raise UserError(f"{d.name} trial {d.trial} has no {part} image of its known classes "
                                f"({len(d.train_idx)} training, {len(d.val_idx)} validation images; val_fraction "
                                f"{self.cfg['val_fraction']}): add images (two or more per class), or change "
                                f"val_fraction in datasets/config.json")
        self.hparams = self.cfg[phase_key] = phase_schedule(self.cfg[phase_key], self.phase, self.args.lr)

    def _build_loaders(self):
        a = self.args
        workers = self.cfg["num_workers"] if a.workers is None else a.workers
        batch = self.cfg["batch_size"]  # the global batch: torchrun splits it across ranks
        loader = {"pipeline": a.pipeline, "workers": workers, "seed": a.seed, "device": self.device,
                  "shard": self.accel.shard, "channels_last": self.accel.channels_last}
        self.train_loader = build_loader(self.data.train_dataset(), batch, True, **loader)
        self.val_loader = build_loader(self.data.val_dataset(), batch, False, **loader)

    def __enter__(self):
        """Lock the run (rank 0; the OS releases it if the process dies) and check, now that no
        other training of it can start, that this one may write. Under torchrun every rank
        learns whether rank 0 refused, so that none waits for it."""
        refusal = None
        if self.is_main:
            try:
                for lock in self.locks:
                    lock.acquire()
                self.check_run_state()
            except UserError as e:
                self.release()
                refusal = e
        if self.accel.world > 1:
            refused = self.accel.sum(torch.tensor([float(refusal is not None)], device=self.device)).item()
            if refused and refusal is None:
                raise UserError(f"rank 0 refused to start {self.run_dir}: see its message")
        if refusal is not None:
            raise refusal
        return self

    def __exit__(self, *exc_info):
        self.close()

    def release(self):
        for lock in self.locks:
            lock.release()

    def check_run_state(self):
        check_run_state(self.args, self.method, self.run_dir, self.locks)

    def generators(self):
        """The data's random generators, saved and restored with an interrupted run's state."""
        found = []
        for loader in (self.train_loader, self.val_loader):
            found.append(loader.generator)  # resident loader's, or a DataLoader's (shuffle, worker seeds)
            sampler = getattr(loader, "batch_sampler", None)  # torchrun's sharded sampler shuffles itself
            if getattr(sampler, "generator", None) is not None:
                found.append(sampler.generator)
        return found

    def weights(self, suffix, dataset=None):
        return weights_path(dataset or self.args.dataset, self.args.trial, self.args.name, suffix)

    def epochs(self, start_epoch):
        count = self.args.epochs or self.hparams["max_epoch"][self.phase]
        return range(start_epoch, start_epoch + count)

    def start_epoch(self, net, suffix, script):
        """0 for a first run; with -r, load the first run's checkpoint `suffix` into `net` (kept
        as `resumed_from`) and continue after its saved (finished) epoch."""
        if not self.args.resume:
            return 0
        try:
            self.resumed_from = load_checkpoint(self.weights(suffix), net)
            return self.resumed_from["epoch"] + 1
        except UserError as e:
            raise UserError(f"{e}; -r continues a first run: train one with "
                            f"`{train_command(script, vars(self.args))}`") from None

    def optimizer(self, net):
        h = self.hparams
        return torch.optim.SGD(net.parameters(), lr=h["learning_rate"][self.phase], momentum=h.get("momentum", 0.9),
                               weight_decay=h["weight_decay"])

    def network_config(self):
        return NetworkConfig.for_data(self.cfg, self.args.backbone)

    def checkpoint(self, net, acc, epoch):
        """The best-checkpoint dict of `net` (networks.checkpoint.make_checkpoint)."""
        a = self.args
        return make_checkpoint(net, acc, epoch, self.network_config(), self.method, a.dataset, a.trial,
                               self.data.known, vars(a), self.git)

    def save(self, state, suffix):
        if not self.is_main:
            return
        for dataset in self.datasets:  # CIFAR+10: same known classes, the file serves CIFAR+50 too
            save_checkpoint(state, self.weights(suffix, dataset=dataset))

    def log(self, epoch, stats):
        """One JSON line per epoch on stdout and in runs/<run>/metrics.jsonl; tensorboard with -t."""
        if not self.is_main:
            return
        line = json.dumps({"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}})
        print(line, flush=True)
        append_line(self.log_path(), line)  # whole lines only
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(key, value, epoch)

    def log_path(self):
        return os.path.join(self.run_dir, "metrics.jsonl")

    def log_size(self):
        """Bytes in metrics.jsonl now (saved in ...Last.pth: see trim_log)."""
        return os.path.getsize(self.log_path()) if os.path.isfile(self.log_path()) else 0

    def save_config(self, keep_log_bytes=None):
        """The run's first writes (rank 0), once every check has passed: with --overwrite the old
        run's files go first; metrics.jsonl is made whole (trim_log; with --continue to the size
        `keep_log_bytes` its state recorded); then config.json, and tensorboard with -t."""
        if not self.is_main:
            return
        a = self.args
        if a.overwrite and not a.resume:
            remove_old_run(self.files, self.run_dir)
        config = os.path.join(self.run_dir, "config.json")
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            trim_log(self.log_path(), keep_log_bytes)
            with atomic_write(config, "w") as f:
                json.dump({"args": vars(a), "dataset_config": self.cfg, "git": self.git,
                           "known_classes": self.data.known, "unknown_classes": self.data.unknown,
                           "known_class_names": self.data.known_names,
                           "unknown_class_names": self.data.unknown_names,
                           "normalization": {"mean": self.data.mean, "std": self.data.std}}, f, indent=1)
        except OSError as e:
            raise UserError(f"cannot write {e.filename or config} ({e.strerror}): the disk is full or the "
                            f"folder not writable; free space or fix its permissions") from None
        if a.tensorboard:
            from tensorboardX import SummaryWriter  # only needed with -t

            self.writer = SummaryWriter(self.run_dir)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.accel.close()
        self.release()
