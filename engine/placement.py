"""Where a training run's images live: one pipeline decision for every rank.

The resident pipeline (datasets/resident.py) decodes the training and validation images onto
the device; it is chosen when, on every rank, the memory it needs is at most MEMORY_SHARE of
the memory free there. The need counted (`training_bytes`, `need_bytes`):
- the decoded images, uint8, training and validation sets (on a CPU every process of the
  machine holds its own copy in the same memory: times LOCAL_WORLD_SIZE);
- the network: weights, gradients and SGD's momentum, 3 x the parameters' bytes;
- the activations of one training step at this rank's share of the batch: every leaf
  module's output, twice (kept for the backward pass, and its gradient), measured by one
  forward pass on PyTorch's meta device (no memory, no random draw).
Each rank judges its own device; the ranks then agree (one all-reduce): resident only if it
fits on all. Ranks with different pipelines would draw their batch order from different
generators, and their [rank::world] slices would overlap or miss images.
"""
import math
import os

import torch

from datasets.resident import MEMORY_SHARE, ResidentLoader, free_memory, resident_bytes
from networks.build import build_network


def training_bytes(config, method, batch):
    """Bytes one training step of the network that `config` describes needs at `batch` images."""
    with torch.device("meta"):
        net = build_network(config, method)
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    outputs = []

    def count(module, inputs, output):
        for out in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(out, torch.Tensor):
                outputs.append(out.numel() * out.element_size())

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        net.train()
        net(torch.empty(batch, config.num_channels, config.im_size, config.im_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return 3 * params + 2 * sum(outputs)


def need_bytes(datasets, config, method, batch, device):
    """What the resident pipeline needs on `device` (see the module's docstring)."""
    images = sum(resident_bytes(d) or 0 for d in datasets)
    if device.type == "cpu":
        images *= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return images + training_bytes(config, method, batch)


def choose_pipeline(accel, requested, datasets, config, method, global_batch):
    """`requested` (--pipeline) as all ranks can run it: "resident" only where it fits on every rank."""
    if requested != "resident":
        return requested
    need = need_bytes(datasets, config, method, math.ceil(global_batch / accel.world), accel.device)
    free = free_memory(accel.device)
    return "resident" if accel.all_agree(free is None or need <= MEMORY_SHARE * free) else "torchvision"


def pipeline_name(loader):
    """The pipeline a loader belongs to, as saved in ...Last.pth."""
    return "resident" if isinstance(loader, ResidentLoader) else "torchvision"
