"""The exceptions the command-line scripts turn into a one-line message and an exit status, and the true
cause of a failed file operation (an OSError) in words, with its fix."""
import errno
import os


class UserError(ValueError):
    """Bad input a user can fix: the message names the problem and the fix."""


class Interrupted(BaseException):
    """A training run stopped by SIGINT or SIGTERM; the message says how to continue it. A
    BaseException, as KeyboardInterrupt: no `except Exception` on the way may swallow it."""

    def __init__(self, message, exit_status):
        super().__init__(message)
        self.exit_status = exit_status  # 128 + signal number, as a shell reports a signal


FULL = "the disk is full: free space"
DENIED = "fix the permissions of the file or its folder"
CAUSES = {errno.ENOSPC: FULL, errno.EDQUOT: "the disk quota is used up: free space", errno.EACCES: DENIED,
          errno.EPERM: DENIED, errno.EROFS: "the file system is read-only: write elsewhere",
          errno.ENAMETOOLONG: "a name in the path is longer than the file system allows: give a shorter one"}


def os_error_cause(e, path=None):
    """'(what the OS said: what is in the way); how to fix it' for an OSError `e` on `path`."""
    where = e.filename or path
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and where:  # a file where a folder of the path belongs
        blocker = os.path.abspath(where)
        while blocker != os.path.dirname(blocker) and not os.path.isfile(blocker):
            blocker = os.path.dirname(blocker)
        if os.path.isfile(blocker):
            return f"({e.strerror}: {blocker} is a file, not a folder); move that file away or write elsewhere"
    if e.errno == errno.EISDIR and where:
        return f"({e.strerror}: {where} is a folder where a file belongs); move that folder away"
    return f"({e.strerror or e}); {CAUSES.get(e.errno, 'check the free space and the permissions of its folder')}"
