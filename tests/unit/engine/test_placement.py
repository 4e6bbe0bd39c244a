"""engine.placement: the memory a resident training run needs, counted against an independent
sum, and one pipeline decision for all ranks."""
import pytest
import torch

import engine.placement as placement
from engine.placement import choose_pipeline, need_bytes, training_bytes
from networks.config import NetworkConfig

CPU = torch.device("cpu")


def tiny_network(config, method, init_weights=False):
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 4 * 4, 3))


def test_training_bytes_count_weights_gradients_momentum_and_activations(monkeypatch):
    monkeypatch.setattr(placement, "build_network", tiny_network)
    params = (2 * 1 * 9 + 2) + (32 * 3 + 3)  # conv, linear: weights and biases
    outputs = 5 * (2 * 16 + 2 * 16 + 32 + 3)  # conv, relu, flatten, linear outputs of 5 images
    assert training_bytes(NetworkConfig(3, 1, 4), "CAC", 5) == 4 * (3 * params + 2 * outputs)


def test_the_papers_network_is_measured_without_memory_or_random_draws():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    small, large = (training_bytes(NetworkConfig(6, 1, 32), "CAC", b) for b in (1, 128))
    assert torch.equal(torch.get_rng_state(), before)
    assert large > small > 0 and (large - small) % 127 == 0  # activations grow with the batch, weights do not


class Ranks:
    """An Accel stand-in for several ranks: this one's answer and the others'."""

    def __init__(self, others, world=2):
        self.others, self.world, self.device, self.asked = others, world, CPU, []

    def all_agree(self, flag):
        self.asked.append(flag)
        return flag and all(self.others)


def test_one_rank_without_room_moves_every_rank_to_torchvision(monkeypatch):
    monkeypatch.setattr(placement, "free_memory", lambda device: 10**15)
    monkeypatch.setattr(placement, "need_bytes", lambda *a: 10**6)
    fits_here = Ranks(others=[True])
    assert choose_pipeline(fits_here, "resident", [], None, "CAC", 128) == "resident"
    another_rank_short = Ranks(others=[False])
    assert choose_pipeline(another_rank_short, "resident", [], None, "CAC", 128) == "torchvision"
    assert another_rank_short.asked == [True]  # this rank had room: the other rank's answer decided
    monkeypatch.setattr(placement, "free_memory", lambda device: 10**6)  # need > half of it here
    assert choose_pipeline(Ranks(others=[True]), "resident", [], None, "CAC", 128) == "torchvision"


def test_torchvision_asked_for_is_kept_without_a_collective():
    ranks = Ranks(others=[True])
    assert choose_pipeline(ranks, "torchvision", [], None, "CAC", 128) == "torchvision" and ranks.asked == []


@pytest.mark.parametrize("local_world, device, factor", [("3", "cpu", 3), ("3", "cuda", 1), (None, "cpu", 1)])
def test_images_count_once_per_process_sharing_the_memory(monkeypatch, local_world, device, factor):
    monkeypatch.setattr(placement, "training_bytes", lambda *a: 7)
    monkeypatch.setattr(placement, "resident_bytes", lambda d: d)
    if local_world is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert need_bytes([100, None, 20], None, "CAC", 1, torch.device(device)) == 120 * factor + 7
