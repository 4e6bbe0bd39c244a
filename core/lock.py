"""RunLock: one training run at a time per run name, held through the OS (fcntl.flock)."""
import contextlib
import fcntl
import os

from core.errors import UserError


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
