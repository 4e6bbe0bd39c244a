"""benchmarks/reproduce.py --launcher pool (submitit's local executor) on Digits trials 0-1,
cross-entropy, 2 + 1 epochs, one torch thread per script: two jobs at once give the same table
as the sequential run, bit for bit (docs/determinism.md: same machine, same threads); the parent
stopped (SIGTERM: it stops its jobs, whose scripts save) or killed (SIGKILL: its jobs see it gone
and stop theirs) mid-sweep, the same command again finishes the sweep, continuing what was
stopped and repeating no finished phase, with the same table. Slow: about 40 s a run on 2 cores."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, ok, run_script

pytestmark = pytest.mark.slow
NAME = "repro_paper_e2-1"
ARGV = ["--datasets", "Digits", "--trials", "0-1", "--methods", "ce", "--epochs", "2", "1", "--threads", "1",
        "--workers", "0", "--out", "tbl"]
POOL = ["--launcher", "pool", "--jobs", "2"]


def table(work):
    saved = json.loads((work / "tbl.json").read_text())
    return {key: cell.get("result") for key, cell in saved["cells"].items()}, saved["summary"]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    pytest.importorskip("submitit")
    work = tmp_path_factory.mktemp("sequential")
    ok(run_script("benchmarks/reproduce.py", *ARGV, cwd=work, in_process=True))
    results, summary = table(work)
    assert set(results) == {"Digits/0/CE", "Digits/1/CE"} and all(results.values())
    return results, summary


def commands(work):
    """Every training command of the jobs' logs, per cell: (phase, --overwrite or --continue)."""
    out = {}
    for trial in (0, 1):
        text = (work / "tbl_jobs" / f"Digits_{trial}_CE.log").read_text()
        out[trial] = [(int(" -r " in line), "--continue" if "--continue" in line else "--overwrite")
                      for line in text.splitlines() if line.startswith("$ ") and "train_closedSet.py" in line]
    return out


def no_finished_phase_repeated(runs):
    for trial, cell in runs.items():
        for phase in (0, 1):
            mine = [how for p, how in cell if p == phase]
            assert mine[:1] == ["--overwrite"] and set(mine[1:]) <= {"--continue"}, (trial, cell)


def test_two_jobs_at_once_give_the_sequential_table(sequential, tmp_path):
    proc = ok(run_script("benchmarks/reproduce.py", *ARGV, *POOL, cwd=tmp_path, in_process=True))
    assert table(tmp_path) == sequential
    assert proc.stdout.count(": done") == 2 and commands(tmp_path) == {t: [(0, "--overwrite"), (1, "--overwrite")]
                                                                       for t in (0, 1)}
    saved = json.loads((tmp_path / "tbl.json").read_text())
    assert saved["threads_per_job"] == 1 and {j["launcher"] for j in saved["jobs"].values()} == {"pool"}


def start_then_stop(work, sig):
    """Start the pool in its own process; `sig` to it once trial 0 has trained its first epoch."""
    metrics = work / "runs" / f"Digits_0_{NAME}ClosedSet" / "metrics.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "benchmarks", "reproduce.py"), *ARGV, *POOL], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_parent_stopped_then_the_same_command_finishes_the_sweep(sequential, tmp_path):
    code, out, err = start_then_stop(tmp_path, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "stopped: SIGTERM" in err and "Traceback" not in err, (out, err)
    assert json.loads((tmp_path / "tbl.json").read_text())["done"] < 2
    ok(run_script("benchmarks/reproduce.py", *ARGV, *POOL, cwd=tmp_path, in_process=True))
    assert table(tmp_path) == sequential
    runs = commands(tmp_path)
    no_finished_phase_repeated(runs)
    assert (0, "--continue") in runs[0]  # stopped in its first phase, continued where it stopped


def test_parent_killed_then_the_same_command_finishes_the_sweep(sequential, tmp_path):
    code, _, _ = start_then_stop(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL and json.loads((tmp_path / "tbl.json").read_text())["done"] < 2
    ok(run_script("benchmarks/reproduce.py", *ARGV, *POOL, cwd=tmp_path, in_process=True))
    assert table(tmp_path) == sequential
    no_finished_phase_repeated(commands(tmp_path))
