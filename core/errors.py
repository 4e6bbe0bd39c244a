"""The exceptions the command-line scripts turn into a one-line message and an exit status."""


class UserError(ValueError):
    """Bad input a user can fix: the message names the problem and the fix."""


class Interrupted(BaseException):
    """A training run stopped by SIGINT or SIGTERM; the message says how to continue it. A
    BaseException, as KeyboardInterrupt: no `except Exception` on the way may swallow it."""

    def __init__(self, message, exit_status):
        super().__init__(message)
        self.exit_status = exit_status  # 128 + signal number, as a shell reports a signal
