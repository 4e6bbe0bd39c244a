"""The batches of a run: device-resident batches where the data set allows, else the per-sample
torchvision DataLoader; either one sharded across DistributedDataParallel ranks."""
import torch
from torch.utils.data import DataLoader, Sampler

from datasets.resident import num_batches, resident_loader

PIPELINES = ("resident", "torchvision")


class ShardedBatchSampler(Sampler):
    """This rank's slice [rank::world] of each global batch, as the resident pipeline's: every pipeline
    and process count trains on the same global batches."""

    def __init__(self, length, batch_size, shuffle, seed, rank, world, drop_last=False):
        self.length, self.batch_size, self.shuffle = length, batch_size, shuffle
        self.rank, self.world, self.drop_last = rank, world, drop_last
        self.generator = torch.Generator().manual_seed(seed)  # same seed on every rank: same batches

    def __len__(self):
        return num_batches(self.length, self.batch_size, self.world, self.drop_last)

    def __iter__(self):
        order = torch.randperm(self.length, generator=self.generator) if self.shuffle else torch.arange(self.length)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start:start + self.batch_size][self.rank::self.world].tolist()


def build_loader(dataset, batch_size, shuffle, *, pipeline="resident", workers=0, seed=0,
                 device=None, shard=(0, 1), channels_last=False, check_memory=True, drop_last=False,
                 augment_batches=1):
    """Batches of a RemappedSubset, `batch_size` the global batch of which shard=(rank, world) gets its
    slice; "resident" falls back to torchvision where resident_loader declines (device None: the CPU).
    `drop_last`: no partial last batch (static shapes); `augment_batches`: resident.ResidentLoader's."""
    device = device or torch.device("cpu")
    if pipeline == "resident":
        loader = resident_loader(dataset, batch_size, shuffle, device, seed, shard, channels_last, check_memory,
                                 drop_last, augment_batches)
        if loader is not None:
            return loader
    # workers are started afresh each epoch, seeded from `generator`: an epoch's augmentation then
    # depends only on the generator's state at its start, which --continue restores
    batches = (dict(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last) if shard[1] == 1 else
               dict(batch_sampler=ShardedBatchSampler(len(dataset), batch_size, shuffle, seed, *shard, drop_last)))
    return DataLoader(dataset, num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed), **batches)


def loader_generators(loaders):
    """The random generators of `loaders` (build_loader's), in a fixed order: each loader's own
    (the resident loader's, or a DataLoader's shuffle and worker seeds), then a sharded sampler's."""
    found = []
    for loader in loaders:
        found.append(loader.generator)
        sampler = getattr(loader, "batch_sampler", None)  # torchrun's sharded sampler shuffles itself
        if getattr(sampler, "generator", None) is not None:
            found.append(sampler.generator)
    return found
