"""engine.rank_states: each rank's share of a ...Last.pth, handed back to the same rank, and
what --continue re-derives (and says) when the world size, device type or pipeline changed."""
import torch

from engine.rank_states import changes, rank_share, reseed, saved_ranks, share
from engine.resume import rng_state

CPU = torch.device("cpu")


def saved_state(world, sums=None, generators=None):
    """A ...Last.pth's random part as `world` ranks save it: rank r's torch state seeded r,
    its sums (loss, correct) r + 1 and 10 * (r + 1), `seen` 100 * (r + 1)."""
    generators = generators or [torch.Generator().manual_seed(9)]
    ranks = []
    for r in range(world):
        torch.manual_seed(r)
        rng = rng_state(generators, CPU)
        part = None if sums is False else torch.tensor([r + 1.0, 10.0 * (r + 1)], dtype=torch.float64)
        ranks.append(share(rng, rng, part, 0 if sums is False else 100 * (r + 1)))
    first = ranks[0]
    return {**first, "ranks": ranks[1:], "world": world, "device": "cpu", "pipeline": "resident", "epoch": 3}


def test_same_world_each_rank_gets_its_own():
    state = saved_state(3)
    assert len(saved_ranks(state)) == 3
    for r in range(3):
        mine = rank_share(state, r, 3)
        torch.manual_seed(r)
        assert torch.equal(mine["rng"]["torch"], torch.get_rng_state())
        assert mine["seen"] == 100 * (r + 1) and mine["train_sums"].tolist() == [r + 1.0, 10.0 * (r + 1)]


def test_another_world_keeps_the_epoch_means_exact():
    """Saved by 2 ranks after k steps, continued by 3: the epoch's loss is sum / (steps * world)
    (engine/state.py epoch_means), so the saved part must weigh as its mean over the 2 ranks."""
    state = saved_state(2)
    shares = [rank_share(state, r, 3) for r in range(3)]
    loss_sum = sum(s["train_sums"][0].item() for s in shares)
    mean_per_step_saved = (1.0 + 2.0) / 2  # per step, over the ranks that trained it
    assert loss_sum / 3 == mean_per_step_saved  # the continued world's denominator gives it back
    assert sum(s["train_sums"][1].item() for s in shares) == 10.0 + 20.0  # correct images: counted once
    assert sum(s["seen"] for s in shares) == 100 + 200
    assert shares[1]["train_sums"].tolist() == [0.0, 0.0] and shares[2]["seen"] == 0


def test_a_new_rank_keeps_its_own_torch_generator_and_rank_0s_data_generators():
    state = saved_state(2)
    torch.manual_seed(1234)  # as seeding (--seed + rank) left this process
    mine = rank_share(state, 2, 3)
    assert torch.equal(mine["rng"]["torch"], torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(mine["rng"]["generators"], state["rng"]["generators"]))


def test_whole_epochs_carry_no_sums():
    state = saved_state(2, sums=False)
    assert [rank_share(state, r, 3)["train_sums"] for r in range(3)] == [None, None, None]


def test_changes_name_what_changed_and_nothing_otherwise():
    generators = [torch.Generator().manual_seed(9)]
    state = saved_state(2, generators=generators)
    assert changes(state, 2, CPU, "resident", generators) == []
    said = changes({**state, "device": "cuda"}, 2, CPU, "resident", generators)
    assert len(said) == 1 and said[0].startswith("saved on cuda, continued on cpu")
    said = changes(state, 3, CPU, "resident", generators)
    assert len(said) == 1 and "saved by 2 processes, continued by 3" in said[0] and ", rank 2 draws dropout" in said[0]
    said = changes({**state, "world": 1}, 4, CPU, "resident", generators)
    assert said == ["saved by 1 process, continued by 4: the epoch's sums are carried by rank 0, ranks 1-3 draw "
                    "dropout from --seed + rank"]
    cuda_sized = {**state, "rng": {**state["rng"], "generators": [torch.zeros(16, dtype=torch.uint8)]}}
    said = changes(cuda_sized, 2, CPU, "resident", generators)
    assert len(said) == 1 and "re-seeded from --seed and the epoch" in said[0] and "epoch 3" in said[0]
    said = changes(state, 2, CPU, "torchvision", generators * 2)  # another pipeline: another count
    assert len(said) == 1 and "(resident pipeline on cpu) do not fit this run's (torchvision on cpu)" in said[0]


def test_reseed_is_the_same_on_every_rank_and_differs_by_epoch():
    a, b = [torch.Generator(), torch.Generator()], [torch.Generator(), torch.Generator()]
    reseed(a, 5, 2)
    reseed(b, 5, 2)
    assert all(torch.equal(x.get_state(), y.get_state()) for x, y in zip(a, b))
    assert not torch.equal(a[0].get_state(), a[1].get_state())
    reseed(b, 5, 3)
    assert not torch.equal(a[0].get_state(), b[0].get_state())
