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
    from types import SimpleNamespace

    state = TrainState.__new__(TrainState)
    state.run = SimpleNamespace(recipe=SimpleNamespace(whole_train=False))
    state.best = {"anchor": float("inf"), "acc": 50.0}
    assert state.improved("anchor", 2.0, lower=True) and state.best["anchor"] == 2.0
    assert state.improved("anchor", 2.0, lower=True)  # a tie counts
    assert not state.improved("anchor", 2.5, lower=True) and state.best["anchor"] == 2.0
    assert not state.improved("acc", 50.0, ties=False) and state.improved("acc", 50.0)
    assert not state.improved("acc", float("nan")) and state.best == {"anchor": 2.0, "acc": 50.0}
    assert list(state.best) == ["anchor", "acc"]
    state.run.recipe.whole_train = True  # --recipe vaze: the last epoch's network is the one kept
    assert state.improved("anchor", 9.0, lower=True) and state.improved("acc", 1.0, ties=False)
    assert state.best == {"anchor": 9.0, "acc": 1.0}


class CountingSums:
    """Stands for the loop's device tensor of running sums: counts the host reads (tolist)."""

    def __init__(self):
        self.reads, self.loss, self.correct = 0, 0.0, 0.0

    def tolist(self):
        self.reads += 1
        return [self.loss, self.correct]


def bare_state():
    from types import SimpleNamespace

    import torch

    state = TrainState.__new__(TrainState)
    state.saved, state.stop_signal, state.generators, state.scheduler = None, None, [], None
    state.accel = SimpleNamespace(is_main=True, world=1, device=torch.device("cpu"))
    return state


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_lines_without_a_terminal_and_no_read_per_step(terminal, capsys, monkeypatch):
    """Without a terminal (a log) a line per tenth of the epoch, with the steps and the mean loss
    so far; in a terminal the bar alone. Either way the sums are read from the device only every
    LOG_EVERY steps, at the last step and (logs) at the progress marks: never once a step."""
    import torch

    import engine.state as state_module
    from engine.progress import progress_marks
    from engine.state import LOG_EVERY

    if terminal:
        real = state_module.tqdm
        monkeypatch.setattr(state_module, "tqdm", lambda it, **kw: real(it, **{**kw, "disable": False}))
    steps, batch = 45, (torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))
    state, sums = bare_state(), CountingSums()
    for step, _ in state.iterate([batch] * steps, 3, sums):
        sums.loss += 2.0  # each step's loss: the mean so far is 2.0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 3:")]
    syncs = {s for s in range(1, steps + 1) if s % LOG_EVERY == 0} | {steps}
    if terminal:
        assert lines == [] and sums.reads == len(syncs)
        return
    marks = progress_marks(steps)
    assert [line.split(" (")[1].split(" steps")[0] for line in lines] == [f"{m}/{steps}" for m in marks]
    assert all(", loss 2.0000, " in line and line.endswith(" images/s") for line in lines)
    assert lines[-1].startswith("epoch 3: 100% ") and sums.reads == len(syncs | set(marks)) < steps


def test_continue_must_repeat_the_command_line_overrides(monkeypatch):
    """--continue checks the script's own arguments and every override of the config (a changed
    augmentation, batch or rate would silently make another run)."""
    from types import SimpleNamespace

    import engine.state as state_module

    asked = {}

    def read_interrupted(path, phase, args, must_match):
        asked["must_match"] = must_match
        raise RuntimeError("stop here")

    monkeypatch.setattr(state_module, "read_interrupted", read_interrupted)
    run = SimpleNamespace(accel=None, method="CAC", phase=0, args=SimpleNamespace(continue_run=True),
                          generators=lambda: [], weights=lambda suffix: suffix,
                          recipe=SimpleNamespace(scheduler=lambda *a: None))
    with pytest.raises(RuntimeError, match="stop here"):
        TrainState(run, None, None, range(0, 2), {"acc": 0.0}, must_match=("alpha", "lbda"))
    assert set(asked["must_match"]) == {"recipe", "alpha", "lbda", "hflip", "rotation", "crop_scale", "lr",
                                      "batch_size"}
