"""engine.continuing: the random states a run saves come back from a weights_only file; what
--continue refuses (in one line) and what it re-derives when the machine changed."""
import random
from argparse import Namespace

import numpy as np
import pytest
import torch

from core.errors import UserError
from engine.continuing import read_last_state, restore_random_states, rng_state, set_rng_state

CPU = torch.device("cpu")


def draws(generators):
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(),
            [torch.rand(2, generator=g).tolist() for g in generators])


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    random.seed(3), torch.manual_seed(4), np.random.seed(5)
    torch.save(rng_state(generators, CPU), tmp_path / "rng.pth")
    first = draws(generators)
    random.seed(30), np.random.seed(50), torch.manual_seed(40)
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True), generators, CPU)
    assert draws(generators) == first


def generators_fit(saved, generators):
    """Whether restoring a state with data generator states `saved` keeps them (else re-seeds them)."""
    state = {**last_state(), "rng": {**rng_state(generators, CPU), "generators": saved}}
    changed = restore_random_states(state, 0, 1, generators, CPU, seed=0)
    return not any(c.startswith("the data generators") for c in changed)


def test_a_cpu_run_saves_no_cuda_state_and_a_cuda_sized_generator_does_not_fit():
    cpu = [torch.Generator().manual_seed(1)]
    state = rng_state(cpu, CPU)
    assert state["cuda"] == [] and state["generators"][0].numel() == 5056  # a CPU generator's state
    assert generators_fit(state["generators"], cpu)
    assert not generators_fit([torch.zeros(16, dtype=torch.uint8)], cpu)  # a CUDA generator's: 16 bytes
    assert not generators_fit(state["generators"] * 2, cpu)  # another pipeline: another count


ARGS = {"dataset": "Digits", "trial": 0, "name": "x", "epochs": None, "seed": 0, "lr": None, "alpha": 10.0,
        "resume": False, "continue_run": True, "overwrite": False, "workers": 0, "device": "auto"}


def last_state(**change):
    generators = [torch.Generator().manual_seed(1)]
    return {"net": {}, "optimizer": {"state": {}, "param_groups": []}, "epoch": 2, "end_epoch": 5, "phase": 0,
            "best": {"acc": 50.0}, "rng": rng_state(generators, CPU), "args": {**ARGS, "continue_run": False},
            "device": "cpu", "world": 1, "pipeline": "resident", **change}


def read(tmp_path, state, **given):
    torch.save(state, tmp_path / "last.pth")
    return read_last_state(str(tmp_path / "last.pth"), int(given.get("resume", False)), Namespace(**{**ARGS, **given}))


def test_a_state_that_fits_is_read_whatever_the_device_and_workers(tmp_path):
    assert read(tmp_path, last_state(), device="cpu", workers=3)["epoch"] == 2


def test_the_speed_options_may_change_when_continuing(tmp_path):
    # a run saved without them (or by a version that had none) continues with them from the next epoch
    state = last_state(args={**ARGS, "drop_last": False, "augment_batches": 1})
    assert read(tmp_path, state, drop_last=True, augment_batches=8, amp=True)["epoch"] == 2


@pytest.mark.parametrize("state,given,fragment", [
    ({"phase": 1}, {}, "holds a second phase (-r) but this command starts a first run (no -r): add -r"),
    ({}, {"resume": True}, "holds a first run (no -r) but this command starts a second phase (-r): drop -r"),
    ({"epoch": 5}, {}, "that run finished all its epochs (to 4); nothing to continue"),
    ({"step": 7}, {}, "saved in the middle of epoch 2 by an earlier version"),
    ({"optimizer": None}, {}, "'optimizer' is missing or not a dict"),
    ({"epoch": 2.0}, {}, "'epoch' is missing or not a whole number"),
    ({"best": {"acc": "high"}}, {}, "its random states or best values are damaged"),
    ({}, {"epochs": 9}, "was trained without --epochs, this command gives --epochs 9: continue it without --epochs"),
    ({}, {"alpha": 3.0}, "was trained with --alpha 10.0, this command gives --alpha 3.0: continue it with --alpha 10.0"),
    ({}, {"seed": 1}, "with --seed 0, this command gives --seed 1"),
])
def test_what_continue_refuses_in_one_line(tmp_path, state, given, fragment):
    with pytest.raises(UserError) as refused:
        read(tmp_path, last_state(**state), **given)
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_an_override_the_run_had_must_be_given_again(tmp_path):
    state = last_state(args={**ARGS, "epochs": 6, "continue_run": False})
    with pytest.raises(UserError, match="was trained with --epochs 6, this command gives no --epochs"):
        read(tmp_path, state)
    assert read(tmp_path, state, epochs=6)["end_epoch"] == 5


