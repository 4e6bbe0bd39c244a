"""core/errors.py: the two exceptions the scripts turn into one line and an exit status."""
import signal

from core.errors import Interrupted, UserError


def test_interrupted_carries_the_shells_status_and_is_not_a_user_error():
    stop = Interrupted("SIGTERM in epoch 3; saved x: run the same command with --continue", 128 + signal.SIGTERM)
    assert stop.exit_status == 143 and "--continue" in str(stop)
    assert not isinstance(stop, UserError)
