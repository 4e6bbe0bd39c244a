"""--backbone resnet18 --pretrained FILE through the scripts, on a tiny grey image folder: training
loads the file and records it, -r, evaluation and predict rebuild the ResNet from the checkpoint
(without the file), and --pretrained's bad inputs are one line before any data is read."""
import csv
import io
import os

import pytest
import torch
from torchvision import models

from conftest import assert_one_line_error, ok, read_calibration_file, run_script
from fakedata import PETS_TEST, write_pets

CKPT = os.path.join("networks", "weights", "ImageFolder", "ImageFolder_0_rCACclassifierAnchorLoss.pth")


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    """1 epoch of CAC with resnet18 from a random torchvision state_dict, then -r for 1 epoch,
    evaluation and predict; the file is removed before -r, so nothing after training reads it."""
    root = tmp_path_factory.mktemp("resnet")
    write_pets(root)
    weights = str(root / "resnet18.pth")
    torch.manual_seed(5)
    torch.save(models.resnet18(weights=None).state_dict(), weights)
    file_state = torch.load(weights, weights_only=True)
    cwd = str(root / "work")
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--workers", "0",
            "--im_size", "16", "--im_channels", "1"]
    train = ["--trial", "0", "--name", "r", "--epochs", "1", "--backbone", "resnet18"]
    torch.set_num_threads(1)
    first = ok(run_script("train_cacOpenset.py", *data, *train, "--pretrained", weights, cwd=cwd, in_process=True))
    first_ckpt = torch.load(os.path.join(cwd, CKPT), weights_only=True)
    os.remove(weights)
    resumed = ok(run_script("train_cacOpenset.py", *data, *train, "-r", cwd=cwd, in_process=True))
    evaluated = ok(run_script("eval_cacOpenset.py", *data, "--num_trials", "1", "--name", "r", cwd=cwd,
                              in_process=True))
    predicted = ok(run_script("predict.py", CKPT, "../pets/test", cwd=cwd, in_process=True))
    return {"cwd": cwd, "weights": weights, "file_state": file_state, "first": first, "first_ckpt": first_ckpt,
            "resumed": resumed, "evaluated": evaluated, "predicted": predicted}


def test_training_starts_from_the_file_and_records_it(resnet_run):
    ckpt = resnet_run["first_ckpt"]
    assert ckpt["backbone"] == "resnet18"
    assert ckpt["network"] == {"num_classes": 3, "num_channels": 1, "im_size": 16, "dropout": 0.2,
                               "backbone": "resnet18", "pretrained": resnet_run["weights"]}
    # one epoch of SGD moved the weights from the file's, but not far: they started there
    start, trained = resnet_run["file_state"]["layer4.1.conv2.weight"], ckpt["net"]["encoder.resnet.layer4.1.conv2.weight"]
    assert trained.shape == start.shape and not torch.equal(trained, start)
    assert (trained - start).norm() < 0.1 * start.norm()


def test_r_evaluation_and_predict_rebuild_the_resnet_from_the_checkpoint(resnet_run):
    cwd = resnet_run["cwd"]
    ckpt = torch.load(os.path.join(cwd, CKPT), weights_only=True)
    assert ckpt["network"]["pretrained"] == resnet_run["weights"]  # -r keeps what the first run started from
    assert read_calibration_file(os.path.join(cwd, CKPT))["network"]["backbone"] == "resnet18"
    assert os.path.isfile(os.path.join(cwd, "results", "ImageFolder_rCAC_trials0-0.json"))
    rows = list(csv.DictReader(io.StringIO(resnet_run["predicted"].stdout)))
    assert len(rows) == sum(PETS_TEST.values()) and {r["prediction"] for r in rows} <= {"cat", "dog", "owl", "unknown"}


@pytest.mark.parametrize("extra, fragments", [
    (["--backbone", "cnn", "--pretrained"], ["--pretrained applies to --backbone resnet18 or resnet50, not 'cnn'"]),
    (["--backbone", "resnet18", "--pretrained", "missing.pth"], ["--pretrained missing.pth: no such file"]),
    (["--backbone", "resnet18", "--pretrained", "--no_download"],
     ["resnet18-f37072fd.pth", os.path.join("hub", "checkpoints"), "--pretrained FILE"]),
])
def test_bad_pretrained_is_one_line_before_any_data_is_read(tmp_path, monkeypatch, extra, fragments):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: no ImageNet file there
    proc = run_script("train_cacOpenset.py", "--dataset", "ImageFolder", "--data_root", "no_such_folder",
                      "--split_file", "no_such.json", "--trial", "0", *extra, cwd=str(tmp_path), in_process=True)
    assert_one_line_error(proc, *fragments)
    assert not list(tmp_path.rglob("*.pth"))  # nothing downloaded, no checkpoint
