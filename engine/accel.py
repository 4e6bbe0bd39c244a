"""How a run uses its hardware: device, memory format, bf16 autocast, torch.compile, DDP under torchrun (each rank
trains on its slice of every global batch; rank 0 alone logs and saves). CUDA float32 is exact unless --tf32."""
import contextlib
import datetime
import importlib.util
import os
import platform
import shutil

import torch
import torch.distributed as dist

from core.errors import UserError

PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=1)  # rank 0's downloads; a dead rank ends all via torchrun


def default_channels_last(device):
    """channels_last speeds up the paper's CNN on CPU (oneDNN) and CUDA (docs/performance.md)."""
    return device.type in ("cpu", "cuda")


def set_float32_precision(tf32):
    """CUDA's float32 convolutions and matmuls in TF32 or exact: through fp32_precision where this torch has it
    (2.9 and later), else through the allow_tf32 flags it replaces."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(tf32)


def describe_machine(device):
    """What a measured number depends on, recorded with it (the thread count sets a CPU's summation order)."""
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return info


class Accel:
    """Device and distributed context of one process; `world` is 1 without torchrun."""

    def __init__(self, device, amp=False, compile=False, sync_bn=False, channels_last=None, tf32=False):
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        self.is_main, self.shard = self.rank == 0, (self.rank, self.world)
        self.amp, self.compile, self.sync_bn, self.tf32 = amp, compile, sync_bn, tf32
        if sync_bn and self.world > 1 and device.type != "cuda":
            raise UserError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); "
                            "drop it on CPU, where each rank normalizes its own slice of the batch")
        if compile:
            check_compile(device)  # every refusal before the process group is joined
        if self.world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
        self.device = device
        self.channels_last = default_channels_last(device) if channels_last is None else channels_last
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
            set_float32_precision(tf32)  # PyTorch's default is TF32 convolutions: said, not implied

    def describe(self):
        float32 = ("; float32 " + ("TF32" if self.tf32 else "exact (no TF32)")) if self.device.type == "cuda" else ""
        return (f"amp {'bfloat16' if self.amp else 'off'}, compile {'on' if self.compile else 'off'}, "
                f"processes {self.world}{float32}")

    def prepare(self, net):
        """(net: on the device, saved and validated; model: what the training step calls, wrapped)."""
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        net = net.to(self.device, memory_format=memory_format)
        model = net
        if self.world > 1:
            if self.sync_bn:
                net = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
            # DDP copied rank 0's weights to all; from here on dropout and augmentation differ by rank
            torch.manual_seed(torch.initial_seed() + self.rank)
        if self.compile:
            model = torch.compile(model)
        return net, self.inference(model)

    def inference(self, module):
        """`module` under bfloat16 autocast with --amp, else itself."""
        return Autocast(module, self.device.type) if self.amp else module

    def inputs(self, images, targets):
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    def sum(self, tensor):
        """Element-wise sum over ranks, in place."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def batch_means(self, means, counts):
        """The mean over global batches of each batch's mean, from this rank's slice means and sizes."""
        if self.world == 1:
            return means.mean(0)
        weighted = self.sum(means * counts.unsqueeze(1))
        return (weighted / self.sum(counts.clone()).unsqueeze(1)).mean(0)

    def sync_buffers(self, net):
        """Rank 0's BatchNorm statistics to every rank, so that all validate what rank 0 saves (DDP syncs later)."""
        if self.world > 1:
            for buffer in net.buffers():
                dist.broadcast(buffer, 0)

    def all_agree(self, flag):
        if self.world == 1:
            return bool(flag)
        return self.sum(torch.tensor([float(bool(flag))], device=self.device)).item() == self.world

    def gather(self, obj):
        """Every rank's `obj` (picklable; tensors on the CPU), by rank, on rank 0; None elsewhere."""
        if self.world == 1:
            return [obj]
        found = [None] * self.world if self.is_main else None
        dist.gather_object(obj, found, dst=0)
        return found

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class Autocast(torch.nn.Module):
    """`module` under bfloat16 autocast; bfloat16 outputs as float32 (autocast's loss list), float64 ones kept."""

    def __init__(self, module, device_type):
        super().__init__()
        self.module, self.device_type = module, device_type

    def forward(self, images):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.module(images)
        as_float = lambda t: t.float() if t.dtype == torch.bfloat16 else t  # noqa: E731
        return tuple(map(as_float, out)) if isinstance(out, tuple) else as_float(out)


def _found(variable, *names):
    return any(shutil.which(name) for name in (os.environ.get(variable, names[0]), *names))


def check_compile(device):
    """What torch.compile needs, checked before any work: on CPU a C++ compiler; on CUDA Triton and a C compiler."""
    if device.type == "cpu" and not _found("CXX", "g++", "c++"):
        raise UserError("--compile on CPU needs a C++ compiler (g++) on PATH; install one or drop --compile")
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise UserError("--compile on CUDA needs Triton (pip install triton, the version of your torch); "
                        "install it or drop --compile")
    if device.type == "cuda" and not _found("CC", "cc", "gcc", "clang"):
        raise UserError("--compile on CUDA needs a C compiler (gcc) on PATH, with which Triton builds its "
                        "kernel launchers; install one or drop --compile")