def test_a_missing_file_says_to_start_without_continue(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found: .*start it without --continue"):
        read_last_state(str(tmp_path / "none.pth"), 0, Namespace(**ARGS))


def test_restore_gives_each_rank_its_own_states_and_says_nothing_when_nothing_changed():
    generators = [torch.Generator().manual_seed(1)]
    torch.manual_seed(10)
    rank0 = rng_state(generators, CPU)
    torch.manual_seed(11)
    rank1 = rng_state(generators, CPU)
    state = {**last_state(), "rng": rank0, "ranks": [rank1], "world": 2}
    torch.manual_seed(99)
    assert restore_random_states(state, 1, 2, generators, CPU, seed=0) == []
    assert torch.equal(torch.get_rng_state(), rank1["torch"])
    assert restore_random_states(state, 0, 2, generators, CPU, seed=0) == []
    assert torch.equal(torch.get_rng_state(), rank0["torch"])


def test_restore_re_derives_what_does_not_fit_and_says_so():
    """A state saved on CUDA by one process (16-byte generator states), continued on the CPU by two:
    the data generators are re-seeded from the seed and the epoch (the same on every rank), a new rank
    keeps its own torch state, and each change is one phrase."""
    generators = [torch.Generator().manual_seed(1)]
    saved = {**rng_state(generators, CPU), "generators": [torch.zeros(16, dtype=torch.uint8)]}
    state = {**last_state(), "rng": saved, "device": "cuda", "world": 1}
    torch.manual_seed(123)
    own = torch.get_rng_state()
    changed = restore_random_states(state, 1, 2, generators, CPU, seed=4)
    assert torch.equal(torch.get_rng_state(), own)  # rank 1 was not saved: its seeding stays
    assert [c.split(":")[0] for c in changed] == ["saved on cuda, continued on cpu", "saved by 1 process(es), "
                                                  "continued by 2", "the data generators (resident pipeline on cuda) "
                                                  "do not fit this run's"]
    expected = torch.Generator().manual_seed((4 * 1_000_003 + 2 * 101 + 0) % 2**63)
    assert torch.equal(generators[0].get_state(), expected.get_state())


@pytest.mark.parametrize("argv,overwrite,continued,command", [
    (["--dataset", "Digits", "--over", "--epochs", "6", "--name", "a b"], True, False,
     "--dataset Digits --epochs 6 --name 'a b' --continue"),  # argparse took --over for --overwrite
    (["--dataset", "Digits", "--cont", "-r"], False, True, "--dataset Digits --cont -r"),  # --continue already there
    (["--dataset", "Digits", "--name", "o"], False, False, "--dataset Digits --name o --continue"),
])
def test_the_stop_line_gives_the_command_that_continues_the_run(argv, overwrite, continued, command):
    """The same flags as typed, --overwrite dropped (in any spelling argparse accepts), --continue added once."""
    from types import SimpleNamespace

    from engine.continuing import stop_message

    run = SimpleNamespace(saved_epoch=3, epochs=range(0, 6), epoch=3, last="w/x_Last.pth", script="train_closedSet.py",
                          argv=argv, args=Namespace(overwrite=overwrite, continue_run=continued),
                          accel=SimpleNamespace(world=1))
    assert stop_message(run, "SIGINT") == ("SIGINT in epoch 3; w/x_Last.pth holds the run after epoch 2: continue it "
                                           f"with `python train_closedSet.py {command}`")
