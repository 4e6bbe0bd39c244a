"""Steps of benchmarks/gpu_check_ddp.py that are more than one command: a one-rank process group in
the checking process (`collective`), and a run stopped on one device and continued on another (`cross`).
Each returns subprocess.CompletedProcess results, as gpu_check_ddp's steps do."""
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interrupt_after(batches, epoch, step):
    """engine.loop.batches with a Ctrl-C (KeyboardInterrupt, as Python's SIGINT handler raises) right
    after batch `step` of `epoch`: how the GPU check and tests/e2e/test_resume.py stop a run."""
    def stopping(loader, accel, e, sums):
        for s, batch in enumerate(batches(loader, accel, e, sums), start=1):
            yield batch
            if (e, s) == (epoch, step):
                raise KeyboardInterrupt
    return stopping


# `python -c STOPPER EPOCH STEP SCRIPT ARGS...`: run SCRIPT with a Ctrl-C after batch STEP of EPOCH
STOPPER = """
import runpy, sys
sys.path.insert(0, {repo!r})
from benchmarks.gpu_check_steps import interrupt_after
from engine import loop
loop.batches = interrupt_after(loop.batches, int(sys.argv[1]), int(sys.argv[2]))
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def collective(args, work, cuda):
    """A one-rank process group in this process, its backend's all_reduce and broadcast on the device."""
    import torch
    import torch.distributed as dist

    backend = "nccl" if cuda == "cuda" else "gloo"
    with socket.socket() as s:  # a free port on this machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
    try:
        value = torch.full((4,), 3.0, device=cuda)
        dist.all_reduce(value)
        dist.broadcast(value, 0)
        got = value.tolist()
    finally:
        dist.destroy_process_group()
    ok = got == [3.0] * 4
    said = f"{backend} on {cuda}: all_reduce and broadcast over 1 rank gave {got}"
    return [subprocess.CompletedProcess([], 0 if ok else 1, said, "" if ok else f"expected [3.0] * 4: {said}")]


def cross(first, then, run, train):
    """A step: a run stopped on device `first` after batch 5 of epoch 0, continued on `then`."""
    def step(args, work, cuda):
        devices = {"cpu": "cpu", "cuda": cuda}
        name = f"{first}to{then}"
        stopper = os.path.join(work, "stopper.py")
        with open(stopper, "w") as f:
            f.write(STOPPER.format(repo=REPO))
        stopped = run(work, [sys.executable, stopper, "0", "5", *train(args, devices[first], name, "--epochs", "1")])
        if stopped.returncode != 130:
            return [stopped]
        continued = run(work, [sys.executable, *train(args, devices[then], name, "--epochs", "1", "--continue")])
        moved = devices[first] != devices[then]
        said = [line for line in continued.stdout.splitlines() if "re-derives" in line]
        if continued.returncode == 0 and len(said) != int(moved):
            continued.returncode, continued.stderr = 1, f"expected {int(moved)} re-derive line(s), got {said}"
        return [continued]
    return step
