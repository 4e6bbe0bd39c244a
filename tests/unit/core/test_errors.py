"""core/errors.py: the two exceptions the scripts turn into one line and an exit status."""
import signal

from core.errors import Interrupted, UserError


def test_interrupted_carries_the_shells_status_and_is_not_a_user_error():
    stop = Interrupted("SIGTERM in epoch 3; saved x: run the same command with --continue", 128 + signal.SIGTERM)
    assert stop.exit_status == 143 and "--continue" in str(stop)
    assert not isinstance(stop, UserError)


def test_a_failed_write_names_its_true_cause_and_fix(tmp_path):
    """Each OSError a write meets is told as what it is: a file where a folder of the path belongs (named), a
    folder where the file belongs, a full disk, no permission; never a guess among them."""
    import errno
    import os

    from core.errors import os_error_cause

    (tmp_path / "work").write_text("a file")
    blocked = tmp_path / "work" / "results" / "x.json"
    try:
        os.makedirs(blocked.parent)
    except OSError as e:
        cause = os_error_cause(e, str(blocked))
    assert cause == f"(Not a directory: {tmp_path / 'work'} is a file, not a folder); move that file away or write elsewhere"
    (tmp_path / "x.lock").mkdir()
    try:
        open(tmp_path / "x.lock", "a")
    except OSError as e:
        cause = os_error_cause(e)
    assert cause == f"(Is a directory: {tmp_path / 'x.lock'} is a folder where a file belongs); move that folder away"
    full = os_error_cause(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "x")
    assert full == "(No space left on device); the disk is full: free space"
    denied = os_error_cause(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "x"))
    assert "Permission denied" in denied and "permissions" in denied and "full" not in denied
