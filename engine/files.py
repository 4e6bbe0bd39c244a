"""Writing files so that a crash never leaves half of one, and failing early on unwritable folders."""
import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile

from engine.errors import UserError


def give_usual_permissions(path):
    """mkstemp makes 0600 files: give a temporary the permissions a plain open() would (0666
    less the umask) before it replaces its target."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Yield a temporary file beside `path`; when the block succeeds it replaces `path` in one
    rename, when it fails it is removed and `path` keeps its previous content."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        give_usual_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class FileSet:
    """Files written as one set. `stage(path)` gives a temporary beside `path` to write; `commit()`
    renames every temporary onto its target in the order staged (stage the JSON last, as it
    names the others); `discard()` removes what is left. A failure anywhere, a rename
    included, leaves the previous set as it was: targets replaced before a failed rename are
    restored from hard links taken just before."""

    def __init__(self):
        self.staged = []  # (temporary, target)
        self.made_folders = []
        self.current = None  # the file being written or renamed: the one a failure names

    def stage(self, path):
        self.current = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder)
            self.made_folders.append(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
        os.close(fd)
        self.staged.append((tmp, path))
        return tmp

    def commit(self):
        replaced = []  # (target, whether it existed, hard link to its previous content or None)
        try:
            for tmp, target in self.staged:
                self.current = target
                give_usual_permissions(tmp)
                replaced.append((target, os.path.isfile(target), _keep_previous(target)))
                os.replace(tmp, target)
            self.staged = []
        except BaseException:
            for target, existed, previous in reversed(replaced):
                _restore(target, existed, previous)
            raise
        finally:
            for _, _, previous in replaced:
                if previous and os.path.exists(previous):
                    os.remove(previous)

    def discard(self):
        for tmp, _ in self.staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.staged = []
        for folder in reversed(self.made_folders):  # a folder this set created, still empty
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


def _keep_previous(target):
    """A hard link to `target`'s present content (None when there is none or links fail)."""
    if not os.path.isfile(target):
        return None
    link = os.path.join(os.path.dirname(os.path.abspath(target)), f".tmp_previous_{os.path.basename(target)}")
    try:
        if os.path.lexists(link):
            os.remove(link)
        os.link(target, link)
        return link
    except OSError:
        return None


def _restore(target, existed, previous):
    try:
        if previous:
            os.replace(previous, target)
        elif not existed and os.path.isfile(target):
            os.remove(target)  # the set had no such file before
    except OSError:
        pass  # nothing better to do; the failure that brought us here is raised


def ensure_writable(folder):
    """Check, before any long work starts, that files can be written in `folder`, without
    creating anything: a missing folder is checked through the nearest one that exists (the
    first save makes the rest)."""
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe):
        if os.path.exists(probe):
            raise UserError(f"cannot write to {folder}/: {probe} is a file, not a folder; move it "
                            f"away or run from another folder")
        probe = os.path.dirname(probe)
    try:
        with tempfile.TemporaryFile(dir=probe):  # unnamed where the OS allows: leaves no trace
            pass
    except OSError as e:
        raise UserError(f"cannot write to {folder}/ ({probe}: {e.strerror}); fix its permissions or "
                        f"run from a writable folder") from None


def _refuse_constant(name):
    raise ValueError(f"{name}, which is not valid JSON")


def read_json(path, what, fix):
    """The JSON value in `path`, or one UserError line naming `what` (e.g. "split file") and
    ending with `fix`, however the file is malformed: missing, unreadable, not UTF-8, not
    JSON, nested too deep, an integer too long, or NaN/Infinity (not JSON, though Python's
    json accepts them). Callers check the value's shape themselves."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found; {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file; {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({e.strerror}); {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                        f"{fix}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is nested too deeply to read; {fix}") from None
    except ValueError as e:  # an integer of thousands of digits, NaN/Infinity
        reason = "an integer too long to read" if "digits" in str(e) else str(e)
        raise UserError(f"{what} {path} holds {reason}; {fix}") from None


def check_file_writable(path, fix, what=""):
    """Check, before any long work starts, that `path` itself can be (re)written: no folder in
    its place and, if it exists, not read-only (a read-only file is taken as one the user wants
    kept, though the atomic rename could replace it). The folders are ensure_writable's job;
    `what` names the file in the message (e.g. "checkpoint ")."""
    if os.path.isdir(path):
        raise UserError(f"cannot write {what}{path}: a folder is in its place; move it away or {fix}")
    if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
        raise UserError(f"cannot write {what}{path}: it is not a regular file; move it away or {fix}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {what}{path}: the file is read-only; make it writable (chmod u+w) or {fix}")


def append_line(path, text):
    """Append `text` + newline to `path` in one write, so that a reader never sees half a line
    from this process; a failed write (a full disk) is cut back off and becomes one UserError
    line naming the path, the lines before it intact."""
    data = (text + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}); free disk space or fix its permissions") from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # a partial write: the disk filled up in the middle
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half line left behind
            raise UserError(f"cannot write {path} ({e.strerror}): the disk is full or the file not "
                            f"writable; its earlier lines are intact: free disk space, then continue "
                            f"the run with --continue") from None
    finally:
        os.close(fd)


def trim_log(path, keep_bytes=None):
    """Make metrics.jsonl whole before a run appends to it: a torn line (a crash or a full disk
    mid-write, by an earlier version) is cut off with a warning; with --continue, `keep_bytes`
    (its size when ...Last.pth was saved) drops an epoch logged after that save, which the
    continued run trains and logs again."""
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
    """One metrics.jsonl line (bytes) as a dict with an integer epoch, or None when it is torn:
    no newline at its end, not JSON, or not an epoch entry."""
    if not line.endswith(b"\n"):
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # ValueError: also bytes that are not UTF-8
        return None
    if not isinstance(entry, dict) or type(entry.get("epoch")) is not int:
        return None
    return entry


class RunLock:
    """An exclusive lock on `path` (fcntl.flock), held for a run's whole life. The OS releases it
    when the process ends, however it ends, so the lock file of a killed process is simply taken
    over. release() removes the file, and the folders acquire() made for it when they are empty."""

    def __init__(self, path, what):
        self.path, self.what = path, what  # what: the run, as the refusal names it
        self.fd, self.made = None, []

    def holder(self):
        """The pid (text) of the process that holds the lock now, or None; creates nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        except OSError:
            return None  # cannot probe here (e.g. NFS wants a writable file): acquire() decides
        finally:
            os.close(fd)

    def refuse_if_held(self):
        pid = self.holder()
        if pid is not None:
            raise UserError(f"{self.what} is being trained now by process {pid} (it holds {self.path}); "
                            f"wait for it to end, stop it, or give another --name")

    def acquire(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        missing = folder
        while not os.path.isdir(missing):
            self.made.append(missing)
            missing = os.path.dirname(missing)
        try:
            os.makedirs(folder, exist_ok=True)
            self._lock()
        except OSError as e:
            self._remove_made_folders()
            raise UserError(f"cannot create the lock file {self.path} ({e.strerror}); fix the folder's "
                            f"permissions or run from a writable folder") from None

    def _lock(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._remove_made_folders()
                self.refuse_if_held()  # names the holder
                raise UserError(f"{self.what} is being trained now (it holds {self.path}); wait for it to "
                                f"end, stop it, or give another --name") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd

    def release(self):
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still held: a process waiting on it then retries (acquire)
        os.close(self.fd)
        self.fd = None
        self._remove_made_folders()

    def _remove_made_folders(self):
        for folder in self.made:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty: the run may have written there
        self.made = []
