"""The batches of a run (datasets/pipeline.py): each global batch split across ranks the same
way by both pipelines."""
import pytest
import torch

from datasets.pipeline import ShardedBatchSampler, build_loader


def _batches(loader):
    return [(x.contiguous(), y.cpu()) for x, y in loader]


@pytest.mark.parametrize("pipeline", ["resident", "torchvision"])
def test_shards_split_each_global_batch(trials, pipeline):
    dataset = trials[1].val_dataset()
    whole = _batches(build_loader(dataset, 6, False, pipeline=pipeline))
    shards = [_batches(build_loader(dataset, 6, False, pipeline=pipeline, shard=(r, 2))) for r in range(2)]
    for b, (x, y) in enumerate(whole[:len(shards[0])]):
        assert torch.equal(shards[0][b][1], y[0::2]) and torch.equal(shards[1][b][1], y[1::2])
        assert torch.equal(shards[0][b][0], x[0::2]) and torch.equal(shards[1][b][0], x[1::2])


def test_sharded_sampler_drops_a_last_batch_too_small_to_share():
    sampler = ShardedBatchSampler(13, 4, False, 0, rank=1, world=2)  # last batch: 1 image < 2 ranks
    assert list(sampler) == [[1, 3], [5, 7], [9, 11]] and len(sampler) == 3
