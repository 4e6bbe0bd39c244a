"""A training run never destroys another (issue 11): an existing run is refused unless
--continue, -r or --overwrite says what to do with it; a run holds a lock for its whole life;
nothing is written before every input check has passed; --name, --seed, --alpha, --lbda and
datasets/config.json are checked first; a full disk at metrics.jsonl, an unwritable checkpoint
and a ...Last.pth that --continue cannot use are one line each.

Most cases run a script's main() in this process (conftest.run_script, in_process=True) from an
empty working folder and compare every file's bytes before and after.
"""
import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, assert_one_line_error, run_script
from e2e.workdirs import checkpoint, datasets_dir, private_datasets_dir
from fakedata import write_image_folder

TRAIN_CAC, TRAIN_CE, EVAL_CAC = "train_cacOpenset.py", "train_closedSet.py", "eval_cacOpenset.py"
DIGITS = ("--dataset", "Digits", "--trial", 0, "--epochs", 1, "--workers", 0)
WEIGHTS = os.path.join("networks", "weights", "Digits")
CHOICES = ("--continue", "-r", "another --name", "--overwrite")


def snapshot(folder):
    """{relative path: bytes (files) or None (folders)} of everything under `folder`, except the
    private data sets' folder (tmp_path/datasets_dir) and cache folder (tmp_path/cache: private_cache)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if dirpath == str(folder):
            dirnames[:] = [d for d in dirnames if d not in ("datasets_dir", "cache")]
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), folder)] = None
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                found[os.path.relpath(os.path.join(dirpath, name), folder)] = f.read()
    return found


def put(cwd, relative, content=b"a good file"):
    path = os.path.join(cwd, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


def good_run(cwd, name="good"):
    """A trained run's files, as far as these checks look at them."""
    put(cwd, os.path.join(WEIGHTS, f"Digits_0_{name}CACclassifierAnchorLoss.pth"), b"good weights")
    put(cwd, os.path.join("runs", f"Digits_0_{name}CAC", "config.json"), b'{"good": "config"}')
    put(cwd, os.path.join("runs", f"Digits_0_{name}CAC", "metrics.jsonl"), b'{"epoch": 0}\n')


# ------------------------------------------------------------------ an existing run is refused
@pytest.mark.parametrize("script,dataset,existing", [
    (TRAIN_CAC, "Digits", os.path.join(WEIGHTS, "Digits_0_oldCACclassifierAnchorLoss.pth")),
    (TRAIN_CAC, "Digits", os.path.join(WEIGHTS, "Digits_0_oldCACclassifierLast.pth")),
    (TRAIN_CE, "Digits", os.path.join(WEIGHTS, "Digits_0_oldclosedSetClassifier.pth")),
    (TRAIN_CAC, "Digits", os.path.join("runs", "Digits_0_oldCAC", "config.json")),  # the run folder alone
    # a CIFAR+10 run also writes CIFAR+50 copies: one of those is an existing run too
    (TRAIN_CAC, "CIFAR+10", os.path.join("networks", "weights", "CIFAR+50", "CIFAR+50_0_oldCACclassifierAccuracy.pth")),
], ids=["checkpoint", "last_only", "closed_set", "run_folder", "cifar_plus50_copy"])
def test_first_run_refuses_to_replace_an_existing_run(tmp_path, script, dataset, existing):
    put(tmp_path, existing)
    before = snapshot(tmp_path)
    proc = run_script(script, "--dataset", dataset, "--trial", 0, "--name", "old", "--workers", 0, cwd=tmp_path, in_process=True)
    line = assert_one_line_error(proc, "exists", *CHOICES)
    assert existing.split(os.sep)[-1] in line or "runs" in line, line
    assert snapshot(tmp_path) == before


def test_bad_input_never_touches_a_good_run(tmp_path, private_cache):
    """Bad input with --overwrite: the old run is removed only after every check has passed, so
    here it stays, byte for byte (--alpha nan used to rewrite its config.json first)."""
    good_run(tmp_path)
    before = snapshot(tmp_path)
    base = (*DIGITS, "--name", "good", "--overwrite")
    for extra, fragment in ((["--alpha=nan"], "--alpha nan"), (["--alpha=inf"], "--alpha inf"),
                            (["--alpha=-inf"], "--alpha -inf"), (["--lbda=nan"], "--lbda nan"),
                            (["--lbda=inf"], "--lbda inf"), (["--seed=-1"], "--seed -1"),
                            ([f"--seed={2**64}"], f"--seed {2**64}"), (["--epochs=0"], "--epochs 0"),
                            (["--epochs=1e3"], "invalid int value"), (["--continue"], "give one of them")):
        proc = run_script(TRAIN_CAC, *base, *extra, cwd=tmp_path, in_process=True)
        assert_one_line_error(proc, fragment)
        assert snapshot(tmp_path) == before, extra


