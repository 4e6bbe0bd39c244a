"""A training run's files: which it writes, the checks that keep it from destroying another, its lock and config."""
import contextlib
import json
import math
import os
import shutil

from filelock import FileLock, Timeout

from core.errors import UserError, os_error_cause
from core.files import PREVIOUS, atomic_write, check_file_writable, check_name_length, ensure_writable
from engine.cli import check_common_args
from networks.checkpoint import read_checkpoint
from networks.weights import LAST, RUN_FILES, calibration_path, saved_under, weights_path


def run_files(args, method):
    """Every checkpoint path the run writes (CIFAR+10: the CIFAR+50 copies too)."""
    return [weights_path(ds, args.trial, args.name, suffix) for ds in saved_under(args.dataset)
            for suffix in RUN_FILES[method]]


def longest_names(args, method):
    """The longest names the run and its evaluation write, in each folder: a calibration beside a checkpoint, a
    plot's link to its previous content (engine/figures.py plot_path, core/files.py FileSet)."""
    t, stem = args.trial, f"{args.dataset}_{args.name}{method}_trials{args.trial}-{args.trial}"
    return [calibration_path(weights_path(args.dataset, t, args.name, RUN_FILES[method][0])),
            os.path.join("results", f"{PREVIOUS}{stem}_trial{t}_training.png")]


def check_training_args(args, method):
    check_common_args(args)
    check_name_length(args.name, longest_names(args, method))  # before any data is read, not at the first save
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr {args.lr}: give a positive, finite learning rate, e.g. --lr 0.01")
    if getattr(args, "augment_batches", 1) < 1:
        raise UserError(f"--augment_batches {args.augment_batches}: give 1 (each batch on its own) or more")
    if args.overwrite and args.continue_run:
        raise UserError("--overwrite starts the run afresh and --continue picks up the interrupted one: "
                        "give one of them")
    if getattr(args, "pretrained", None) is not None and args.resume:
        raise UserError("--pretrained gives a first run its starting weights; the second phase (-r) starts from "
                        "the first run's checkpoint: drop --pretrained")


class RunLock:
    """One training of a run at a time (the OS drops the lock if the process dies); its files go on release."""

    def __init__(self, path, run):
        self.lock, self.run, self.made = FileLock(path), run, []

    def _take(self):
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise UserError(f"run {self.run} is being trained now by another process (it holds {self.lock.lock_file}); "
                            f"wait for it to end, stop it, or give another --name") from None
        except OSError as e:  # e.g. a folder where the lock file belongs
            raise UserError(f"cannot take the lock of run {self.run}: {self.lock.lock_file} "
                            f"{os_error_cause(e, self.lock.lock_file)}") from None

    def acquire(self):
        folder = os.path.dirname(os.path.abspath(self.lock.lock_file))
        while not os.path.isdir(folder):
            self.made.append(folder)
            folder = os.path.dirname(folder)
        self._take()

    def release(self):
        if self.lock.is_locked:
            with contextlib.suppress(OSError):
                os.remove(self.lock.lock_file)
            self.lock.release()
        for folder in self.made:  # innermost first, each only when empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self.made = []


def refuse_to_replace(args, method, run_dir):
    """Refuse a run that would replace another: a first run whose files exist, or a second phase (-r) already begun
    (checked under the run's lock: RunLock). --overwrite lifts both; engine/continuing.py checks --continue."""
    if args.continue_run or args.overwrite:
        return
    if args.resume:
        return check_second_phase(weights_path(args.dataset, args.trial, args.name, LAST[method]))
    found = [p for p in run_files(args, method) if os.path.isfile(p)]
    found += [run_dir + os.sep] if os.path.exists(run_dir) else []
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    if found:
        raise UserError(f"run {os.path.basename(run_dir)} exists ({found[0]}{more}); this command would replace it: "
                        f"add --continue to pick up an interrupted run, -r for the second phase, give another "
                        f"--name, or add --overwrite to replace it")


def check_second_phase(path):
    """Refuse -r when ...Last.pth at `path` shows the first run unfinished, or a second phase already begun."""
    if not os.path.isfile(path):
        return  # an original or imported checkpoint, or a first run of an older version
    try:
        state = read_checkpoint(path)
    except UserError as e:
        raise UserError(f"{e}; or add --overwrite to start -r from the best checkpoints without it") from None
    phase, epoch, end = state.get("phase"), state.get("epoch"), state.get("end_epoch")
    if phase not in (0, 1) or not isinstance(epoch, int) or not isinstance(end, int):
        raise UserError(f"{path} is damaged or from another version (phase {phase!r}, epoch {epoch!r}); "
                        f"add --overwrite to start -r from the best checkpoints anyway")
    if phase == 1 and epoch < end:
        raise UserError(f"the second phase (-r) of this run was interrupted in epoch {epoch} ({path}): continue "
                        f"it with -r --continue, or add --overwrite to start -r again from the best checkpoints")
    if phase == 1:
        raise UserError(f"the second phase (-r) of this run already finished (epoch {end - 1}, {path}) and its "
                        f"checkpoints are its own: evaluate them, or add --overwrite to run -r again from them")
    if epoch < end:
        raise UserError(f"the first run stopped after {epoch} of its {end} epochs ({path}): finish it with "
                        f"--continue (without -r), or add --overwrite to start -r from its best checkpoint anyway")


def check_writable(files, run_dir):
    """Every folder and every file the run writes, before any data is trained on."""
    for folder in dict.fromkeys([os.path.dirname(p) for p in files] + [run_dir]):
        ensure_writable(folder)
    for path in files + [os.path.join(run_dir, "config.json"), os.path.join(run_dir, "metrics.jsonl")]:
        check_file_writable(path, "give another --name")


def remove_old_run(files, run_dir):
    """--overwrite: remove the replaced run's checkpoints `files` and runs/ folder."""
    old = [p for p in files if os.path.isfile(p)]
    try:
        for path in old:
            os.remove(path)
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)
            old.append(run_dir + os.sep)
    except OSError as e:
        raise UserError(f"--overwrite: cannot remove {e.filename} {os_error_cause(e)}, or give another "
                        f"--name") from None
    if old:
        print(f"--overwrite: removed the previous run's {', '.join(old)}", flush=True)


def write_config(run_dir, config):
    """runs/<run>/config.json, whole or not at all."""
    path = os.path.join(run_dir, "config.json")
    try:
        with atomic_write(path, "w") as f:
            json.dump(config, f, indent=1)
    except OSError as e:
        raise UserError(f"cannot write {e.filename or path} {os_error_cause(e, path)}") from None
