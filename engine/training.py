"""TrainingRun: what both training scripts share around their loop: set-up (device, data,
loaders, seeding), the run's lock and checks, -r's start, the optimizer, best-checkpoint saving,
and the run's log and config in runs/<run>/. (The loop's own state: engine/state.py.)"""
import functools
import json
import os

from core.errors import UserError
from core.files import atomic_write
from core.lock import RunLock
from core.logfile import append_line, trim_log
from datasets.pipeline import build_loader, loader_generators
from datasets.summary import summary_line
from datasets.trial import OpenSetData
from engine.accel import Accel
from engine.commands import train_command
from engine.placement import choose_pipeline, pipeline_name
from engine.cli import git_commit, print_header, resolve_device, seed_everything
from engine.recipe import Recipe, phase_schedule, use_normalization
from engine.run_guard import check_run_state, check_training_args, check_writable, remove_old_run, run_files
from networks.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.pretrained import IMAGENET
from networks.weights import lock_path, saved_under, weights_path


class TrainingRun:
    """Device, data loaders, epoch range and logs of one training run.

    A context manager: entering takes the run's lock (rank 0), leaving releases it. Nothing
    is written before __enter__, and __enter__ writes only the lock file. Every way out (a
    refusal in the constructor or __enter__, an error, a stop by signal) goes through close:
    the tensorboard writer closed, the process group left, the lock released."""

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
        self.accel = None
        try:
            self._open_device()  # 2.
            self._load_trial_rank0_first(phase_key)  # 3.
            self._build_loaders()  # 4.
            if self.is_main:
                print(summary_line(self.data), flush=True)
                check_writable(self.files, self.run_dir)  # 5.
        except BaseException:
            self.close()  # no __exit__ follows a failed constructor
            raise
        seed_everything(args.seed)  # 6.

    def _open_device(self):
        a = self.args
        self.accel = Accel(resolve_device(a.device), a.amp, a.compile, a.sync_bn, tf32=a.tf32)
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
        use_normalization(self.data, self.args.recipe)  # the recipe's (engine/recipe.py)

    def _build_loaders(self):
        a = self.args
        workers = self.cfg["num_workers"] if a.workers is None else a.workers
        batch = self.recipe.batch_size  # the global batch: torchrun splits it across ranks
        train, val = self.data.train_dataset(), self.data.val_dataset()
        train = self.recipe.train_subset(train, val)  # the recipe's images and augmentation (engine/recipe.py)
        # one decision for all ranks (engine/placement.py)
        pipeline = choose_pipeline(self.accel, a.pipeline, [train, val], self.network_config(), self.method, batch)
        loader = {"pipeline": pipeline, "workers": workers, "seed": a.seed, "device": self.device,
                  "shard": self.accel.shard, "channels_last": self.accel.channels_last, "check_memory": False}
        self.train_loader = build_loader(train, batch, True, **loader)
        self.val_loader = build_loader(val, batch, False, **loader)
        self.pipeline = pipeline_name(self.train_loader)  # saved in ...Last.pth
        if self.is_main:  # the run header's last line
            print(f"speed: pipeline {self.pipeline}, {self.accel.describe()}", flush=True)

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
                refusal = e
        try:
            if not self.accel.all_agree(refusal is None) and refusal is None:
                raise UserError(f"rank 0 refused to start {self.run_dir}: see its message")
            if refusal is not None:
                raise refusal
        except BaseException:
            self.close()  # no __exit__ follows a failed __enter__
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def release(self):
        for lock in self.locks:
            lock.release()

    def check_run_state(self):
        check_run_state(self.args, self.method, self.run_dir, self.locks)

    @functools.cached_property
    def recipe(self):
        """The run's recipe (engine/recipe.py) over the config's schedule; built once."""
        return Recipe.for_run(self.args.recipe, self.args.dataset, self.cfg, self.hparams)

    def generators(self):
        """The data's random generators, saved and restored with an interrupted run's state."""
        return loader_generators([self.train_loader, self.val_loader])

    def weights(self, suffix, dataset=None):
        return weights_path(dataset or self.args.dataset, self.args.trial, self.args.name, suffix)

    def epochs(self, start_epoch):
        count = self.args.epochs or self.recipe.max_epoch[self.phase]
        return range(start_epoch, start_epoch + count)

    def start_epoch(self, net, suffix, script):
        """0 for a first run; -r: load the first run's `suffix` into `net` (resumed_from), go on after its epoch."""
        if not self.args.resume:
            return 0
        try:
            self.resumed_from = load_checkpoint(self.weights(suffix), net)
            return self.resumed_from["epoch"] + 1
        except UserError as e:
            raise UserError(f"{e}; -r continues a first run: train one with "
                            f"`{train_command(script, vars(self.args))}`") from None

    def optimizer(self, net):
        return self.recipe.optimizer(net.parameters(), self.phase)

    def network_config(self):
        """The NetworkConfig of this run; `pretrained`: --pretrained ("imagenet" or the file's
        absolute path), or with -r the first run's (recorded once start_epoch has read it)."""
        a = self.args
        pretrained = getattr(a, "pretrained", None)
        if pretrained not in (None, IMAGENET):
            pretrained = os.path.abspath(pretrained)
        if a.resume and self.resumed_from:
            pretrained = (self.resumed_from.get("network") or {}).get("pretrained")
        return NetworkConfig.for_data(self.cfg, a.backbone, pretrained)

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
        """Close the writer, leave the process group, release the lock; safe to call again."""
        try:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        finally:
            try:
                if self.accel is not None:
                    self.accel.close()
            finally:
                self.release()
