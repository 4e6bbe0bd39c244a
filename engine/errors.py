"""The one exception type the command-line scripts turn into a one-line message."""


class UserError(ValueError):
    """Bad input a user can fix: the message names the problem and the fix."""