def test_bad_dataset_config_never_touches_a_good_run(tmp_path):
    def no_batch(config):
        config["Digits"]["batch_size"] = 0

    folder = private_datasets_dir(str(tmp_path / "datasets_dir"), no_batch)
    cwd = tmp_path / "work"
    good_run(cwd)
    before = snapshot(cwd)
    with datasets_dir(folder):
        proc = run_script(TRAIN_CAC, *DIGITS, "--name", "good", "--overwrite", cwd=str(cwd), in_process=True)
    assert_one_line_error(proc, "batch_size of Digits", os.path.join(folder, "config.json"), "is 0")
    assert snapshot(cwd) == before


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..", "-x", ".hidden", "a\x00b", "a\nb"])
@pytest.mark.parametrize("script", [TRAIN_CAC, EVAL_CAC])
def test_name_is_a_plain_file_name_part(tmp_path, script, name):
    args = DIGITS if script == TRAIN_CAC else ("-dataset", "Digits", "--num_trials", 1)
    proc = run_script(script, *args, f"--name={name}", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "--name", "plain name")
    assert os.listdir(tmp_path) == [] and not os.path.exists(tmp_path.parent / "x")


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
@pytest.mark.parametrize("script", [TRAIN_CE, EVAL_CAC])
def test_seed_outside_numpys_range_is_one_line(tmp_path, script, seed):
    args = DIGITS if script == TRAIN_CE else ("-dataset", "Digits", "--num_trials", 1)
    proc = run_script(script, *args, f"--seed={seed}", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, f"--seed {seed}", "4294967295")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ -r: a begun second phase is kept
def last_state(cwd, name, phase, epoch, end_epoch):
    path = checkpoint(cwd, name, "CACclassifierLast")
    state = torch.load(path, weights_only=True)
    state.update(phase=phase, epoch=epoch, end_epoch=end_epoch, step=0, args={"alpha": 10.0, "lbda": 0.1})
    torch.save(state, path)


@pytest.mark.parametrize("phase,epoch,end,fragments", [
    (1, 3, 3, ["the second phase (-r) of this run already finished", "--overwrite"]),
    (1, 2, 3, ["the second phase (-r) of this run was interrupted in epoch 2", "-r --continue", "--overwrite"]),
    (0, 1, 3, ["first run stopped after 1 of its 3 epochs", "--continue (without -r)", "--overwrite"]),
], ids=["r_finished", "r_interrupted", "first_unfinished"])
def test_resume_refuses_when_the_last_state_says_so(tmp_path, phase, epoch, end, fragments):
    checkpoint(tmp_path, "p", "CACclassifierAnchorLoss")
    last_state(tmp_path, "p", phase, epoch, end)
    before = snapshot(tmp_path)
    proc = run_script(TRAIN_CAC, *DIGITS, "-r", "--name", "p", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "Digits_0_pCACclassifierLast.pth", *fragments)
    assert snapshot(tmp_path) == before


def test_resume_names_overwrite_for_a_damaged_last_state(tmp_path):
    checkpoint(tmp_path, "p", "CACclassifierAnchorLoss")
    put(tmp_path, os.path.join(WEIGHTS, "Digits_0_pCACclassifierLast.pth"), b"half a checkpoint")
    proc = run_script(TRAIN_CAC, *DIGITS, "-r", "--name", "p", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "Digits_0_pCACclassifierLast.pth", "corrupt", "--overwrite")


