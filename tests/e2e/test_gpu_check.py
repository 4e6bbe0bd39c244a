"""benchmarks/gpu_check.sh: limits that fit the slot, a report written step by step that a kill cannot take
back (the dry run on the CPU at toy size, one step cut by its limit, the whole check killed in its last step),
and bad input as one line."""
import os
import signal
import subprocess
import sys
import time

from conftest import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.sh")
STEPS = ["versions", "levers", "tests", "fashion", "amp", "cuda_paths"]


def test_the_limits_fit_the_slot_and_python3_is_the_default():
    proc = subprocess.run(["bash", SCRIPT, "--plan"], capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if k != "PYTHON"})
    lines = proc.stdout.splitlines()
    limits = {name: int(value) for name, value in (line.split() for line in lines[:-2])}
    assert proc.returncode == 0 and list(limits) == STEPS
    assert lines[-2] == f"sum {sum(limits.values())}" and sum(limits.values()) <= 480
    assert lines[-1] == "python python3"
    only = subprocess.run(["bash", SCRIPT, "--plan"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "GPU_CHECK_ONLY": "amp fashion"})
    assert only.stdout.splitlines()[:3] == [f"fashion {limits['fashion']}", f"amp {limits['amp']}",
                                            f"sum {limits['fashion'] + limits['amp']}"]


def kill_session(sid):
    """SIGKILL every process of session `sid` (the check's, started with start_new_session): `timeout` puts
    each step in a process group of its own."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                session = int(f.read().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if session == sid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_dry_run_report_grows_step_by_step_and_a_kill_keeps_the_finished_steps(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_LIMITS": "levers=3", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(["bash", SCRIPT, "--out", str(out), "--dry-run"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report, deadline = out / "report.md", time.time() + 300
    while "## amp:" not in (report.read_text() if report.exists() else "") and proc.poll() is None:
        assert time.time() < deadline, "the dry run did not reach the amp step in 5 minutes"
        time.sleep(0.2)
    kill_session(proc.pid)  # as the device tool stops a command at its limit: every process it started
    proc.wait(timeout=30)
    text = report.read_text()
    assert text.startswith("# GPU check ") and "(dry run on the CPU, toy size)" in text
    assert "Process groups: gloo on the CPU (a dry run makes no NCCL group)." in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert [s.split(":")[0][3:] for s in sections] == STEPS[:5], sections  # killed in cuda_paths: no summary
    assert sections[1].startswith("## levers: CUT at its 3 s limit")
    for ok in (0, 2, 3, 4):
        assert sections[ok].startswith(f"## {STEPS[ok]}: ok,"), sections[ok]
    assert "torch " in text and "1 passed" in text  # versions; the tests step's pytest line
    assert "| ClosedSet | max_softmax |" in text and "accuracy amp | accuracy fp32 |" in text  # fp32 beside amp
    log = (out / "steps.log").read_text()
    assert "== cuda_paths" in log  # the whole output as printed, the killed step's start included
    assert sorted(os.listdir(out)) == ["report.md", "steps.log"]  # the cut levers step wrote no JSON


def test_bad_input_is_one_line(tmp_path):
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (fashion / f"{name}.gz").write_bytes(b"")
    cases = [([], "give --out DIR"), (["--out", str(tmp_path / "o"), "--fashion", str(fashion)],
                                      "t10k-labels-idx1-ubyte.gz not found: give --fashion DIR"),
             (["--out", str(tmp_path / "o"), "--bogus"], "unknown argument '--bogus'")]
    for args, fragment in cases:
        proc = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr, (args, proc.stderr)
        assert proc.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()
