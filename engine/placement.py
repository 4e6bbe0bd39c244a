"""Where a training run's images live, one decision for all ranks (with different pipelines their batches would
differ): resident (datasets/resident.py) when its need is at most MEMORY_SHARE of every rank's free memory."""
import math
import os

import torch

from datasets.resident import MEMORY_SHARE, free_memory, resident_bytes
from networks.build import build_network


def training_bytes(config, method, batch):
    """Bytes one training step of `config`'s network needs at `batch` images: 3 x the parameters' (weights,
    gradients, momentum), twice each leaf module's output (kept for backward, its gradient), on the meta device."""
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
    """The resident pipeline's need on `device`: the uint8 images (on a CPU, once per process) and a step."""
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
