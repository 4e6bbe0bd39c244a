"""The GPU check's multi-GPU and cross-device steps (issue 15), for benchmarks/gpu_check.sh to call:

    python benchmarks/gpu_check_ddp.py [--dry-run] [--work DIR] [--dataset Digits]

Steps, each a real run in a scratch folder (--work, default a new temporary one), in order;
one line each, `ok <step> <seconds>s` or `FAIL <step>: <its last stderr line>`; the exit status
is the number of failed steps (0: all passed):
  amp-compile   one CAC epoch with --amp --compile on CUDA
  ddp           torchrun, nccl: two ranks with --sync_bn if the machine has two GPUs, else one rank
  cpu-to-cuda   a CAC run stopped after batch 5 on the CPU, continued with --continue on CUDA
  cuda-to-cpu   the same, stopped on CUDA and continued on the CPU
A continue to another device must finish and say in one line what it re-derived
(engine/continuing.py). --dry-run: the same steps on the CPU (gloo, two ranks, no --compile
and no --sync_bn, which are CUDA matters here; one continue, CPU to CPU); CI runs it.
Digits is embedded in the repo: no download, as the GPU machine has no network.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `python -c STOPPER EPOCH STEP SCRIPT ARGS...`: run SCRIPT with a Ctrl-C arriving after batch
# STEP of EPOCH (the way tests/e2e/test_resume.py stops runs)
STOPPER = """
import runpy, sys
sys.path.insert(0, {repo!r})
from engine import loop
epoch, step = int(sys.argv[1]), int(sys.argv[2])
real = loop.batches
def batches(loader, accel, e, sums):
    for s, batch in enumerate(real(loader, accel, e, sums), start=1):
        yield batch
        if (e, s) == (epoch, step):
            raise KeyboardInterrupt
loop.batches = batches
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU (gloo), as CI runs them")
    p.add_argument("--work", default=None, help="scratch folder for the runs (default: a new temporary one)")
    p.add_argument("--dataset", default="Digits", help="data set of every run (default: Digits, embedded)")
    return p.parse_args(argv)


def gpu_count():
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(work, command, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=900)


def train(args, device, name, *extra):
    return [os.path.join(REPO, "train_cacOpenset.py"), "--dataset", args.dataset, "--trial", "0", "--device", device,
            "--name", name, "--workers", "0", *extra]


def amp_compile(args, work, cuda):
    flags = ["--amp", "--compile"] if cuda == "cuda" else ["--amp"]
    return [run(work, [sys.executable, *train(args, cuda, "ampcompile", "--epochs", "1", *flags)])]


def ddp(args, work, cuda):
    ranks = 2 if cuda == "cpu" or gpu_count() >= 2 else 1
    sync = ["--sync_bn"] if cuda == "cuda" and ranks == 2 else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               *train(args, cuda, f"ddp{ranks}", "--epochs", "1", *sync)]
    return [run(work, command, {"OMP_NUM_THREADS": "1"})]


def cross(first, then):
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


STEPS = {"amp-compile": amp_compile, "ddp": ddp, "cpu-to-cuda": cross("cpu", "cuda"),
         "cuda-to-cpu": cross("cuda", "cpu")}


def main(argv=None):
    args = parse_args(argv)
    cuda = "cpu" if args.dry_run else "cuda"
    if cuda == "cuda" and gpu_count() == 0:
        print("error: no CUDA device: run with --dry-run on a CPU", file=sys.stderr)
        return 2
    work = args.work or tempfile.mkdtemp(prefix="gpu_check_ddp.")
    os.makedirs(work, exist_ok=True)
    failed = 0
    for name, step in STEPS.items():
        if args.dry_run and name == "cpu-to-cuda":
            print(f"skip {name} (--dry-run: on the CPU it is cuda-to-cpu again)", flush=True)
            continue
        start = time.time()
        procs = step(args, work, cuda)
        bad = [p for p in procs if p.returncode != 0]
        if bad:
            failed += 1
            last = (bad[0].stderr.strip().splitlines() or ["(no stderr)"])[-1]
            print(f"FAIL {name}: exit {bad[0].returncode}: {last}", flush=True)
        else:
            print(f"ok {name} {time.time() - start:.0f}s", flush=True)
    print(f"runs in {work}", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
