"""engine.resume: the random states an interrupted run saves come back from a weights_only file."""
import random

import torch

from engine.resume import rng_state, set_rng_state


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    random.seed(3)
    torch.manual_seed(4)
    import numpy as np

    np.random.seed(5)
    state = rng_state(generators)
    path = tmp_path / "rng.pth"
    torch.save(state, path)
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3), [torch.rand(2, generator=g)
                                                                          for g in generators])
    random.seed(30)
    np.random.seed(50)
    torch.manual_seed(40)
    set_rng_state(torch.load(path, weights_only=True), generators)
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3), [torch.rand(2, generator=g)
                                                                          for g in generators])
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])
    assert all(torch.equal(a, b) for a, b in zip(first[3], again[3]))


def test_continue_with_other_overrides_is_refused_with_a_runnable_fix(tmp_path):
    """The fix names the flag as the interrupted run had it: its value, or no flag at all."""
    from argparse import Namespace

    import pytest

    from core.errors import UserError
    from engine.resume import interrupted_state, read_interrupted

    def saved(**args):
        path = tmp_path / "Last.pth"
        now = rng_state([])
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict()
        torch.save(interrupted_state({"w": torch.zeros(1)}, optimizer, 1, 0, 3, 0, {"acc": 0.0}, None, 0, now, now,
                                     "cnn", "CAC", {"resume": False, **args}, 0), path)
        return str(path)

    cases = [({"hflip": 0.0}, {"hflip": None}, "trained with --hflip 0.0, this command says nothing: "
                                               "continue it with --hflip 0.0"),
             ({"hflip": None}, {"hflip": 1.0}, "trained without --hflip, this command gives --hflip 1.0: "
                                               "continue it without --hflip")]
    for before, now, message in cases:
        with pytest.raises(UserError) as refused:
            read_interrupted(saved(**before), 0, Namespace(resume=False, **now), ("hflip",))
        assert str(refused.value).endswith(message)
    state = read_interrupted(saved(hflip=0.5), 0, Namespace(resume=False, hflip=0.5), ("hflip",))
    assert state["args"]["hflip"] == 0.5
