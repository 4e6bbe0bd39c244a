"""engine/calibrating.py on its own: which checkpoints can be calibrated from their training data,
where that data is found (relative paths from the folder training ran in), the run's lock, and
a calibration stored only into the weights it was made from."""
import os

import torch

from core.lock import RunLock
from engine.calibrating import can_calibrate, lock_for, store_made_calibration, training_args
from engine.calibration import weights_digest
from networks.checkpoint import save_checkpoint
from networks.weights import CAC, CLOSED_SET, RUN_FILES, lock_path, weights_path


def test_can_calibrate_needs_the_recorded_training_args():
    assert can_calibrate({"args": {"dataset": "Digits", "trial": 0}})
    assert not can_calibrate({"net": {}}) and not can_calibrate({"args": {"dataset": "Digits"}})


def test_relative_data_paths_are_found_from_the_folder_training_ran_in(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (tmp_path / "split.json").write_text("{}")
    path = str(run / weights_path("ImageFolder", 0, "m", RUN_FILES[CAC][0]))
    ckpt = {"args": {"dataset": "ImageFolder", "trial": 0, "data_root": "data", "split_file": "../split.json"}}
    monkeypatch.chdir(tmp_path)
    args = training_args(ckpt, path)
    assert args.data_root == os.path.join(str(run), "data") and os.path.isdir(args.data_root)
    assert os.path.samefile(args.split_file, tmp_path / "split.json")
    assert args.pipeline == "torchvision" and args.workers is None  # defaults for older args
    given = training_args(ckpt, path, data_root="elsewhere", split_file="s.json")
    assert (given.data_root, given.split_file) == ("elsewhere", "s.json")
    assert training_args(ckpt, str(tmp_path / "loose.pth")).data_root == "data"  # not under networks/weights


def test_the_caches_go_to_this_machines_cache_folder_not_the_one_training_used():
    ckpt = {"args": {"dataset": "Digits", "trial": 0, "cache_dir": "/the/training/machine/cache"}}
    assert training_args(ckpt, "x.pth").cache_dir is None  # then $CAC_CACHE_DIR or the default
    assert training_args(ckpt, "x.pth", cache_dir="mine").cache_dir == "mine"  # predict.py --cache_dir


def test_lock_is_the_one_training_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for method in (CAC, CLOSED_SET):
        for suffix in RUN_FILES[method]:
            assert lock_for(weights_path("CIFAR+50", 3, "my_run", suffix), method).path == \
                lock_path("CIFAR+50", 3, "my_run", method)
    assert lock_for(os.path.join("x", "renamed.pth"), CAC).path == os.path.join("x", ".renamed.pth.lock")


def test_stored_only_into_the_weights_it_was_made_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = weights_path("Digits", 0, "m", RUN_FILES[CAC][1])
    os.makedirs(os.path.dirname(path))
    save_checkpoint({"net": {"w": torch.ones(2)}, "acc": 1.0}, path)
    other = weights_digest({"w": torch.zeros(2)})
    assert not store_made_calibration(path, {"made": 1}, other, CAC)
    assert "holds other weights now" in capsys.readouterr().err
    assert "calibration" not in torch.load(path, weights_only=True)
    held = RunLock(lock_path("Digits", 0, "m", CAC), "run")
    held.acquire()
    try:
        assert not store_made_calibration(path, {"made": 1}, weights_digest({"w": torch.ones(2)}), CAC)
    finally:
        held.release()
    assert "being trained now" in capsys.readouterr().err
    assert store_made_calibration(path, {"made": 1}, weights_digest({"w": torch.ones(2)}), CAC)
    saved = torch.load(path, weights_only=True)
    assert saved["calibration"] == {"made": 1} and saved["acc"] == 1.0 and torch.equal(saved["net"]["w"], torch.ones(2))
    assert not os.path.exists(lock_path("Digits", 0, "m", CAC))  # released
