"""engine.state: TrainState's stop signals (its loop, --continue and the saved state are run
end to end in tests/e2e/test_resume.py)."""
import os
import signal
import time

import pytest

from engine.state import TrainState


def test_stop_signals_ask_once_then_act():
    """Inside stop_signals the first SIGINT/SIGTERM only sets a flag; a second SIGINT raises
    KeyboardInterrupt at once; afterwards the previous handlers are back."""
    # Python's own Ctrl-C handler, as in a terminal: a job started in the background (CI
    # runners, `cmd &`) inherits SIGINT ignored, and then a second SIGINT has nothing to raise
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            state = TrainState.__new__(TrainState)
            state.stop_signal = None
            with state.stop_signals():
                os.kill(os.getpid(), sig)
                time.sleep(0.05)
                assert state.stop_signal == name
                if sig == signal.SIGINT:
                    with pytest.raises(KeyboardInterrupt):
                        os.kill(os.getpid(), sig)
                        time.sleep(0.05)
            assert {s: signal.getsignal(s) for s in before} == before
    finally:
        signal.signal(signal.SIGINT, outer)


def test_improved_keeps_the_best_value_by_its_own_rule():
    """Lower or higher is better, ties count unless told otherwise (the closed-set rule is the
    original's strict >); NaN never improves; the best values keep their order."""
    state = TrainState.__new__(TrainState)
    state.best = {"anchor": float("inf"), "acc": 50.0}
    assert state.improved("anchor", 2.0, lower=True) and state.best["anchor"] == 2.0
    assert state.improved("anchor", 2.0, lower=True)  # a tie counts
    assert not state.improved("anchor", 2.5, lower=True) and state.best["anchor"] == 2.0
    assert not state.improved("acc", 50.0, ties=False) and state.improved("acc", 50.0)
    assert not state.improved("acc", float("nan")) and state.best == {"anchor": 2.0, "acc": 50.0}
    assert list(state.best) == ["anchor", "acc"]
