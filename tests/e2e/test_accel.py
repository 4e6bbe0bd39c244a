"""Speed options end to end on CPU: bf16 autocast and the per-sample pipeline still train."""
import json

import pytest
import torch

import train_closedSet


@pytest.mark.parametrize("flags", [["--amp"], ["--pipeline", "torchvision", "--workers", "0"],
                                   ["--drop_last", "--augment_batches", "4"]])
def test_training_with_speed_options_saves_a_finite_network(tmp_path, monkeypatch, capsys, flags):
    monkeypatch.chdir(tmp_path)
    train_closedSet.main(["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--name", "x", *flags])
    ckpt = torch.load(tmp_path / "networks" / "weights" / "Digits" / "Digits_0_xclosedSetClassifier.pth",
                      weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["net"].values() if v.is_floating_point())
    line = json.loads((tmp_path / "runs" / "Digits_0_xClosedSet" / "metrics.jsonl").read_text())
    # 6 known classes: a trained epoch is far above chance (1/6) on validation
    assert line["val/accuracy_percent"] > 50
    assert ckpt["args"]["amp"] == ("--amp" in flags)
    if "--drop_last" in flags:  # Digits trial 0: 607 training images in batches of 32: 18 whole ones, the 19th dropped
        assert ckpt["args"]["drop_last"] and ckpt["args"]["augment_batches"] == 4
        assert 607 // 32 == 18 and "(18/18 steps)" in capsys.readouterr().out
