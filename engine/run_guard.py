"""What a training run may replace, and what it removes: the checks that keep one run from
destroying another (an existing run, a begun -r phase, a run training now, an unwritable
file, arguments that cannot make a run), and --overwrite's removal of the old run's files."""
import math
import os
import shutil

from filelock import Timeout

from core.errors import UserError
from core.files import check_file_writable, ensure_writable
from engine.cli import check_common_args
from networks.checkpoint import read_checkpoint
from networks.weights import LAST, RUN_FILES, saved_under, weights_path


def run_files(args, method):
    """Every checkpoint path the run writes (CIFAR+10: the CIFAR+50 copies too)."""
    return [weights_path(ds, args.trial, args.name, suffix) for ds in saved_under(args.dataset)
            for suffix in RUN_FILES[method]]


def check_run_state(args, method, run_dir, locks):
    """Refuse to start a run that would replace another: a first run whose checkpoints or runs/
    folder exist, a -r phase already started or finished, a run that is training now (one of
    `locks`, filelock.FileLocks, held by another process; probed only where its file exists, so
    that nothing is written). --overwrite lifts the first two; --continue is checked against the
    state it continues (engine/continuing.py)."""
    for lock in locks:
        if os.path.exists(lock.lock_file):
            try:
                lock.acquire(timeout=0)
                lock.release()
            except Timeout:
                raise UserError(f"run {os.path.basename(run_dir)} is being trained now by another process (it "
                                f"holds {lock.lock_file}); wait for it to end, stop it, or give another --name") from None
    if args.continue_run or args.overwrite:
        return
    if args.resume:
        check_second_phase(weights_path(args.dataset, args.trial, args.name, LAST[method]))
        return
    found = [p for p in run_files(args, method) if os.path.isfile(p)]
    found += [run_dir + os.sep] if os.path.exists(run_dir) else []
    if found:
        raise UserError(f"run {os.path.basename(run_dir)} exists ({found[0]}"
                        f"{f' and {len(found) - 1} more' if len(found) > 1 else ''}); this command would "
                        f"replace it: add --continue to pick up an interrupted run, -r for the second "
                        f"phase, give another --name, or add --overwrite to replace it")


def check_second_phase(path):
    """-r starts the second phase from the first run's best checkpoints; refuse when the state
    at `path` (...Last.pth) shows the first run unfinished, or a -r phase already begun (its
    checkpoints are -r's)."""
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


def check_writable(files, run_dir):
    """Every folder and every checkpoint file the run writes, before any data is trained on."""
    for folder in dict.fromkeys([os.path.dirname(p) for p in files] + [run_dir]):
        ensure_writable(folder)
    for path in files + [os.path.join(run_dir, "config.json"), os.path.join(run_dir, "metrics.jsonl")]:
        check_file_writable(path, "give another --name")


def remove_old_run(files, run_dir):
    """--overwrite: the replaced run's checkpoints `files` and its runs/ folder, so that no old
    file stays beside the new ones."""
    old = [p for p in files if os.path.isfile(p)]
    try:
        for path in old:
            os.remove(path)
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)
            old.append(run_dir + os.sep)
    except OSError as e:
        raise UserError(f"--overwrite: cannot remove {e.filename} ({e.strerror}); fix its permissions "
                        f"or give another --name") from None
    if old:
        print(f"--overwrite: removed the previous run's {', '.join(old)}", flush=True)


def check_training_args(args):
    check_common_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr {args.lr}: give a positive, finite learning rate, e.g. --lr 0.01")
    if args.overwrite and args.continue_run:
        raise UserError("--overwrite starts the run afresh and --continue picks up the interrupted one: "
                        "give one of them")
    if getattr(args, "pretrained", None) is not None and args.resume:
        raise UserError("--pretrained gives a first run its starting weights; -r starts from the first run's "
                        "checkpoint: drop --pretrained")
