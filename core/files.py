"""Writing files so that a crash never leaves half of one, and failing early on unwritable folders."""
import contextlib
import json
import os
import tempfile

from core.errors import UserError


def give_usual_permissions(path):
    """mkstemp makes 0600 files: give a temporary what a plain open() would (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """A temporary file beside `path` that replaces it in one rename if the block succeeds, else is removed."""
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
    """Files written as one set: `stage(path)` gives a temporary to write, `commit()` renames them in
    the order staged (stage the JSON last: it names the others). A failure anywhere, a rename included,
    leaves the previous set as it was (targets already replaced come back from hard links)."""

    def __init__(self):
        self.staged, self.made_folders = [], []  # (temporary, target); the folders `stage` made
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
                with contextlib.suppress(OSError):  # nothing better to do: the failure that brought us here is raised
                    if previous:
                        os.replace(previous, target)
                    elif not existed and os.path.isfile(target):
                        os.remove(target)  # the set had no such file before
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


PREVIOUS = ".tmp_previous_"  # FileSet's link to a target's previous content: the longest name it writes


def _keep_previous(target):
    """A hard link to `target`'s present content (None when there is none or links fail)."""
    if not os.path.isfile(target):
        return None
    link = os.path.join(os.path.dirname(os.path.abspath(target)), PREVIOUS + os.path.basename(target))
    try:
        if os.path.lexists(link):
            os.remove(link)
        os.link(target, link)
        return link
    except OSError:
        return None


def ensure_writable(folder):
    """Check, before any long work and creating nothing, that files can be written in `folder` (a
    missing one through its nearest existing parent: the first save makes the rest)."""
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
    """The JSON value in `path`, or one UserError line naming `what` and ending with `fix`, however the file
    is malformed (NaN/Infinity included: not JSON, though Python's json accepts them)."""
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):  # opening a named pipe waits
        raise UserError(f"{what} {path} is not a regular file (a named pipe, socket or device); {fix}")
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
    """Check, before any long work, that `path` itself can be (re)written: no folder in its place, not
    read-only (taken as a file the user wants kept, though the atomic rename could replace it)."""
    if os.path.isdir(path):
        raise UserError(f"cannot write {what}{path}: a folder is in its place; move it away or {fix}")
    if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
        raise UserError(f"cannot write {what}{path}: it is not a regular file; move it away or {fix}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {what}{path}: the file is read-only; make it writable (chmod u+w) or {fix}")


def check_name_length(name, paths):
    """Refuse, before any work, a --name that makes a part of one of `paths` longer than its file system allows
    (NAME_MAX bytes of the nearest existing folder); the line gives the longest --name all of them allow."""
    found, size = [], len(os.fsencode(name))  # (longest name allowed, the part, the limit, its folder) of each part
    for path in paths:
        probe = os.path.dirname(os.path.abspath(path))
        while not os.path.isdir(probe):
            probe = os.path.dirname(probe)
        try:
            limit = os.pathconf(probe, "PC_NAME_MAX")
        except (OSError, ValueError):  # no answer: the usual limit
            limit = 255
        found += [(limit - len(os.fsencode(p)) + size, p, limit, probe) for p in path.split(os.sep) if name and name in p]
    allowed, part, limit, probe = min(found, default=(size, "", 0, ""))
    if size > allowed:
        raise UserError(f"--name of {size} bytes is too long: it makes file names such as {part.replace(name, '<name>')}"
                        f" of {len(os.fsencode(part))} bytes, and this file system ({probe}) allows {limit}; give a "
                        f"--name of at most {max(allowed, 1)} bytes")
