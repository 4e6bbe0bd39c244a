"""Interrupted runs and --continue: a run stopped and continued ends exactly where an
uninterrupted run with the same --seed ends (weights, optimizer, every logged number), losing at
most the epoch it was stopped in; a process killed while saving leaves the previous checkpoint
loadable.

In-process runs stop through a test hook at a chosen batch (a KeyboardInterrupt raised after that
batch, as Ctrl-C would); one test sends a real SIGINT to a training subprocess.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_cacOpenset
import train_closedSet
from benchmarks.gpu_check_steps import interrupt_after
from conftest import CPU_EXACT, REPO, run_script
from core.errors import Interrupted
from engine import loop
from networks.weights import CAC, CROSS_ENTROPY, RUN_FILES

CAC_FILES, CE_FILES = RUN_FILES[CAC], RUN_FILES[CROSS_ENTROPY]  # the names: tests/unit/networks/test_weights.py


def weights(cwd, name, suffix):
    return os.path.join(cwd, "networks", "weights", "Digits", f"Digits_0_{name}{suffix}.pth")


def metrics(cwd, name, method):
    path = os.path.join(cwd, "runs", f"Digits_0_{name}{method}", "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def assert_same_run(cwd, a, b, files, method):
    """Same per-epoch numbers, same networks in every file, same optimizer and RNG states."""
    assert metrics(cwd, a, method) == metrics(cwd, b, method)
    for suffix in files:
        x = torch.load(weights(cwd, a, suffix), weights_only=True)
        y = torch.load(weights(cwd, b, suffix), weights_only=True)
        assert x["epoch"] == y["epoch"] and set(x["net"]) == set(y["net"]), suffix
        for key in x["net"]:
            assert torch.equal(x["net"][key], y["net"][key]), (suffix, key)
        if suffix.endswith("Last"):
            assert x["best"] == y["best"]
            mx, my = x["optimizer"]["state"], y["optimizer"]["state"]
            assert set(mx) == set(my) and all(torch.equal(mx[i]["momentum_buffer"], my[i]["momentum_buffer"])
                                              for i in mx)
            assert torch.equal(x["rng"]["torch"], y["rng"]["torch"])
            assert all(torch.equal(g, h) for g, h in zip(x["rng"]["generators"], y["rng"]["generators"]))


def stop_at(monkeypatch, epoch, step):
    """Ctrl-C after batch `step` of `epoch`."""
    monkeypatch.setattr(loop, "batches", interrupt_after(loop.batches, epoch, step))


@CPU_EXACT
@pytest.mark.parametrize("script,method,files,workers,stops", [
    (train_cacOpenset, "CAC", CAC_FILES, 0, [(0, 5), (1, 19)]),  # in the first epoch; in the last batch of the second
    (train_closedSet, "ClosedSet", CE_FILES, 1, [(1, 5)]),  # a worker process augments the images
], ids=["cac", "ce-worker"])
def test_interrupted_and_continued_run_equals_uninterrupted(tmp_path, monkeypatch, script, method, files, workers,
                                                            stops):
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "3", "--workers", str(workers), "--seed", "5"]
    script.main(args + ["--name", "whole"])
    for i, (epoch, step) in enumerate(stops):
        with monkeypatch.context() as m:
            stop_at(m, epoch, step)
            with pytest.raises(Interrupted) as info:
                script.main(args + ["--name", "cut"] + (["--continue"] if i else []))
        assert info.value.exit_status == 128 + signal.SIGINT
        command = str(info.value).split("continue it with `")[1].rstrip("`")
        assert shlex.split(command) == ["python", f"{script.__name__}.py", *args, "--name", "cut", "--continue"]
        saved = torch.load(weights(tmp_path, "cut", files[-1]), weights_only=True)
        assert saved["epoch"] == epoch  # the state after the last finished epoch
        assert len(metrics(tmp_path, "cut", method)) == epoch  # epochs finished so far
    script.main(args + ["--name", "cut", "--continue"])
    assert_same_run(tmp_path, "whole", "cut", files, method)


@CPU_EXACT
def test_continue_in_the_second_phase_keeps_its_learning_rate(tmp_path, monkeypatch):
    """-r (lower learning rate, from the first run's best checkpoint) interrupted and continued
    with -r --continue equals -r run through."""
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "Digits", "--trial", "0", "--workers", "0"]
    train_closedSet.main(args + ["--epochs", "1", "--name", "first"])
    for name in ("whole", "cut"):  # -r loads <name>'s first-run checkpoint
        shutil.copy(weights(tmp_path, "first", "closedSetClassifier"), weights(tmp_path, name, "closedSetClassifier"))
    resumed = args + ["-r", "--epochs", "2"]
    train_closedSet.main(resumed + ["--name", "whole"])
    with monkeypatch.context() as m:
        stop_at(m, 2, 4)  # -r goes on after the first run's epoch 0: its epochs are 1 and 2
        with pytest.raises(Interrupted):
            train_closedSet.main(resumed + ["--name", "cut"])
    saved = torch.load(weights(tmp_path, "cut", "closedSetClassifierLast"), weights_only=True)
    assert (saved["phase"], saved["epoch"]) == (1, 2) and saved["optimizer"]["param_groups"][0]["lr"] == 0.001
    train_closedSet.main(resumed + ["--name", "cut", "--continue"])
    assert_same_run(tmp_path, "whole", "cut", CE_FILES, "ClosedSet")


@CPU_EXACT
def test_real_sigint_mid_run_then_the_printed_command_continues_it(tmp_path, monkeypatch):
    """SIGINT to a real training process (one worker process) in its second epoch: one line on
    stderr with the command that continues it, exit status 130; that command, run as printed, ends
    with the weights and numbers of the uninterrupted run."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # every process of the comparison: a thread count changes sums
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "2", "--workers", "1"]
    script = os.path.join(REPO, "train_closedSet.py")
    whole = subprocess.Popen([sys.executable, script, *args, "--name", "whole"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Python's own Ctrl-C handler even where this test runs with SIGINT ignored (a background job)
    cut = subprocess.Popen([sys.executable, script, *args, "--name", "cut"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in cut.stdout:  # epoch 0 is logged: the run is now in epoch 1 (~19 batches, seconds)
        if line.startswith('{"epoch": 0'):
            break
    time.sleep(0.3)
    cut.send_signal(signal.SIGINT)
    out, err = cut.communicate(timeout=300)
    assert cut.returncode == 130, (out[-2000:], err[-2000:])
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped: SIGINT in epoch 1;"), err
    command = shlex.split(lines[0].split("continue it with `")[1].rstrip("`"))
    assert command[:2] == ["python", script] and command[-1] == "--continue"  # the script's path as it was typed
    assert torch.load(weights(tmp_path, "cut", "closedSetClassifierLast"), weights_only=True)["epoch"] == 1
    proc = run_script(command[1], *command[2:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing" in proc.stdout and "epochs 1-1" in proc.stdout
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-2000:]
    assert_same_run(tmp_path, "whole", "cut", CE_FILES, "ClosedSet")


# A process that saves checkpoints in a loop, as a training run does every epoch, with files
# large enough (16 MB) that a kill usually lands in the middle of a write.
SAVE_LOOP = """
import sys, torch
sys.path.insert(0, {repo!r})
from networks.checkpoint import save_checkpoint
for k in range(1, 10**6):
    save_checkpoint({{"net": {{"w": torch.full((4_000_000,), float(k))}}, "acc": 0.0, "epoch": k}}, {path!r})
    print(k, flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.07, 0.13])
def test_sigkill_during_save_loop_keeps_a_loadable_checkpoint(tmp_path, delay):
    from networks.checkpoint import read_checkpoint

    path = str(tmp_path / "ckpt.pth")
    proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP.format(repo=REPO, path=path)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:
        if int(line) >= 2:  # at least two complete saves
            break
    time.sleep(delay)
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait()
    done = int(line)
    ckpt = read_checkpoint(path)  # a complete file, never half of one
    assert ckpt["epoch"] >= done
    assert torch.equal(ckpt["net"]["w"], torch.full((4_000_000,), float(ckpt["epoch"])))


def test_a_state_saved_on_cuda_continues_on_the_cpu_and_says_what_it_re_derived(tmp_path, monkeypatch):
    """A ...Last.pth as a CUDA run writes it (a CUDA generator's state is 16 bytes: the resident
    pipeline's two generators and the device's own) continued on the CPU: it trains on, and says in
    one line what it could not restore, instead of a traceback or a wrong 'version' line."""
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--workers", "0", "--name", "gpu"]
    with monkeypatch.context() as m:
        stop_at(m, 0, 5)
        with pytest.raises(Interrupted):
            train_closedSet.main(args)
    path = weights(tmp_path, "gpu", "closedSetClassifierLast")
    state = torch.load(path, weights_only=True)
    philox = torch.zeros(16, dtype=torch.uint8)  # what torch.Generator("cuda").get_state() holds
    state["rng"].update(cuda=[philox], generators=[philox, philox])
    state["device"] = "cuda"
    torch.save(state, path)
    proc = run_script("train_closedSet.py", *args, "--continue", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    said = [line for line in proc.stdout.splitlines() if "re-derives" in line]
    assert len(said) == 1 and "saved on cuda, continued on cpu" in said[0], proc.stdout
    assert "data generators (resident pipeline on cuda) do not fit this run's" in said[0]
    done = torch.load(path, weights_only=True)
    assert (done["epoch"], done["device"]) == (1, "cpu") and done["rng"]["cuda"] == []
