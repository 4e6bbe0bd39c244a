"""torchrun + DistributedDataParallel on CPU (gloo), 2 processes, the embedded Digits data."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO

import train_closedSet
from core.errors import UserError
from networks.weights import CAC, CLOSED_SET, RUN_FILES

# Runs a training script under torchrun; each rank also saves the weights it ended with, so
# that the test can compare them (the scripts themselves save on rank 0 only).
LAUNCHER = textwrap.dedent("""
    import os, runpy, sys
    import torch
    sys.path.insert(0, {repo!r})
    from engine import accel

    prepare, close = accel.Accel.prepare, accel.Accel.close

    def remember(self, net):
        self.net, model = prepare(self, net)
        return self.net, model

    def save_then_close(self):
        torch.save(self.net.state_dict(), f"rank{{self.rank}}.pt")
        close(self)

    accel.Accel.prepare, accel.Accel.close = remember, save_then_close
    script = os.path.join({repo!r}, sys.argv[1])
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
""")


def torchrun(tmp_path, *args):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(repo=REPO))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(launcher), *map(str, args)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env, check=False)


@pytest.mark.parametrize("script, suffixes, loss", [
    ("train_cacOpenset.py", RUN_FILES[CAC][:-1], "train/CAC_Loss"),  # the best checkpoints, not ...Last
    ("train_closedSet.py", RUN_FILES[CLOSED_SET][:-1], "train/CE_Loss"),
])
def test_two_gloo_processes_train_one_network(tmp_path, script, suffixes, loss):
    epochs = 2 if script == "train_cacOpenset.py" else 1
    proc = torchrun(tmp_path, script, "--dataset", "Digits", "--trial", "0", "--epochs", epochs, "--device", "cpu",
                    "--name", "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks end with the same weights and BatchNorm statistics
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    # one set of checkpoints (and one interrupted-run state), one log written once, one final line
    last = "CACclassifierLast" if script == "train_cacOpenset.py" else "closedSetClassifierLast"
    saved = sorted(p.name for p in (tmp_path / "networks" / "weights" / "Digits").iterdir())
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
    assert 0 < lines[-1]["val/accuracy"] <= 100


def test_sync_bn_on_cpu_is_a_clear_error_before_any_process_group(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; no group is joined before the check
    with pytest.raises(UserError, match="--sync_bn needs CUDA devices"):
        train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--device", "cpu", "--sync_bn"])
