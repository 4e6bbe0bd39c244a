"""engine.run_files: a run's files, the refusal to replace an existing run (and what lifts it),
the -r checks on the first run's state, unwritable folders found first, and --overwrite removing
exactly the old run's files."""
import os
import stat
from argparse import Namespace

import pytest
import torch
from filelock import FileLock

from core.errors import UserError
from engine.run_files import (RunLock, check_second_phase, check_training_args, check_writable, refuse_to_replace,
                              remove_old_run, run_files)

W = os.path.join("networks", "weights")


def args(**change):
    return Namespace(**{"dataset": "Digits", "trial": 0, "name": "old", "continue_run": False, "overwrite": False,
                        "resume": False, **change})


def test_run_files_of_each_method():
    assert run_files(args(), "CAC") == [os.path.join(W, "Digits", f"Digits_0_old{s}.pth") for s in (
        "CACclassifierAnchorLoss", "CACclassifierCACLoss", "CACclassifierAccuracy", "CACclassifierLast")]
    assert run_files(args(trial=4, name="n"), "ClosedSet") == [
        os.path.join(W, "Digits", "Digits_4_nclosedSetClassifier.pth"),
        os.path.join(W, "Digits", "Digits_4_nclosedSetClassifierLast.pth")]


def test_augment_batches_below_one_is_one_line():
    import train_closedSet

    with pytest.raises(UserError, match=r"^--augment_batches 0: give 1 \(each batch on its own\) or more$"):
        check_training_args(train_closedSet.parse_args(["--dataset", "Digits", "--augment_batches", "0"]), "ClosedSet")
    check_training_args(train_closedSet.parse_args(["--dataset", "Digits", "--augment_batches", "3"]), "ClosedSet")


def test_run_files_of_cifar_plus10_include_the_cifar_plus50_copies():
    files = run_files(args(dataset="CIFAR+10"), "ClosedSet")
    assert files == [os.path.join(W, "CIFAR+10", "CIFAR+10_0_oldclosedSetClassifier.pth"),
                     os.path.join(W, "CIFAR+10", "CIFAR+10_0_oldclosedSetClassifierLast.pth"),
                     os.path.join(W, "CIFAR+50", "CIFAR+50_0_oldclosedSetClassifier.pth"),
                     os.path.join(W, "CIFAR+50", "CIFAR+50_0_oldclosedSetClassifierLast.pth")]


def put(path, content=b"old"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


RUN_DIR = os.path.join("runs", "Digits_0_oldCAC")


def test_an_empty_folder_has_no_run_to_replace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refuse_to_replace(args(), "CAC", RUN_DIR) is None
    put(os.path.join(W, "Digits", "Digits_0_otherCACclassifierAnchorLoss.pth"))  # another name's run
    put(os.path.join(W, "Digits", "Digits_0_oldclosedSetClassifier.pth"))  # the other method's run
    assert refuse_to_replace(args(), "CAC", RUN_DIR) is None


@pytest.mark.parametrize("existing", [
    os.path.join(W, "Digits", "Digits_0_oldCACclassifierAccuracy.pth"),
    os.path.join(W, "Digits", "Digits_0_oldCACclassifierLast.pth"),
    os.path.join(RUN_DIR, "metrics.jsonl"),
])
def test_an_existing_first_run_is_refused_naming_the_file_and_the_flags(tmp_path, monkeypatch, existing):
    monkeypatch.chdir(tmp_path)
    put(existing)
    with pytest.raises(UserError) as refused:
        refuse_to_replace(args(), "CAC", RUN_DIR)
    message = str(refused.value)
    named = RUN_DIR + os.sep if existing.startswith("runs") else existing
    assert message.startswith(f"run Digits_0_oldCAC exists ({named}); this command would replace it"), message
    for flag in ("--continue", "-r", "another --name", "--overwrite"):
        assert flag in message
    assert refuse_to_replace(args(overwrite=True), "CAC", RUN_DIR) is None
    assert refuse_to_replace(args(continue_run=True), "CAC", RUN_DIR) is None


def test_the_refusal_counts_the_other_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put(os.path.join(W, "CIFAR+50", "CIFAR+50_0_oldCACclassifierCACLoss.pth"))  # a copy is part of the run
    put(os.path.join(W, "CIFAR+10", "CIFAR+10_0_oldCACclassifierLast.pth"))
    put(os.path.join("runs", "CIFAR+10_0_oldCAC", "config.json"))
    with pytest.raises(UserError, match=r"exists \(networks/weights/CIFAR\+10/CIFAR\+10_0_oldCACclassifierLast\.pth "
                                        r"and 2 more\)"):
        refuse_to_replace(args(dataset="CIFAR+10"), "CAC", os.path.join("runs", "CIFAR+10_0_oldCAC"))


def test_a_run_training_now_is_refused(tmp_path, monkeypatch):
    """TrainingRun takes the lock whatever the flags (--overwrite too: tests/unit/engine/test_training.py)."""
    monkeypatch.chdir(tmp_path)
    path = os.path.join(W, "Digits", ".Digits_0_oldCAC.lock")
    lock = RunLock(path, "Digits_0_oldCAC")
    assert refuse_to_replace(args(), "CAC", RUN_DIR) is None and not os.path.exists(path)  # the check writes nothing
    holder = FileLock(path)
    holder.acquire(timeout=0)
    try:
        with pytest.raises(UserError, match="run Digits_0_oldCAC is being trained now by another process"):
            RunLock(path, "Digits_0_oldCAC").acquire()
    finally:
        holder.release()
    lock.acquire()
    assert lock.lock.is_locked  # released: a stale file is no holder
    lock.release()


def test_a_run_lock_leaves_neither_its_file_nor_the_folders_it_made(tmp_path):
    path = tmp_path / "a" / "b" / ".run.lock"
    lock = RunLock(str(path), "run")
    lock.acquire()
    assert path.exists()
    with pytest.raises(UserError, match="run run is being trained now by another process"):
        RunLock(str(path), "run").acquire()  # flock: a second open file of the same lock, even in one process
    lock.release()
    assert not (tmp_path / "a").exists()


def last_state(path, **state):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"net": {}, **state}, path)
    return path


