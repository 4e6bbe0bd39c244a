"""torchrun + DistributedDataParallel on CPU (gloo), 2 processes, the embedded Digits data."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO

import train_closedSet
from core.errors import UserError
from networks.weights import CAC, CROSS_ENTROPY, RUN_FILES

pytestmark = pytest.mark.slow  # minute-scale on 2 cores: `-m "not slow"` leaves it out

# Runs a training script under torchrun; each rank also saves the weights it ended with, so
# that the test can compare them (the scripts themselves save on rank 0 only). Test hooks, set
# by environment variables: TEST_STOP=epoch,step,rank (that rank gets a Ctrl-C after that step),
# TEST_SHORT_RANK (that rank's device has no free memory); each rank writes the pipeline it trains
# with (pipeline<rank>), and after a --continue the dropout mask its restored generator draws next
# (mask<rank>.pt).
LAUNCHER = textwrap.dedent("""
    import os, runpy, sys
    import torch
    sys.path.insert(0, {repo!r})
    import datasets.resident
    from engine import accel, continuing, loop, training

    prepare, close = accel.Accel.prepare, accel.Accel.close
    rank = int(os.environ["RANK"])

    def remember(self, net):
        self.net, model = prepare(self, net)
        return self.net, model

    def save_then_close(self):
        if getattr(self, "net", None) is not None:
            torch.save(self.net.state_dict(), f"rank{{self.rank}}.pt")
        close(self)

    accel.Accel.prepare, accel.Accel.close = remember, save_then_close
    if os.environ.get("TEST_SHORT_RANK") == str(rank):
        datasets.resident.free_memory = lambda device: 1
        if hasattr(training, "choose_pipeline"):  # engine.placement reads it through its own name
            sys.modules["engine.placement"].free_memory = lambda device: 1
    build = training.TrainingRun._build_loaders

    def build_and_tell(self):
        build(self)
        with open(f"pipeline{{rank}}", "w") as f:
            f.write("resident" if type(self.train_loader).__name__ == "ResidentLoader" else "torchvision")

    training.TrainingRun._build_loaders = build_and_tell
    if "TEST_STOP" in os.environ:
        stop = tuple(map(int, os.environ["TEST_STOP"].split(",")))
        batches = loop.batches

        def stop_there(loader, accel, epoch, sums):
            for step, batch in enumerate(batches(loader, accel, epoch, sums), start=1):
                yield batch
                if (epoch, step, rank) == stop:
                    raise KeyboardInterrupt

        loop.batches = stop_there
    restore = continuing.restore

    def restore_and_draw(run):
        state = restore(run)
        with torch.random.fork_rng():  # the mask the network's first dropout would draw
            torch.save(torch.nn.functional.dropout(torch.ones(4096), 0.3) > 0, f"mask{{rank}}.pt")
        return state

    continuing.restore = restore_and_draw
    script = os.path.join({repo!r}, sys.argv[1])
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
""")


def torchrun(tmp_path, *args, processes=2, **hooks):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(repo=REPO))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, **{k: str(v) for k, v in hooks.items()}}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), str(launcher), *map(str, args)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env, check=False)


CAC_RUN = ["train_cacOpenset.py", "--dataset", "Digits", "--trial", "0", "--epochs", "2", "--device", "cpu",
           "--seed", "5", "--workers", "0"]


@pytest.fixture(scope="module")
def cac_run(tmp_path_factory):
    """CAC_RUN under torchrun, 2 processes, --name ddp: the folder and the process."""
    work = tmp_path_factory.mktemp("ddp")
    return work, torchrun(work, *CAC_RUN, "--name", "ddp")


@pytest.mark.parametrize("script, suffixes, loss", [
    ("train_cacOpenset.py", RUN_FILES[CAC][:-1], "train/CAC_Loss"),  # the best checkpoints, not ...Last
    ("train_closedSet.py", RUN_FILES[CROSS_ENTROPY][:-1], "train/CE_Loss"),
])
def test_two_gloo_processes_train_one_network(cac_run, tmp_path, script, suffixes, loss):
    epochs = 2 if script == "train_cacOpenset.py" else 1
    if script == "train_cacOpenset.py":
        tmp_path, proc = cac_run
    else:
        proc = torchrun(tmp_path, script, "--dataset", "Digits", "--trial", "0", "--epochs", epochs, "--device",
                        "cpu", "--name", "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks end with the same weights and BatchNorm statistics
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    # one set of checkpoints (and one interrupted-run state), one log written once, one final line
    last = "CACclassifierLast" if script == "train_cacOpenset.py" else "closedSetClassifierLast"
    saved = sorted(p.name for p in (tmp_path / "networks" / "weights" / "Digits").glob("*.pth"))
    assert saved == sorted(f"Digits_0_ddp{s}.pth" for s in [*suffixes, last])
    state = torch.load(tmp_path / "networks" / "weights" / "Digits" / f"Digits_0_ddp{last}.pth", weights_only=True)
    assert state["epoch"] == epochs and all(torch.equal(state["net"][k], ranks[0][k]) for k in ranks[0])
    run_dir = next((tmp_path / "runs").iterdir())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(epochs))
    assert proc.stdout.count("best validation") == 1
    # the saved network is rank 0's final one when its last epoch was the best (weights agree)
    final = torch.load(tmp_path / "networks" / "weights" / "Digits" / f"Digits_0_ddp{suffixes[-1]}.pth",
                       weights_only=True)
    if final["epoch"] == epochs - 1:
        assert all(torch.equal(final["net"][k], ranks[0][k]) for k in ranks[0])
    # the loss falls from the first epoch to the second
    if epochs > 1:
        assert lines[-1][loss] < lines[0][loss]
    assert 0 < lines[-1]["val/accuracy_percent"] <= 100


def test_sync_bn_on_cpu_is_a_clear_error_before_any_process_group(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; no group is joined before the check
    with pytest.raises(UserError, match="--sync_bn needs CUDA devices"):
        train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--device", "cpu", "--sync_bn"])


LAST = os.path.join("networks", "weights", "Digits", "Digits_0_{}CACclassifierLast.pth")


def last_state(tmp_path, name):
    return torch.load(tmp_path / LAST.format(name), weights_only=True)


def ranks_torch_states(state):
    return [state["rng"]["torch"], *(r["torch"] for r in state["ranks"])]


def test_one_pipeline_decision_for_every_rank(tmp_path):
    """3 processes, the third with no free memory: all three train on the torchvision pipeline (ranks
    on different pipelines would draw their batches from different generators)."""
    common = ["train_cacOpenset.py", "--dataset", "Digits", "--trial", "0", "--epochs", "1", "--device", "cpu",
              "--workers", "1", "--name", "short"]
    proc = torchrun(tmp_path, *common, processes=3, TEST_SHORT_RANK=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"pipeline{r}").read_text() for r in range(3)] == ["torchvision"] * 3
    assert "speed: pipeline torchvision (--pipeline resident asked:" in proc.stdout  # the one used, and the one asked


def test_stop_and_continue_under_torchrun_equals_the_uninterrupted_run(cac_run, tmp_path):
    """Rank 1 of 2 gets a Ctrl-C after step 3 of epoch 1: the run stops (torchrun ends the other rank),
    and ...Last.pth holds the state after epoch 0 with both ranks' random states; --continue gives each
    rank its own (their dropout masks differ) and ends where the uninterrupted run ends, bit for bit;
    the same state continued by 3 processes runs, and says what it re-derives."""
    common, (whole_run, proc) = CAC_RUN, cac_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(whole_run / f"pipeline{r}").read_text() for r in range(2)] == ["resident"] * 2
    proc = torchrun(tmp_path, *common, "--name", "cut", TEST_STOP="1,3,1")
    assert proc.returncode != 0, proc.stderr[-3000:]
    cut = last_state(tmp_path, "cut")
    assert (cut["epoch"], cut["world"], len(cut["ranks"]), cut["pipeline"]) == (1, 2, 1, "resident")
    first, second = ranks_torch_states(cut)
    assert not torch.equal(first, second)
    shutil.copy(tmp_path / LAST.format("cut"), tmp_path / LAST.format("more"))
    proc = torchrun(tmp_path, *common, "--name", "more", "--continue", processes=3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in proc.stdout.splitlines() if "re-derives" in line]
    assert len(said) == 1 and "saved by 2 process(es), continued by 3" in said[0], proc.stdout[-3000:]
    proc = torchrun(tmp_path, *common, "--name", "cut", "--continue")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing" in proc.stdout and "re-derives" not in proc.stdout
    masks = [torch.load(tmp_path / f"mask{r}.pt") for r in range(2)]
    assert not torch.equal(masks[0], masks[1])  # each rank its own dropout
    whole, done = last_state(whole_run, "ddp"), last_state(tmp_path, "cut")
    # every rank drew exactly what it drew in the uninterrupted run (dropout, batches, augmentation)
    assert all(torch.equal(a, b) for a, b in zip(ranks_torch_states(whole), ranks_torch_states(done)))
    assert all(torch.equal(a, b) for a, b in zip(whole["rng"]["generators"], done["rng"]["generators"]))
    logs = [(folder / "runs" / f"Digits_0_{n}CAC" / "metrics.jsonl").read_text()
            for folder, n in ((whole_run, "ddp"), (tmp_path, "cut"))]
    assert logs[0] == logs[1] and all(torch.equal(whole["net"][k], done["net"][k]) for k in whole["net"])
