"""Writing files so that a crash never leaves half of one, and failing early on unwritable folders."""
import contextlib
import json
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
