"""core/lock.py: RunLock holds one run at a time (fcntl.flock), names its holder, and leaves
nothing behind when released."""
import os

import pytest

from core.errors import UserError
from core.lock import RunLock


def test_a_second_lock_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    path = str(tmp_path / "weights" / "Digits" / ".Digits_0_xCAC.lock")
    first = RunLock(path, "run Digits_0_xCAC")
    assert first.holder() is None and not os.path.exists(path)  # probing creates nothing
    first.acquire()
    with open(path) as f:
        assert f.read() == f"{os.getpid()}\n"
    assert first.holder() == str(os.getpid())
    second = RunLock(path, "run Digits_0_xCAC")
    with pytest.raises(UserError, match=f"run Digits_0_xCAC is being trained now by process {os.getpid()} "
                                        f"\\(it holds {path}\\); wait for it to end"):
        second.acquire()
    with pytest.raises(UserError, match="being trained now"):
        second.refuse_if_held()
    first.release()
    assert not os.path.exists(path) and not os.path.exists(tmp_path / "weights")  # the folders it made go too
    second.acquire()  # free again
    assert second.holder() == str(os.getpid())
    second.release()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    path = tmp_path / ".run.lock"
    path.write_text("12345\n")  # left by a killed process: nobody holds it
    lock = RunLock(str(path), "run")
    assert lock.holder() is None
    lock.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not path.exists()


def test_release_keeps_a_folder_the_run_wrote_into(tmp_path):
    path = tmp_path / "made" / ".run.lock"
    lock = RunLock(str(path), "run")
    lock.acquire()
    (tmp_path / "made" / "checkpoint.pth").write_bytes(b"x")
    lock.release()
    assert sorted(os.listdir(tmp_path / "made")) == ["checkpoint.pth"]
    lock.release()  # twice: nothing happens
