"""The data set configuration (datasets/config.py) as the trial reads it; each bad entry of
datasets/config.json is one line naming it."""
import json
import os

import pytest

import datasets.config as dataset_config
from conftest import REPO
from core.errors import UserError
from datasets.trial import OpenSetData


def test_unknown_dataset_name():
    with pytest.raises(UserError) as err:
        OpenSetData("CIFAR11", 0)
    assert "CIFAR11" in str(err.value) and "MNIST" in str(err.value)


BAD_CONFIGS = {  # Digits entry change -> the key the line names
    "batch_size_0": (lambda c: c.update(batch_size=0), "batch_size"),
    "batch_size_text": (lambda c: c.update(batch_size="32"), "batch_size"),
    "missing_key": (lambda c: c.pop("val_fraction"), "val_fraction"),
    "workers_negative": (lambda c: c.update(num_workers=-1), "num_workers"),
    "channels_2": (lambda c: c.update(im_channels=2), "im_channels"),
    "one_class": (lambda c: c.update(num_known_classes=1), "num_known_classes"),
    "dropout_1": (lambda c: c.update(dropout=1), "dropout"),
    "dropout_400_digits": (lambda c: c.update(dropout=10 ** 400), "dropout"),  # too large for a float
    "val_fraction_0": (lambda c: c.update(val_fraction=0), "val_fraction"),
    "val_fraction_1": (lambda c: c.update(val_fraction=1.0), "val_fraction"),
    "flip_2": (lambda c: c["data_transforms"].update(flip=2), "data_transforms.flip"),
    "rotate_negative": (lambda c: c["data_transforms"].update(rotate=-5), "data_transforms.rotate"),
    "scale_min_0": (lambda c: c["data_transforms"].update(scale_min=0), "data_transforms.scale_min"),
    "lr_one_value": (lambda c: c["openset_training"].update(learning_rate=[0.01]), "openset_training.learning_rate"),
    "lr_zero": (lambda c: c["closedset_training"].update(learning_rate=[0.01, 0]),
                "closedset_training.learning_rate"),
    "epochs_fraction": (lambda c: c["openset_training"].update(max_epoch=[1.5, 2]), "openset_training.max_epoch"),
    "epochs_0": (lambda c: c["openset_training"].update(max_epoch=[0, 2]), "openset_training.max_epoch"),
    "weight_decay_negative": (lambda c: c["openset_training"].update(weight_decay=-1), "weight_decay"),
    "momentum_1": (lambda c: c["openset_training"].update(momentum=1), "openset_training.momentum"),
    "no_schedule": (lambda c: c.pop("closedset_training"), "closedset_training.learning_rate"),
    "anchor_flip_text": (lambda c: c.update(anchor_flip="no"), "anchor_flip"),
    "normalization_channels": (lambda c: c.update(normalization={"mean": [[0.1, 0.2, 0.3]], "std": [[0.3, 0.3, 0.3]]}),
                               "normalization.mean[0]"),
    "normalization_std_0": (lambda c: c.update(normalization={"mean": [[0.1]], "std": [[0.0]]}),
                            "normalization.std[0]"),
    "normalization_rows": (lambda c: c.update(normalization={"mean": [[0.1], [0.2]], "std": [[0.3]]}),
                           "normalization"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_dataset_config_entries_are_checked_on_load(tmp_path, monkeypatch, case):
    change, key = BAD_CONFIGS[case]
    with open(os.path.join(REPO, "datasets", "config.json")) as f:
        config = json.load(f)
    change(config["Digits"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(dataset_config, "DATASETS_DIR", str(tmp_path))
    with pytest.raises(UserError) as info:
        dataset_config.load_config("Digits")
    message = str(info.value)
    assert f"{key} of Digits in {tmp_path / 'config.json'}" in message and "\n" not in message, message
    dataset_config.load_config("MNIST")  # the other entries are still fine


@pytest.mark.parametrize("text,fragment", [
    ('{"Digits": {"im_size": 16', "not valid JSON"), ("[1, 2]", "not an object of data sets"),
    ('{"Digits": 7}', "is a int, not an object"), ('{"Digits": {"im_size": NaN}}', "NaN"),
], ids=["truncated", "list", "entry_not_object", "nan"])
def test_a_damaged_dataset_config_is_one_line(tmp_path, monkeypatch, text, fragment):
    (tmp_path / "config.json").write_text(text)
    monkeypatch.setattr(dataset_config, "DATASETS_DIR", str(tmp_path))
    with pytest.raises(UserError, match=fragment):
        dataset_config.load_config("Digits")


# ------------------------------------------------------------------ command-line overrides of augmentation, batch


def override_args(**flags):
    from argparse import Namespace

    return Namespace(dataset="Digits", data_root="unused", no_download=True, split_file=None, im_size=None,
                     im_channels=None, **{"hflip": None, "rotation": None, "crop_scale": None, "batch_size": None,
                                          **flags})


def test_overrides_change_the_augmentation_of_both_pipelines(private_cache):
    from torchvision import transforms as T

    from datasets.pipeline import build_loader

    default = OpenSetData.from_args(override_args(), 0)
    aug = default.cfg["data_transforms"]
    data = OpenSetData.from_args(override_args(hflip=0.0, rotation=7.5, crop_scale=0.6, batch_size=16), 0)
    spec = data.train_dataset().spec
    assert (spec.flip, spec.rotate, spec.scale_min) == (0.0, 7.5, 0.6) != (aug["flip"], aug["rotate"], aug["scale_min"])
    steps = {type(t): t for t in data.train_dataset().transform.transforms}  # the torchvision pipeline
    assert steps[T.RandomHorizontalFlip].p == 0.0 and steps[T.RandomRotation].degrees == [-7.5, 7.5]
    assert steps[T.RandomResizedCrop].scale == (0.6, 1.0)
    resident = build_loader(data.train_dataset(), data.cfg["batch_size"], True, pipeline="resident")
    assert resident.spec == spec and resident.batch_size == 16  # the resident pipeline reads the same spec
    assert data.val_dataset().spec == default.val_dataset().spec  # evaluation images are not augmented
    assert default.train_dataset().spec.flip == aug["flip"] and default.cfg == dataset_config.load_config("Digits")


@pytest.mark.parametrize("flag,value,fragment", [("hflip", 1.5, "a probability from 0 to 1"),
                                                 ("rotation", -1.0, "degrees, 0 or more"),
                                                 ("crop_scale", 0.0, "a share in (0, 1]"),
                                                 ("batch_size", 0, "1 or more")])
def test_bad_override_is_one_line_naming_the_flag(flag, value, fragment):
    with pytest.raises(UserError) as err:
        dataset_config.apply_overrides(dataset_config.load_config("Digits"), "Digits", **{flag: value})
    assert f"--{flag} {value}: give" in str(err.value) and fragment in str(err.value)
