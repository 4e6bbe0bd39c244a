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


def test_a_cpu_run_saves_no_cuda_state_and_a_cuda_sized_generator_does_not_fit():
    from engine.resume import generators_fit

    cpu = [torch.Generator().manual_seed(1)]
    state = rng_state(cpu, torch.device("cpu"))
    assert state["cuda"] == [] and state["generators"][0].numel() == 5056  # a CPU generator's state
    assert generators_fit(state["generators"], cpu)
    assert not generators_fit([torch.zeros(16, dtype=torch.uint8)], cpu)  # a CUDA generator's: 16 bytes
    assert not generators_fit(state["generators"] * 2, cpu)  # another pipeline: another count


def test_set_rng_state_without_data_leaves_the_data_generators():
    g = torch.Generator().manual_seed(1)
    state = rng_state([g], torch.device("cpu"))
    g.manual_seed(2)
    before = g.get_state()
    set_rng_state(state, [g], torch.device("cpu"), data=False)
    assert torch.equal(g.get_state(), before)
    set_rng_state(state, [g], torch.device("cpu"))
    assert torch.equal(g.get_state(), state["generators"][0])


def test_check_state_reads_every_ranks_random_states(tmp_path):
    import pytest

    from core.errors import UserError
    from engine.resume import check_state

    rng = rng_state([], torch.device("cpu"))
    state = {"seen": 0, "optimizer": {"state": {}, "param_groups": []}, "best": {"acc": 0.0}, "rng": rng,
             "epoch_rng": rng, "step": 0, "ranks": [{"rng": rng, "epoch_rng": rng}]}
    check_state(state, "x.pth")
    with pytest.raises(UserError, match="'rng' lacks one of"):
        check_state({**state, "ranks": [{"rng": {"torch": rng["torch"]}, "epoch_rng": rng}]}, "x.pth")
    with pytest.raises(UserError, match="'ranks' is not a list"):
        check_state({**state, "ranks": {"1": rng}}, "x.pth")


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
        ranks = [{"rng": now, "epoch_rng": now, "train_sums": None, "seen": 0}]
        torch.save(interrupted_state({"w": torch.zeros(1)}, optimizer, 1, 0, 3, 0, {"acc": 0.0}, ranks,
                                     "cnn", "CAC", {"resume": False, **args}, 0, "cpu", "resident"), path)
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
