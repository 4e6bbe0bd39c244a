"""What both training scripts share: setup, checkpoint names, best-checkpoint saving, logs."""
import json
import math
import os
import shutil

import torch

from datasets.trial import OpenSetData
from datasets.pipeline import build_loader
from engine.accel import Accel
from engine.cli import check_common_args, git_commit, print_header, resolve_device, seed_everything
from core.errors import UserError
from core.files import atomic_write, check_file_writable, ensure_writable
from core.lock import RunLock
from core.logfile import append_line, trim_log
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.weights import LAST, RUN_FILES, lock_path, saved_under, weights_path

LOG_EVERY = 20  # steps between host reads of the running loss (no per-step device sync)


def check_training_args(args):
    check_common_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
    if args.overwrite and args.continue_run:
        raise UserError("--overwrite starts the run afresh and --continue picks up the interrupted one: "
                        "give one of them")


class TrainingRun:
    """Device, data loaders, epoch range and logs of one training run.

    A context manager: entering takes the run's lock (rank 0), leaving releases it. Nothing
    is written before __enter__, and __enter__ writes only the lock file."""

    def __init__(self, args, method, phase_key):
        check_training_args(args)
        self.args, self.method = args, method
        self.phase = int(args.resume)  # 0: first run, 1: resumed run with the lower learning rate
        self.run_dir = os.path.join("runs", f"{args.dataset}_{args.trial}_{args.name}{method}")
        self.datasets = saved_under(args.dataset)  # CIFAR+10: its files serve CIFAR+50 too
        self.locks = [RunLock(lock_path(ds, args.trial, args.name, method), f"run {ds}_{args.trial}_{args.name}{method}")
                      for ds in self.datasets]
        self.check_run_state()  # at once, before the data is read; again under the lock (__enter__)
        self.accel = Accel(resolve_device(args.device), args.amp, args.compile, args.sync_bn)
        self.device, self.is_main = self.accel.device, self.accel.is_main
        self.git = print_header(args, self.device) if self.is_main else git_commit()
        if not self.is_main:
            self.accel.barrier()  # rank 0 writes the split and normalization caches first
        self.data = OpenSetData.from_args(args, args.trial)
        if self.is_main:
            self.accel.barrier()
        self.cfg = self.data.cfg
        self.check_not_empty()
        self.hparams = self.cfg[phase_key]
        workers = self.cfg["num_workers"] if args.workers is None else args.workers
        batch = self.cfg["batch_size"]  # the global batch: torchrun splits it across ranks
        loader = {"pipeline": args.pipeline, "workers": workers, "seed": args.seed, "device": self.device,
                  "shard": self.accel.shard, "channels_last": self.accel.channels_last}
        self.train_loader = build_loader(self.data.train_dataset(), batch, True, **loader)
        self.val_loader = build_loader(self.data.val_dataset(), batch, False, **loader)
        self.writer = None  # made by save_config: bad input found before then leaves no file behind
        self.resumed_from = None  # with -r: the first run's checkpoint dict (see start_epoch)
        self.continued_log_size = None  # --continue: metrics.jsonl's size in the state it continues
        if self.is_main:
            self.check_writable()
        # seeded last: whether the set-up above hit its caches must not change the run's numbers
        seed_everything(args.seed)

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

    def run_files(self):
        """Every checkpoint path this run writes (CIFAR+10: the CIFAR+50 copies too)."""
        return [self.weights(suffix, ds) for ds in self.datasets for suffix in RUN_FILES[self.method]]

    def check_run_state(self):
        """Refuse to start a run that would replace another: a first run whose checkpoints or runs/
        folder exist, a -r phase already started or finished, a run that is training now. --overwrite
        lifts the first two; --continue is checked against the state it continues (engine/resume.py)."""
        for lock in self.locks:
            if lock.fd is None:
                lock.refuse_if_held()
        a = self.args
        if a.continue_run or a.overwrite:
            return
        if a.resume:
            self.check_second_phase()
            return
        found = [p for p in self.run_files() if os.path.isfile(p)]
        found += [self.run_dir + os.sep] if os.path.exists(self.run_dir) else []
        if found:
            raise UserError(f"run {os.path.basename(self.run_dir)} exists ({found[0]}"
                            f"{f' and {len(found) - 1} more' if len(found) > 1 else ''}); this command would "
                            f"replace it: add --continue to pick up an interrupted run, -r for the second "
                            f"phase, give another --name, or add --overwrite to replace it")

    def check_second_phase(self):
        """-r starts the second phase from the first run's best checkpoints; refuse when ...Last.pth
        shows the first run unfinished, or a -r phase already begun (its checkpoints are -r's)."""
        path = self.weights(LAST[self.method])
        if not os.path.isfile(path):
            return  # no state: an original or imported checkpoint, or a first run of an older version
        try:
            state = read_checkpoint(path)
        except UserError as e:
            raise UserError(f"{e}; or add --overwrite to start -r from the best checkpoints without it") from None
        phase, epoch, end = state.get("phase"), state.get("epoch"), state.get("end_epoch")
        if phase not in (0, 1) or not isinstance(epoch, int) or not isinstance(end, int):
            raise UserError(f"{path} is damaged or from another version (phase {phase!r}, epoch {epoch!r}); "
                            f"add --overwrite to start -r from the best checkpoints anyway")
        if phase == 1 and epoch < end:
            raise UserError(f"the -r phase of this run was interrupted in epoch {epoch} ({path}): continue it "
                            f"with -r --continue, or add --overwrite to start -r again from the best checkpoints")
        if phase == 1:
            raise UserError(f"the -r phase of this run already finished (epoch {end - 1}, {path}) and its "
                            f"checkpoints are -r's: evaluate them, or add --overwrite to run -r again from them")
        if epoch < end:
            raise UserError(f"the first run stopped after {epoch} of its {end} epochs ({path}): finish it with "
                            f"--continue (without -r), or add --overwrite to start -r from its best checkpoint "
                            f"anyway")

    def check_not_empty(self):
        d = self.data
        for part, idx in (("training", d.train_idx), ("validation", d.val_idx)):
            if len(idx) == 0:
                raise UserError(f"{d.name} trial {d.trial} has no {part} image of its known classes "
                                f"({len(d.train_idx)} training, {len(d.val_idx)} validation images; val_fraction "
                                f"{self.cfg['val_fraction']}): add images (two or more per class), or change "
                                f"val_fraction in datasets/config.json")

    def check_writable(self):
        """Every folder and every checkpoint file this run writes, before any data is trained on."""
        files = self.run_files()
        for folder in dict.fromkeys([os.path.dirname(p) for p in files] + [self.run_dir]):
            ensure_writable(folder)
        for path in files + [os.path.join(self.run_dir, "config.json"), os.path.join(self.run_dir, "metrics.jsonl")]:
            check_file_writable(path, "give another --name")

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
        """0 for a first run; with -r, load the first run's checkpoint `suffix` into `net` and
        continue after its saved (finished) epoch."""
        if not self.args.resume:
            return 0
        a = self.args
        try:
            self.resumed_from = load_checkpoint(self.weights(suffix), net)
            return self.resumed_from["epoch"] + 1
        except UserError as e:
            raise UserError(f"{e}; -r continues a first run: train one with `python {script} "
                            f"--dataset {a.dataset} --trial {a.trial} --name {a.name}`") from None

    def optimizer(self, net):
        h = self.hparams
        return torch.optim.SGD(net.parameters(), lr=h["learning_rate"][self.phase], momentum=h.get("momentum", 0.9),
                               weight_decay=h["weight_decay"])

    def network_config(self):
        return NetworkConfig.for_data(self.cfg, self.args.backbone)

    def checkpoint(self, net, acc, epoch):
        """The original's dict {'net', 'acc', 'epoch'} plus what rebuilds and explains the network."""
        return {"net": net.state_dict_with_aliases(), "acc": acc, "epoch": epoch, "backbone": self.args.backbone,
                "network": self.network_config().as_dict(), "method": self.method, "dataset": self.args.dataset,
                "trial": self.args.trial, "known_classes": list(self.data.known),
                "args": vars(self.args), "git": self.git}

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

    def save_config(self):
        """The run's first writes (rank 0), once every check has passed: with --overwrite the old
        run's files go first; metrics.jsonl is made whole (trim_log, with --continue to the size
        its state recorded: `continued_log_size`); then config.json, and tensorboard with -t."""
        if not self.is_main:
            return
        a = self.args
        if a.overwrite and not a.resume:
            self.remove_old_run()
        config = os.path.join(self.run_dir, "config.json")
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            trim_log(self.log_path(), self.continued_log_size)
            with atomic_write(config, "w") as f:
                json.dump({"args": vars(a), "dataset_config": self.cfg, "git": self.git,
                           "known_classes": self.data.known, "unknown_classes": self.data.unknown,
                           "normalization": {"mean": self.data.mean, "std": self.data.std}}, f, indent=1)
        except OSError as e:
            raise UserError(f"cannot write {e.filename or config} ({e.strerror}): the disk is full or the "
                            f"folder not writable; free space or fix its permissions") from None
        if a.tensorboard:
            from tensorboardX import SummaryWriter  # only needed with -t

            self.writer = SummaryWriter(self.run_dir)

    def remove_old_run(self):
        """--overwrite: the replaced run's checkpoints and runs/ folder, so that no old file stays
        beside the new ones."""
        old = [p for p in self.run_files() if os.path.isfile(p)]
        try:
            for path in old:
                os.remove(path)
            if os.path.isdir(self.run_dir):
                shutil.rmtree(self.run_dir)
                old.append(self.run_dir + os.sep)
        except OSError as e:
            raise UserError(f"--overwrite: cannot remove {e.filename} ({e.strerror}); fix its permissions "
                            f"or give another --name") from None
        if old:
            print(f"--overwrite: removed the previous run's {', '.join(old)}", flush=True)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.accel.close()
        self.release()


def check_finite(values, epoch, first_batch, last_batch):
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"the loss became non-finite in epoch {epoch}, batches {first_batch}-{last_batch}; "
                        f"no checkpoint was written from it: lower the learning rate or check the data")

