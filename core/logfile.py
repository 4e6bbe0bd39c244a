"""metrics.jsonl: whole lines only. Appending writes a line in one write (cut back on a full
disk); trimming drops a torn line, or the epochs logged after the state a --continue restores."""
import contextlib
import errno
import json
import os
import sys

from core.errors import UserError, os_error_cause
from core.files import atomic_write


def append_line(path, text):
    """Append `text` as one line in one write (a reader never sees half of it); a failed write (a full
    disk) is cut back off and becomes one UserError line, the lines before it intact."""
    data = (text + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot write {path} {os_error_cause(e, path)}") from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # a partial write: the disk filled up in the middle
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half line left behind
            raise UserError(f"cannot write {path} {os_error_cause(e, path)}, then continue the run with "
                            f"--continue; its earlier lines are intact") from None
    finally:
        os.close(fd)


def trim_log(path, keep_bytes=None):
    """Make metrics.jsonl whole before a run appends: cut off a torn line with a warning, and (--continue)
    the epochs logged after `keep_bytes`, its size when ...Last.pth was saved: the continued run logs them."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        raw = f.read()
    kept = raw[:keep_bytes] if keep_bytes is not None and keep_bytes < len(raw) else raw
    lines = kept.splitlines(keepends=True)
    whole = [line for line in lines if parse_log_line(line) is not None]
    torn = sum(1 for line in lines if line.strip()) - len(whole)
    if torn:
        print(f"warning: {path}: dropped {torn} incomplete line(s) (from a crash or a full disk)", file=sys.stderr)
    if len(whole) != len(lines) or kept is not raw:
        with atomic_write(path) as f:
            f.write(b"".join(whole))


def parse_log_line(line):
    """One metrics.jsonl line (bytes) as a dict with an integer epoch, or None when it is torn."""
    if not line.endswith(b"\n"):
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # ValueError: also bytes that are not UTF-8
        return None
    if not isinstance(entry, dict) or type(entry.get("epoch")) is not int:
        return None
    return entry
