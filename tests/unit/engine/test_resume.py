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
