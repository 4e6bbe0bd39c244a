"""The GPU check's multi-GPU and cross-device steps (issue 15), for benchmarks/gpu_check.sh to call:

    python benchmarks/gpu_check_ddp.py [--dry-run] [--toy] [--steps NAME ...] [--work DIR] [--dataset Digits]

Steps, each a real run in a scratch folder (--work, default a new temporary one), in order;
one line each, `ok <step> <seconds>s`, `skip <step>: <why>` or `FAIL <step>: <its last stderr line>`;
the exit status is the number of failed steps (0: all passed):
  collective    a process group of one rank in this process (nccl on CUDA, gloo on the CPU): all_reduce
  amp-compile   one CAC epoch with --amp --compile on CUDA
  ddp           torchrun, nccl, two ranks with --sync_bn: needs two GPUs (NCCL refuses two ranks on one
                device), so on a one-GPU machine it is skipped, saying so
  cpu-to-cuda   a CAC run stopped after batch 5 on the CPU, continued with --continue on CUDA
  cuda-to-cpu   the same, stopped on CUDA and continued on the CPU
A continue to another device must finish and say in one line what it re-derived
(engine/continuing.py). --dry-run: the same steps on the CPU (gloo, two ranks, no --compile
and no --sync_bn, which are CUDA matters here; one continue, CPU to CPU). --toy: one step per
epoch on 8x8 images (not for the continues, which stop after batch 5).
Digits is embedded in the repo: no download, as the GPU machine has no network.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run from anywhere
from benchmarks.gpu_check_steps import collective, cross  # noqa: E402
from benchmarks.gpu_check_train import TOY  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU (gloo), as CI runs them")
    p.add_argument("--work", default=None, help="scratch folder for the runs (default: a new temporary one)")
    p.add_argument("--dataset", default="Digits", help="data set of every run (default: Digits, embedded)")
    p.add_argument("--toy", action="store_true", help="one step per epoch on 8x8 images")
    p.add_argument("--steps", nargs="+", default=None, metavar="NAME", help=f"only these steps, of: {', '.join(STEPS)}")
    return p.parse_args(argv)


def gpu_count():
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(work, command, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=900)


def train(args, device, name, *extra):
    toy = TOY if args.toy else []
    return [os.path.join(REPO, "train_cacOpenset.py"), "--dataset", args.dataset, "--trial", "0", "--device", device,
            "--name", name, "--workers", "0", *toy, *extra]


def amp_compile(args, work, cuda):
    flags = ["--amp", "--compile"] if cuda == "cuda" else ["--amp"]
    return [run(work, [sys.executable, *train(args, cuda, "ampcompile", "--epochs", "1", *flags)])]


def ddp(args, work, cuda):
    if cuda == "cuda" and gpu_count() < 2:
        return (f"NCCL with 2 ranks cannot run on this machine's {gpu_count()} GPU (NCCL refuses two ranks on one "
                f"device); the collective step above ran nccl with 1 rank, tests/e2e/test_distributed.py runs 2 "
                f"ranks on gloo")
    sync = ["--sync_bn"] if cuda == "cuda" else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *train(args, cuda, "ddp2", "--epochs", "1", *sync)]
    return [run(work, command, {"OMP_NUM_THREADS": "1"})]


STEPS = {"collective": collective, "amp-compile": amp_compile, "ddp": ddp,
         "cpu-to-cuda": cross("cpu", "cuda", run, train), "cuda-to-cpu": cross("cuda", "cpu", run, train)}


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
        if args.steps is not None and name not in args.steps:
            continue
        if args.dry_run and name == "cpu-to-cuda":
            print(f"skip {name} (--dry-run: on the CPU it is cuda-to-cpu again)", flush=True)
            continue
        start = time.time()
        procs = step(args, work, cuda)
        if isinstance(procs, str):
            print(f"skip {name}: {procs}", flush=True)
            continue
        said = [p.stdout.strip() for p in procs if p.returncode == 0 and not p.args and p.stdout.strip()]
        bad = [p for p in procs if p.returncode != 0]
        if bad:
            failed += 1
            last = (bad[0].stderr.strip().splitlines() or ["(no stderr)"])[-1]
            print(f"FAIL {name}: exit {bad[0].returncode}: {last}", flush=True)
        else:
            print(f"ok {name} {time.time() - start:.0f}s" + "".join(f": {line}" for line in said), flush=True)
    print(f"runs in {work}", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