def test_resume_with_overwrite_runs_the_second_phase_again(tmp_path, private_cache):
    checkpoint(tmp_path, "p", "CACclassifierAnchorLoss")  # a first run's best checkpoint, epoch 0
    last_state(tmp_path, "p", phase=1, epoch=3, end_epoch=3)  # a finished -r phase
    proc = run_script(TRAIN_CAC, *DIGITS, "-r", "--overwrite", "--name", "p", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0, proc.stderr
    last = torch.load(tmp_path / WEIGHTS / "Digits_0_pCACclassifierLast.pth", weights_only=True)
    assert (last["phase"], last["epoch"], last["end_epoch"]) == (1, 2, 2)  # -r ran epoch 1, after the file's 0


# ------------------------------------------------------------------ one training of a run at a time
HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock({path!r})
lock.acquire(timeout=0)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_training_refuses_while_the_first_holds_the_lock(tmp_path):
    """Another process holds the run's lock: refused in one line, nothing written. Killed, it leaves
    its lock file, which the next run simply takes."""
    lock = os.path.join(tmp_path, WEIGHTS, ".Digits_0_heldCAC.lock")
    os.makedirs(os.path.dirname(lock))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(path=lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(tmp_path)
        proc = run_script(TRAIN_CAC, *DIGITS, "--name", "held", "--overwrite", cwd=tmp_path, in_process=True)
        assert_one_line_error(proc, "is being trained now by another process", "another --name")
        assert snapshot(tmp_path) == before
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays
        holder.wait()
    assert os.path.exists(lock)
    proc = run_script(TRAIN_CAC, *DIGITS, "--name", "held", "--overwrite", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0, proc.stderr  # the stale file is taken over, not refused


def test_a_real_training_holds_its_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    first = subprocess.Popen([sys.executable, os.path.join(REPO, TRAIN_CE), "--dataset", "Digits", "--trial", "0",
                              "--epochs", "30", "--workers", "0", "--name", "twice"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in first.stdout:  # the first epoch line: the run has locked, written and trained
            if line.startswith('{"epoch": 0'):
                break
        proc = run_script(TRAIN_CE, *DIGITS, "--name", "twice", "--overwrite", cwd=tmp_path, in_process=True)
        assert_one_line_error(proc, "run Digits_0_twiceClosedSet is being trained now by another process")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    proc = run_script(TRAIN_CE, *DIGITS, "--name", "twice", "--overwrite", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "runs" / "Digits_0_twiceClosedSet" / "config.json") as f:
        assert json.load(f)["args"]["epochs"] == 1  # this run's, not the killed one's (30)


# ------------------------------------------------------------------ --overwrite replaces the whole run
def test_overwrite_removes_every_file_of_the_old_run(tmp_path, private_cache):
    good_run(tmp_path, "old")
    put(tmp_path, os.path.join(WEIGHTS, "Digits_0_oldCACclassifierCACLoss.pth"), b"old")
    put(tmp_path, os.path.join(WEIGHTS, "Digits_0_oldCACclassifierLast.pth"), b"old")
    put(tmp_path, os.path.join("runs", "Digits_0_oldCAC", "events.out.tfevents.old"), b"old")
    keep = put(tmp_path, os.path.join(WEIGHTS, "Digits_0_otherCACclassifierAnchorLoss.pth"), b"another run")
    proc = run_script(TRAIN_CAC, *DIGITS, "--name", "old", "--overwrite", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0, proc.stderr
    assert "--overwrite: removed the previous run's" in proc.stdout
    run_dir = tmp_path / "runs" / "Digits_0_oldCAC"
    assert sorted(os.listdir(run_dir)) == ["config.json", "metrics.jsonl"]  # no old event file
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [0]
    assert json.loads((run_dir / "config.json").read_text())["args"]["overwrite"] is True
    for suffix in ("AnchorLoss", "CACLoss", "Accuracy", "Last"):
        assert torch.load(tmp_path / WEIGHTS / f"Digits_0_oldCACclassifier{suffix}.pth", weights_only=True)
    assert open(keep, "rb").read() == b"another run"


def test_a_failed_config_write_keeps_the_old_config(tmp_path, monkeypatch, private_cache):
    """-r rewrites runs/<run>/config.json: atomically, so a full disk leaves the old one."""
    import engine.training

    checkpoint(tmp_path, "good", "CACclassifierAnchorLoss")
    config = put(tmp_path, os.path.join("runs", "Digits_0_goodCAC", "config.json"), b'{"good": "config"}')
    real_dump = json.dump

    def dump(obj, f, **kwargs):
        if isinstance(obj, dict) and "dataset_config" in obj:  # the run's config only
            f.write('{"args": {"half')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_dump(obj, f, **kwargs)

    monkeypatch.setattr(engine.training.json, "dump", dump)
    proc = run_script(TRAIN_CAC, *DIGITS, "-r", "--name", "good", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "config.json", "No space left on device")
    assert open(config, "rb").read() == b'{"good": "config"}'
    assert os.listdir(os.path.dirname(config)) == ["config.json"]  # no temporary left


# ------------------------------------------------------------------ data set configuration and data
def test_an_empty_validation_set_is_one_line_before_anything_runs(tmp_path, private_cache):
    """One training image per known class: all of them train, none validates."""
    write_image_folder(str(tmp_path / "pets"), {"cat": 1, "dog": 1, "fox": 1}, {"cat": 1, "dog": 1, "fox": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["cat", "dog"], "Unknown": ["fox"]}))
    cwd = tmp_path / "work"
    cwd.mkdir()
    proc = run_script(TRAIN_CAC, "--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--trial", 0, "--epochs", 1, "--workers", 0, "--im_size", 16, cwd=cwd, in_process=True)
    assert_one_line_error(proc, "ImageFolder trial 0 has no validation image", "2 training, 0 validation",
                          "val_fraction")
    assert os.listdir(cwd) == []


# ------------------------------------------------------------------ metrics.jsonl: whole lines only
def test_a_full_disk_at_the_training_log_is_one_line(tmp_path, monkeypatch, private_cache):
    real_write = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    proc = run_script(TRAIN_CE, *DIGITS, "--name", "full", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, os.path.join("runs", "Digits_0_fullClosedSet", "metrics.jsonl"), "No space left")
    assert (tmp_path / "runs" / "Digits_0_fullClosedSet" / "metrics.jsonl").read_bytes() == b""


# ------------------------------------------------------------------ checkpoint saves
def test_a_folder_at_a_checkpoints_path_is_refused_before_training(tmp_path, private_cache):
    (tmp_path / WEIGHTS / "Digits_0_dirCACclassifierLast.pth").mkdir(parents=True)
    before = snapshot(tmp_path)
    proc = run_script(TRAIN_CAC, *DIGITS, "--name", "dir", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "Digits_0_dirCACclassifierLast.pth", "a folder is in its place")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_a_read_only_checkpoint_is_refused_before_training(tmp_path, private_cache):
    checkpoint(tmp_path, "ro", "CACclassifierAnchorLoss")
    path = tmp_path / WEIGHTS / "Digits_0_roCACclassifierCACLoss.pth"
    path.write_bytes(b"kept")
    path.chmod(0o444)
    proc = run_script(TRAIN_CAC, *DIGITS, "-r", "--name", "ro", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "Digits_0_roCACclassifierCACLoss.pth", "read-only")
    assert path.read_bytes() == b"kept"


# ------------------------------------------------------------------ --continue: a ...Last.pth it cannot use
def usable_state():
    """A ...Last.pth as a CAC run on Digits saves it after epoch 0 of 3."""
    from engine.continuing import rng_state
    from networks.openSetClassifier import openSetClassifier

    net = openSetClassifier(num_classes=6, num_channels=1, im_size=16)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    generators = [torch.Generator(), torch.Generator()]
    return {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "end_epoch": 3, "phase": 0,
            "best": {"anchor": 1.0, "cac": 1.0, "acc": 50.0}, "rng": rng_state(generators, torch.device("cpu")),
            "ranks": [], "backbone": "cnn", "method": "CAC", "log_size": 0, "args": {"alpha": 10.0, "lbda": 0.1}}


def other_optimizer(state):
    state["optimizer"] = torch.optim.SGD([torch.zeros(2)], lr=0.1).state_dict()  # another network's


BAD_STATES = {
    "no_optimizer": (lambda s: s.pop("optimizer"), "'optimizer' is missing or not a dict"),
    "unknown_phase": (lambda s: s.update(phase=7), "unknown phase 7"),
    "epoch_text": (lambda s: s.update(epoch="1"), "'epoch' is missing or not a whole number"),
    "best_text": (lambda s: s["best"].update(acc="high"), "its random states or best values are damaged"),
    "optimizer_of_another_network": (other_optimizer, "optimizer, schedule or random state does not fit"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_continue_refuses_a_state_it_cannot_use(tmp_path, private_cache, case):
    change, fragment = BAD_STATES[case]
    state = usable_state()
    change(state)
    os.makedirs(tmp_path / WEIGHTS)
    torch.save(state, tmp_path / WEIGHTS / "Digits_0_badCACclassifierLast.pth")
    before = snapshot(tmp_path)
    proc = run_script(TRAIN_CAC, *DIGITS, "--continue", "--name", "bad", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "Digits_0_badCACclassifierLast.pth", fragment)
    assert snapshot(tmp_path) == before  # the lock file and nothing else came and went
