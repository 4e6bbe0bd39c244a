"""Smoke test of the throughput benchmark in CI size (a couple of steps)."""
import json

from conftest import run_script


def test_throughput_benchmark_runs_and_reports(tmp_path):
    proc = run_script("benchmarks/throughput.py", "--steps", "1", "--batch", "16", "--workers", "0",
                      "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["measure"] for r in rows] == ["step", "loop"]
    assert all(r["images_per_s"] > 0 for r in rows) and 0 <= rows[1]["data_wait_share"] <= 1
