"""Writing files so that a crash never leaves half of one, and failing early on unwritable folders."""
import contextlib
import os
import tempfile

from engine.errors import UserError


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
