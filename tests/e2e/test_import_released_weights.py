"""scripts/import_released_weights.py on the released checkpoints (skipped without them)."""
import os

import torch

from conftest import assert_one_line_error, run_script


def test_released_weights_land_on_trials_5_to_9(reference_dir, tmp_path):
    src = os.path.join(reference_dir, "checkpoints")
    proc = run_script("scripts/import_released_weights.py", src, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in os.listdir(src):
        dataset, trial, rest = name.split("_", 2)
        target = tmp_path / "networks" / "weights" / dataset / f"{dataset}_{int(trial) + 5}_{rest}"
        assert target.read_bytes() == open(os.path.join(src, name), "rb").read()
    again = run_script("scripts/import_released_weights.py", src, cwd=tmp_path)
    assert_one_line_error(again, "exists already", "--force")


def test_unsafe_or_missing_input_is_refused(tmp_path):
    assert_one_line_error(run_script("scripts/import_released_weights.py", tmp_path / "nope", cwd=tmp_path),
                          "does not exist")
    bad = tmp_path / "MNIST_0_CACclassifierAnchorLoss.pth"
    bad.write_bytes(b"garbage")
    assert_one_line_error(run_script("scripts/import_released_weights.py", bad, cwd=tmp_path), "corrupt")
    assert not (tmp_path / "networks").exists()
    torch.save({"net": {}, "acc": 0.0, "epoch": 0}, tmp_path / "notes.pth")
    proc = run_script("scripts/import_released_weights.py", tmp_path / "notes.pth", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"skipped {tmp_path / 'notes.pth'}: not named <dataset>_<trial>_<...>.pth",
                                        "error: no released checkpoint found among the given paths"]
