"""What both training scripts share: setup, checkpoint names, best-checkpoint saving, logs."""
import json
import math
import os

import torch

from datasets.loaders import OpenSetData
from datasets.pipeline import build_loader
from engine.accel import Accel
from engine.cli import check_common_args, git_commit, print_header, resolve_device, seed_everything
from engine.errors import UserError
from engine.files import ensure_writable
from networks.checkpoint import load_checkpoint, save_checkpoint

WEIGHTS_DIR = os.path.join("networks", "weights")  # relative to the working directory, as the original
LOG_EVERY = 20  # steps between host reads of the running loss (no per-step device sync)


def weights_path(dataset, trial, name, suffix):
    """networks/weights/<dataset>/<dataset>_<trial>_<name><suffix>.pth (SPEC section 3)."""
    return os.path.join(WEIGHTS_DIR, dataset, f"{dataset}_{trial}_{name}{suffix}.pth")


def check_training_args(args):
    check_common_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")


class TrainingRun:
    """Device, data loaders, epoch range and logs of one training run."""

    def __init__(self, args, method, phase_key):
        check_training_args(args)
        self.args, self.method = args, method
        self.accel = Accel(resolve_device(args.device), args.amp, args.compile, args.sync_bn)
        self.device, self.is_main = self.accel.device, self.accel.is_main
        self.git = print_header(args, self.device) if self.is_main else git_commit()
        if not self.is_main:
            self.accel.barrier()  # rank 0 writes the split and normalization caches first
        self.data = OpenSetData.from_args(args, args.trial)
        if self.is_main:
            self.accel.barrier()
        self.cfg = self.data.cfg
        self.phase = int(args.resume)  # 0: first run, 1: resumed run with the lower learning rate
        self.hparams = self.cfg[phase_key]
        workers = self.cfg["num_workers"] if args.workers is None else args.workers
        batch = self.cfg["batch_size"]  # the global batch: torchrun splits it across ranks
        loader = {"pipeline": args.pipeline, "workers": workers, "seed": args.seed, "device": self.device,
                  "shard": self.accel.shard, "channels_last": self.accel.channels_last}
        self.train_loader = build_loader(self.data.train_dataset(), batch, True, **loader)
        self.val_loader = build_loader(self.data.val_dataset(), batch, False, **loader)
        self.run_dir = os.path.join("runs", f"{args.dataset}_{args.trial}_{args.name}{method}")
        self.writer = None  # made by save_config: bad input found before then leaves no file behind
        self.resumed_from = None  # with -r: the first run's checkpoint dict (see start_epoch)
        also = ["CIFAR+50"] if args.dataset == "CIFAR+10" else []  # see save()
        folders = [os.path.dirname(self.weights("", ds)) for ds in [args.dataset] + also] + [self.run_dir]
        for folder in folders if self.is_main else ():
            ensure_writable(folder)
        # seeded last: whether the set-up above hit its caches must not change the run's numbers
        seed_everything(args.seed)

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

    def network_kwargs(self):
        c = self.cfg
        return dict(num_classes=c["num_known_classes"], num_channels=c["im_channels"], im_size=c["im_size"],
                    dropout=c["dropout"], backbone=self.args.backbone)

    def checkpoint(self, net, acc, epoch):
        """The original's dict {'net', 'acc', 'epoch'} plus what rebuilds and explains the network."""
        return {"net": net.state_dict_with_aliases(), "acc": acc, "epoch": epoch, "backbone": self.args.backbone,
                "network": self.network_kwargs(), "method": self.method, "dataset": self.args.dataset,
                "trial": self.args.trial, "known_classes": list(self.data.known),
                "args": vars(self.args), "git": self.git}

    def save(self, state, suffix):
        if not self.is_main:
            return
        save_checkpoint(state, self.weights(suffix))
        if self.args.dataset == "CIFAR+10":  # same known classes: the file serves CIFAR+50 too
            save_checkpoint(state, self.weights(suffix, dataset="CIFAR+50"))

    def log(self, epoch, stats):
        """One JSON line per epoch on stdout and in runs/<run>/metrics.jsonl; tensorboard with -t."""
        if not self.is_main:
            return
        line = json.dumps({"epoch": epoch, **{k: round(v, 6) for k, v in stats.items()}})
        print(line, flush=True)
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(line + "\n")
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(key, value, epoch)

    def save_config(self):
        """The run's first files (rank 0): config.json, and the tensorboard writer with -t."""
        if not self.is_main:
            return
        os.makedirs(self.run_dir, exist_ok=True)
        if self.args.tensorboard:
            from tensorboardX import SummaryWriter  # only needed with -t

            self.writer = SummaryWriter(self.run_dir)
        with open(os.path.join(self.run_dir, "config.json"), "w") as f:
            json.dump({"args": vars(self.args), "dataset_config": self.cfg, "git": self.git,
                       "known_classes": self.data.known, "unknown_classes": self.data.unknown,
                       "normalization": {"mean": self.data.mean, "std": self.data.std}}, f, indent=1)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.accel.close()


def check_finite(values, epoch, first_batch, last_batch):
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"the loss became non-finite in epoch {epoch}, batches {first_batch}-{last_batch}; "
                        f"no checkpoint was written from it: lower the learning rate or check the data")

