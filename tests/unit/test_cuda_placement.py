"""On a CPU-only machine, what a CUDA training step does with its tensors: under PyTorch's
FakeTensorMode (tensors with a device and a dtype, no memory, no kernel) and with CUDA's
autocast switched on by hand (torch.autocast refuses without a GPU), the resident pipeline,
the network and the loss keep every tensor on cuda:0, the convolutions run in bfloat16 and
the CAC distances and losses stay float64."""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import datasets.resident as resident
from datasets.augment import AugmentSpec
from datasets.resident import ResidentLoader
from networks.build import build_network
from networks.config import NetworkConfig
from utils import CACLoss

CUDA0 = torch.device("cuda", 0)


class Outputs(TorchDispatchMode):
    """Device and dtype of every tensor each ATen op returns."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.seen += [(str(func), t.device, t.dtype) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


@contextlib.contextmanager
def cuda_autocast():
    """What torch.autocast("cuda", torch.bfloat16) sets, without its check for a GPU."""
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    try:
        yield
    finally:
        torch.set_autocast_enabled("cuda", False)


def fake_cuda_works():
    """Whether this torch makes fake CUDA tensors without a CUDA driver (2.4 does not: its fake uniform_
    initializes CUDA, as 2.3's; a CPU build is not linked with CUDA at all; 2.11 and later CUDA builds do)."""
    try:
        with FakeTensorMode():
            torch.empty(2, device=CUDA0).uniform_()
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not torch.cuda.is_available() and not fake_cuda_works(),
                    reason="this torch cannot make fake CUDA tensors without a GPU (seen: a CPU build, torch 2.3 and 2.4)")
@pytest.mark.parametrize("method", ["CAC", "ClosedSet"])
def test_a_resident_cuda_training_step_keeps_every_tensor_on_cuda_0(monkeypatch, method):
    asked = []  # a CUDA generator cannot be made without a GPU: record the device asked for
    real = torch.Generator
    monkeypatch.setattr(resident.torch, "Generator", lambda device="cpu": asked.append(torch.device(device)) or real())
    spec = AugmentSpec("train", 32, [0.5], [0.25], scale_min=0.7, flip=0.5, rotate=10.0)
    with FakeTensorMode(), Outputs() as outputs:
        images = torch.empty(40, 1, 32, 32, dtype=torch.uint8, device=CUDA0)
        labels = torch.zeros(40, dtype=torch.int64, device=CUDA0)
        loader = ResidentLoader(images, labels, 16, spec, shuffle=True, seed=0, channels_last=True)
        with torch.device(CUDA0):
            net = build_network(NetworkConfig(6, 1, 32), method)
        x, y = next(iter(loader))
        with cuda_autocast():
            if method == "CAC":
                logits, distances = net(x)
                losses = CACLoss(0.1)(distances, y)
            else:
                logits = net(x)
                losses = (F.cross_entropy(logits, y),)
    assert asked == [CUDA0]  # the loader's generator sits on the data's device
    assert x.device == y.device == CUDA0 and x.is_contiguous(memory_format=torch.channels_last)
    # torch.tensor(literal, device=...) lifts the literal on the CPU before moving it: nothing else may
    placed = [(op, device) for op, device, _ in outputs.seen if op != "aten.lift_fresh.default"]
    assert placed and all(device == CUDA0 for _, device in placed), {d for _, d in placed}
    dtypes = {op: dtype for op, _, dtype in outputs.seen}
    assert dtypes["aten.convolution.default"] == torch.bfloat16 and logits.dtype == torch.bfloat16  # autocast on
    if method == "CAC":
        assert distances.dtype == torch.float64 and all(loss.dtype == torch.float64 for loss in losses)
    assert all(loss.device == CUDA0 for loss in losses)
