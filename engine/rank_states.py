"""Each rank's share of an interrupted run's state, and what --continue re-derives.

Saving (engine/state.py): every rank's random states (Python, NumPy, torch CPU, its own CUDA
device, the data generators) and its partial sums of the epoch in progress are gathered to
rank 0, which writes them all into the one atomic ...Last.pth (engine/resume.py: rank 0's at
the top level, the others under `ranks`). --continue hands each rank back its own, so the
dropout masks of the ranks stay different and a continued run equals the uninterrupted one.

What cannot be put back is re-derived, and rank 0 says so in one line (`changes`):
- another device type: a CUDA state is not used on a CPU, and a CUDA run continuing a CPU
  state keeps the CUDA generator its seeding gave it (--seed + rank);
- another pipeline or device for the data (resident on CUDA, resident on CPU, torchvision:
  their generators differ in number and kind, a CUDA generator's state is 16 bytes, a CPU
  one's 5,056): the data generators are re-seeded from --seed and the epoch, so the rest of
  the stopped epoch draws a new batch order and augmentation (`reseed`);
- another world size: every rank draws the same data generators (each draws the whole global
  batch, datasets/pipeline.py), so rank 0's serve all; a rank that was not saved keeps the
  torch generator its seeding gave it; rank 0 carries the epoch's partial sums, rescaled to
  the new number of ranks (the epoch's means stay exact), the others start from zero.
"""
import torch

from engine.resume import generators_fit


def share(rng, epoch_rng, train_sums, seen):
    """One rank's part of the state, as saved (train_sums on the CPU, or None)."""
    return {"rng": rng, "epoch_rng": epoch_rng, "seen": seen,
            "train_sums": None if train_sums is None else train_sums.detach().cpu()}


def saved_ranks(state):
    """Every rank's part of a ...Last.pth, rank 0 first (older states: one process)."""
    top = {key: state[key] for key in ("rng", "epoch_rng", "train_sums", "seen")}
    return [top, *state.get("ranks", [])]


def rank_share(state, rank, world):
    """The part of `state` that rank `rank` of `world` restores (see the module's docstring)."""
    ranks = saved_ranks(state)
    if len(ranks) == world:
        return ranks[rank]
    own = ranks[rank] if rank < len(ranks) else None
    if own is None:  # keep this process's torch generator as seeding made it
        current = {"torch": torch.get_rng_state(), "cuda": []}
        own = {key: {**ranks[0][key], **current} for key in ("rng", "epoch_rng")}
    sums, seen = None, 0
    if ranks[0]["train_sums"] is not None and rank == 0:
        sums = sum(r["train_sums"] for r in ranks).clone()
        sums[:-1] *= world / len(ranks)  # losses: sums of slice means; the last entry counts images
        seen = sum(r["seen"] for r in ranks)
    elif ranks[0]["train_sums"] is not None:
        sums = torch.zeros_like(ranks[0]["train_sums"])
    data = {key: {**own[key], "generators": ranks[0][key]["generators"]} for key in ("rng", "epoch_rng")}
    return {**data, "train_sums": sums, "seen": seen}


def changes(state, world, device, pipeline, generators):
    """The phrases of what --continue re-derives for this run (empty when nothing changed)."""
    said = []
    saved_device, saved_pipeline = state.get("device", "cpu"), state.get("pipeline", pipeline)
    if saved_device != device.type:
        said.append(f"saved on {saved_device}, continued on {device.type}: the CUDA generator "
                    f"{'is not used' if device.type != 'cuda' else 'starts from --seed + rank'}")
    saved_world = state.get("world", 1)
    if saved_world != world:
        one = world == saved_world + 1
        new = f", rank {saved_world} draws" if one else f", ranks {saved_world}-{world - 1} draw"
        said.append(f"saved by {saved_world} process{'es' * (saved_world > 1)}, continued by {world}: the epoch's "
                    f"sums are carried by rank 0" + (f"{new} dropout from --seed + rank" if world > saved_world else ""))
    if not generators_fit(state["rng"]["generators"], generators):
        said.append(f"the data generators ({saved_pipeline} pipeline on {saved_device}) do not fit this run's "
                    f"({pipeline} on {device.type}): re-seeded from --seed and the epoch, so the rest of epoch "
                    f"{state['epoch']} draws a new batch order")
    return said


def reseed(generators, seed, epoch):
    """Re-derive the data generators that cannot be restored: the same on every rank."""
    for i, generator in enumerate(generators):
        generator.manual_seed((seed * 1_000_003 + epoch * 101 + i) % 2**63)
