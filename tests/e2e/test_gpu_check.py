"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check on the CPU at toy size
(Digits instead of Fashion's schedule, gloo; issue 15's CUDA-path steps on the CPU), one Markdown
report; bad input is one line."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # minute-scale on 2 cores: `-m "not slow"` leaves it out

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.sh")


def fake_fashion(folder):
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(b"")  # only their presence is checked in a dry run
    return folder


def test_dry_run_writes_one_report_with_every_step(tmp_path):
    report = tmp_path / "gpu.md"
    proc = subprocess.run([SCRIPT, str(fake_fashion(tmp_path / "fashion")), "--dry-run", "--report", str(report)],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=1800)
    text = report.read_text()
    assert proc.returncode == 0, text[-4000:]
    for step in ("versions", "tests", "speed", "fashion", "amp", "ddp", "cuda_paths"):
        assert f"- {step}: ok" in text and f"### {step}: ok" in text, step
    assert "(dry run on the CPU)" in text and "backend on cpu: gloo" in text
    speed_rows = [line for line in text.splitlines() if line.startswith("| 1x32x32 |")]
    assert {row.split("|")[2].strip() for row in speed_rows} == {"fp32", "--amp", "--channels_last on"}
    assert "| data set | CE max_softmax | CE max_logit |" in text  # reproduce.py's table
    assert "| Digits | CE | max_logit | auroc |" in text  # fp32 beside amp


def test_missing_fashion_file_is_one_line(tmp_path):
    folder = fake_fashion(tmp_path / "fashion")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    proc = subprocess.run([SCRIPT, str(folder), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "t10k-labels-idx1-ubyte.gz not found" in proc.stderr and "four .gz files" in proc.stderr
    assert subprocess.run([SCRIPT], capture_output=True, text=True).returncode == 2
