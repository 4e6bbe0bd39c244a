"""Smoke test of the speed benchmark in CI size (a couple of steps, tiny synthetic data)."""
import json

from conftest import run_script


def test_speed_benchmark_runs_and_reports(tmp_path):
    proc = run_script("benchmarks/speed.py", "--quick", "--shapes", "3x32x32", "--device", "cpu",
                      "--out", "speed.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "speed.json").read_text())
    rows = result["rows"]
    assert [(r["measure"], r.get("pipeline")) for r in rows] == [
        ("step", None), ("loop", "resident"), ("loop", "torchvision"), ("eval", "resident"), ("eval", "torchvision")]
    assert result["matmul_gflops"] > 0 and all(r["images_per_s"] > 0 for r in rows)
    # FLOPs of the paper's CNN on 3x32x32, written out: 2 * in * out * 9 per output pixel and conv
    convs = [(3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 128, 16), (128, 128, 8),
             (128, 128, 8), (128, 128, 8), (128, 128, 4)]
    forward = (sum(2 * i * o * 9 * s * s for i, o, s in convs) + 2 * 2048 * 6) / 1e9
    assert abs(rows[0]["gflop_forward"] - forward) < 2e-3
    for r in rows[1:3]:
        assert 0 <= r["data_wait_share"] <= 1 and r["data_alone_images_per_s"] > 0
    # the two pipelines feed the same evaluation batches to the same network
    assert rows[3]["accuracy"] == rows[4]["accuracy"] and rows[3]["auroc"] == rows[4]["auroc"]