LAST = os.path.join(W, "Digits", "Digits_0_oldCACclassifierLast.pth")


def test_resume_checks_the_first_runs_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put(os.path.join(W, "Digits", "Digits_0_oldCACclassifierAnchorLoss.pth"))
    assert refuse_to_replace(args(resume=True), "CAC", RUN_DIR) is None  # no state: nothing to check
    last_state(LAST, phase=0, epoch=3, end_epoch=3)  # a finished first run
    os.makedirs(RUN_DIR)
    assert refuse_to_replace(args(resume=True), "CAC", RUN_DIR) is None
    last_state(LAST, phase=0, epoch=1, end_epoch=3)
    with pytest.raises(UserError, match="first run stopped after 1 of its 3 epochs"):
        refuse_to_replace(args(resume=True), "CAC", RUN_DIR)
    assert refuse_to_replace(args(resume=True, overwrite=True), "CAC", RUN_DIR) is None


@pytest.mark.parametrize("state,fragment", [
    ({"phase": 1, "epoch": 3, "end_epoch": 3}, "the second phase (-r) of this run already finished (epoch 2"),
    ({"phase": 1, "epoch": 2, "end_epoch": 3}, "the second phase (-r) of this run was interrupted in epoch 2"),
    ({"phase": 0, "epoch": 0, "end_epoch": 5}, "the first run stopped after 0 of its 5 epochs"),
    ({"phase": 2, "epoch": 0, "end_epoch": 5}, "is damaged or from another version (phase 2, epoch 0)"),
    ({"phase": 0, "epoch": 1.0, "end_epoch": 5}, "is damaged or from another version (phase 0, epoch 1.0)"),
    ({"phase": 0, "epoch": 1}, "is damaged or from another version"),
])
def test_second_phase_refusals_name_the_state_file(tmp_path, state, fragment):
    path = last_state(str(tmp_path / "last.pth"), **state)
    with pytest.raises(UserError) as refused:
        check_second_phase(path)
    assert fragment in str(refused.value) and path in str(refused.value) and "--overwrite" in str(refused.value)


def test_second_phase_with_a_damaged_state_names_overwrite(tmp_path):
    path = put(str(tmp_path / "last.pth"), b"half a checkpoint")
    with pytest.raises(UserError, match="corrupt or truncated.*; or add --overwrite"):
        check_second_phase(path)
    assert check_second_phase(str(tmp_path / "absent.pth")) is None


def test_check_writable_passes_in_a_writable_folder_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = run_files(args(dataset="CIFAR+10"), "CAC")
    assert check_writable(files, RUN_DIR) is None
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_refuses_a_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.join(W, "Digits"))
    os.chmod(os.path.join(W, "Digits"), stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UserError, match=r"cannot write to networks/weights/Digits/ .*Permission denied"):
            check_writable(run_files(args(), "CAC"), RUN_DIR)
    finally:
        os.chmod(os.path.join(W, "Digits"), stat.S_IRWXU)


def test_check_writable_refuses_a_file_in_a_folders_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put(os.path.join("networks", "weights"), b"not a folder")
    with pytest.raises(UserError, match=r"cannot write to networks/weights/Digits/: .*networks/weights is a file"):
        check_writable(run_files(args(), "CAC"), RUN_DIR)


def test_check_writable_refuses_a_folder_in_a_checkpoints_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = run_files(args(), "ClosedSet")
    os.makedirs(files[1])
    with pytest.raises(UserError, match=f"cannot write {files[1]}: a folder is in its place"):
        check_writable(files, RUN_DIR)


def test_remove_old_run_removes_exactly_the_runs_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    files = run_files(args(dataset="CIFAR+10"), "CAC")
    for path in files[:2] + files[5:6]:  # some of them, a CIFAR+50 copy included
        put(path)
    put(os.path.join("runs", "CIFAR+10_0_oldCAC", "metrics.jsonl"))
    kept = [put(os.path.join(W, "CIFAR+10", "CIFAR+10_0_oldclosedSetClassifier.pth")),  # the other method's
            put(os.path.join(W, "CIFAR+10", "CIFAR+10_0_old2CACclassifierAnchorLoss.pth")),  # another name's
            put(os.path.join(W, "CIFAR+10", "CIFAR+10_1_oldCACclassifierAnchorLoss.pth")),  # another trial's
            put(os.path.join("runs", "CIFAR+10_0_oldClosedSet", "config.json"))]
    remove_old_run(files, os.path.join("runs", "CIFAR+10_0_oldCAC"))
    assert not any(os.path.exists(p) for p in files) and not os.path.exists(os.path.join("runs", "CIFAR+10_0_oldCAC"))
    assert all(os.path.isfile(p) for p in kept)
    out = capsys.readouterr().out
    assert out == (f"--overwrite: removed the previous run's {files[0]}, {files[1]}, {files[5]}, "
                   f"{os.path.join('runs', 'CIFAR+10_0_oldCAC')}{os.sep}\n")
    remove_old_run(files, os.path.join("runs", "CIFAR+10_0_oldCAC"))  # nothing left: nothing said
    assert capsys.readouterr().out == ""
