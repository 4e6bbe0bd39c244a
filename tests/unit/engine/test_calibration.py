"""engine.calibration: a calibration is checked part by part (each kind of damage is named); the
file beside a checkpoint is read only when made from that checkpoint's bytes and valid (a
damaged one is named, a stale one is not a fault), written all or nothing with float64 values
exactly; the anchor means are reused only for the data that made them; a calibration an
earlier version stored inside a checkpoint is still read."""
import copy
import hashlib
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine import calibration
from engine.calibration import (anchor_data_key, cached_anchor_means, calibration_path, calibration_problem,
                                calibration_record, embedded_calibration, read_calibration, write_calibration)

DIGEST = hashlib.sha256(b"the checkpoint's bytes").hexdigest()


def cac_calibration():
    """A valid calibration of a 3-class CAC network on 16 x 16 grey images, as its file holds it."""
    return {"checkpoint_sha256": DIGEST, "method": "CAC", "dataset": "Digits", "trial": 0, "scorer": "cac",
            "thresholds": {"cac": 0.5, "min_distance": 1.25}, "accept_rate": 0.95,
            "class_names": ["zero", "one", "two"], "known_classes": [0, 1, 2],
            "preprocessing": {"im_size": 16, "im_channels": 1, "mean": [0.5], "std": [0.25]},
            "network": {"num_classes": 3, "num_channels": 1, "im_size": 16, "dropout": 0.3, "backbone": "cnn"},
            "anchor_means": {"means": [[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], "data": {"dataset": "Digits"}}}


def closed_set_calibration():
    cal = cac_calibration()
    del cal["anchor_means"]
    cal.update(method="ClosedSet", scorer="max_softmax", thresholds={"max_softmax": -0.9, "max_logit": -3.0})
    return cal


def test_valid_calibrations_have_no_problem():
    assert calibration_problem(cac_calibration()) is None
    assert calibration_problem(cac_calibration(), "CAC", 3) is None
    assert calibration_problem(closed_set_calibration(), "ClosedSet", 3) is None
    cal = cac_calibration()
    cal["accept_rate"] = 1  # the upper end is included
    cal["network"] = {"num_classes": 3, "num_channels": 1, "im_size": 16}  # dropout, backbone optional
    assert calibration_problem(cal) is None


DELETE = object()


def _set(*path_and_value):
    *path, value = path_and_value

    def change(cal):
        target = cal
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return cal
    return change


# name: (change of the valid CAC calibration, a fragment the message must hold)
DAMAGE = {
    "not_a_dict": (lambda cal: [cal], "it is list, not a dict"),
    "unknown_method": (_set("method", "Other"), "method 'Other'"),
    "method_a_list": (_set("method", ["CAC"]), "method ['CAC']"),  # unhashable: once a TypeError
    "thresholds_not_a_dict": (_set("thresholds", [0.5, 1.25]), "thresholds [0.5, 1.25]"),
    "thresholds_empty": (_set("thresholds", {}), "thresholds {}"),
    "threshold_nan": (_set("thresholds", "cac", float("nan")), "not finite numbers"),
    "threshold_inf": (_set("thresholds", "cac", float("inf")), "not finite numbers"),
    "threshold_bool": (_set("thresholds", "cac", True), "not finite numbers"),
    "threshold_a_string": (_set("thresholds", "cac", "0.5"), "not finite numbers"),
    "threshold_of_another_method": (_set("thresholds", {"max_softmax": 0.5}), "scorers of cac, min_distance"),
    "scorer_without_threshold": (_set("thresholds", {"min_distance": 1.0}), "scorer 'cac' has no threshold"),
    "accept_rate_zero": (_set("accept_rate", 0), "accept_rate 0 is not in (0, 1]"),
    "accept_rate_above_one": (_set("accept_rate", 1.5), "accept_rate 1.5"),
    "accept_rate_missing": (_set("accept_rate", DELETE), "accept_rate None"),
    "network_missing": (_set("network", DELETE), "network is not a dict of"),
    "network_extra_key": (_set("network", "depth", 9), "network is not a dict of"),
    "network_size_float": (_set("network", "im_size", 16.0), "not a positive integer"),
    "network_classes_zero": (_set("network", "num_classes", 0), "not a positive integer"),
    "network_dropout_one": (_set("network", "dropout", 1), "network dropout 1"),
    "network_backbone_number": (_set("network", "backbone", 5), "network backbone 5"),
    "class_names_too_few": (_set("class_names", ["zero", "one"]), "class_names is not a list of 3 names"),
    "class_names_not_strings": (_set("class_names", [0, 1, 2]), "class_names is not a list of 3 names"),
    "preprocessing_without_std": (_set("preprocessing", "std", DELETE), "preprocessing is not a dict"),
    "preprocessing_two_channels": (_set("preprocessing", "im_channels", 2), "16 px x 2 channel(s)"),
    "preprocessing_size_float": (_set("preprocessing", "im_size", 16.0), "16.0 px"),
    "preprocessing_other_size": (_set("preprocessing", "im_size", 32),
                                 "preprocessing for 32 px x 1 channel(s), network for 16 px x 1"),
    "preprocessing_mean_per_rgb": (_set("preprocessing", "mean", [0.5, 0.5, 0.5]), "preprocessing: mean has 3"),
    "preprocessing_std_zero": (_set("preprocessing", "std", [0.0]), "preprocessing: a std is not above 0"),
    "anchor_means_missing": (_set("anchor_means", DELETE), "anchor_means is not a dict"),
    "anchor_means_without_data": (_set("anchor_means", "data", DELETE), "anchor_means is not a dict"),
    "anchor_means_a_string": (_set("anchor_means", "means", "10 * I"), "not 3 x 3 finite numbers"),
    "anchor_means_wrong_shape": (_set("anchor_means", "means", [[1.0, 0.0], [0.0, 1.0]]), "not 3 x 3"),
    "anchor_means_ragged": (_set("anchor_means", "means", [[1.0, 0, 0], [0, 1.0], [0, 0, 1.0]]), "not 3 x 3"),
    "anchor_means_nan": (_set("anchor_means", "means", [[0.0, 1, 1], [1, float("nan"), 1], [1, 1, 0]]), "finite"),
    "anchor_means_bool": (_set("anchor_means", "means", [[True, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), "finite"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_each_damage_is_named(case):
    change, fragment = DAMAGE[case]
    problem = calibration_problem(change(cac_calibration()))
    assert problem is not None and fragment in problem, (case, problem)
    assert "\n" not in problem


def test_disagreement_with_the_network_is_named():
    assert "method 'CAC', not ClosedSet" in calibration_problem(cac_calibration(), method="ClosedSet")
    assert "a network of 3 classes, not 4" in calibration_problem(cac_calibration(), "CAC", 4)
    # a closed-set calibration needs no anchor means, a CAC one does
    assert calibration_problem({**closed_set_calibration(), "method": "CAC", "thresholds": {"cac": 1.0},
                                "scorer": "cac"}).startswith("anchor_means is not a dict")


# ---------------------------------------------------------------- the file beside the checkpoint

def test_the_file_is_beside_the_checkpoint():
    assert calibration_path(os.path.join("w", "D_0_nCACclassifierAnchorLoss.pth")) == \
        os.path.join("w", "D_0_nCACclassifierAnchorLoss.calibration.json")


def write_raw(tmp_path, text):
    """A checkpoint path whose calibration file holds `text` (the checkpoint itself is not read)."""
    checkpoint = str(tmp_path / "net.pth")
    with open(calibration_path(checkpoint), "w", encoding="utf-8") as f:
        f.write(text)
    return checkpoint


def test_a_valid_file_of_these_bytes_is_read(tmp_path):
    checkpoint = write_raw(tmp_path, json.dumps(cac_calibration()))
    assert read_calibration(checkpoint, DIGEST, "CAC", 3) == (cac_calibration(), None)
    assert read_calibration(str(tmp_path / "other.pth"), DIGEST, "CAC", 3) == (None, None)  # none: not a fault


def test_a_file_of_another_checkpoint_is_stale_not_damaged(tmp_path):
    checkpoint = write_raw(tmp_path, json.dumps(cac_calibration()))
    assert read_calibration(checkpoint, hashlib.sha256(b"other weights").hexdigest(), "CAC", 3) == (None, None)


def _unreadable(tmp_path, case):
    if case == "folder in its place":
        checkpoint = str(tmp_path / "net.pth")
        os.makedirs(calibration_path(checkpoint))
        return checkpoint
    if case == "not UTF-8":
        checkpoint = write_raw(tmp_path, "")
        with open(calibration_path(checkpoint), "wb") as f:
            f.write(b'{"method": "\xff\xfe"}')
        return checkpoint
    text = {"truncated": json.dumps(cac_calibration())[:200], "empty": "",
            "a 5,000-digit number": '{"trial": ' + "9" * 5000 + "}",
            "nested 100,000 deep": "[" * 100_000 + "]" * 100_000}[case]
    return write_raw(tmp_path, text)


@pytest.mark.parametrize("case", ["truncated", "empty", "not UTF-8", "a 5,000-digit number", "nested 100,000 deep",
                                  "folder in its place"])
def test_an_unreadable_file_is_named(tmp_path, case):
    checkpoint = _unreadable(tmp_path, case)
    cal, problem = read_calibration(checkpoint, DIGEST, "CAC", 3)
    assert cal is None and problem.startswith(f"calibration {calibration_path(checkpoint)} cannot be read ("), problem
    assert "\n" not in problem and len(problem) < 300


# name: (the file's JSON text made from the valid calibration, a fragment the message must hold)
BAD_FILES = {
    "key_missing": (lambda cal: json.dumps({k: v for k, v in cal.items() if k != "checkpoint_sha256"}),
                    "checkpoint_sha256 is not a SHA-256"),
    "key_not_hex": (lambda cal: json.dumps({**cal, "checkpoint_sha256": "z" * 64}), "checkpoint_sha256"),
    "key_a_number": (lambda cal: json.dumps({**cal, "checkpoint_sha256": 5}), "checkpoint_sha256"),
    "a_list": (lambda cal: json.dumps([cal]), "checkpoint_sha256"),
    "threshold_NaN": (lambda cal: json.dumps(cal).replace('"cac": 0.5', '"cac": NaN'), "not finite numbers"),
    "threshold_Infinity": (lambda cal: json.dumps(cal).replace("1.25", "Infinity"), "not finite numbers"),
    "means_wrong_shape": (lambda cal: json.dumps(_set("anchor_means", "means", [[1.0]])(cal)), "not 3 x 3"),
    "means_too_large": (lambda cal: json.dumps(cal).replace("10.0", "1e999", 1), "finite numbers"),
    "closed_set_scorers": (lambda cal: json.dumps({**cal, "thresholds": {"max_softmax": 0.5}}), "scorers of cac"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_an_invalid_file_is_named(tmp_path, case):
    text, fragment = BAD_FILES[case]
    checkpoint = write_raw(tmp_path, text(cac_calibration()))
    cal, problem = read_calibration(checkpoint, DIGEST, "CAC", 3)
    assert cal is None and problem.startswith(f"calibration {calibration_path(checkpoint)} is invalid ("), problem
    assert fragment in problem and "\n" not in problem


def test_a_file_for_another_network_is_invalid(tmp_path):
    checkpoint = write_raw(tmp_path, json.dumps(cac_calibration()))
    assert "method 'CAC', not ClosedSet" in read_calibration(checkpoint, DIGEST, "ClosedSet", 3)[1]
    assert "a network of 3 classes, not 6" in read_calibration(checkpoint, DIGEST, "CAC", 6)[1]


def test_written_file_reads_back_with_float64_values_bit_for_bit(tmp_path):
    checkpoint = str(tmp_path / "net.pth")
    cal = cac_calibration()
    means = np.random.default_rng(0).standard_normal((3, 3)) * 1e3  # full 53-bit mantissas
    cal["anchor_means"]["means"] = means.tolist()
    cal["thresholds"] = {"cac": float(np.float32(0.1)), "min_distance": 1 / 3}
    assert write_calibration(checkpoint, cal) == calibration_path(checkpoint)
    assert os.listdir(tmp_path) == ["net.calibration.json"]  # nothing else: no temporary left, no checkpoint
    got, problem = read_calibration(checkpoint, DIGEST, "CAC", 3)
    assert problem is None
    assert np.array_equal(np.array(got["anchor_means"]["means"]), means)
    assert got["thresholds"]["cac"] == float(np.float32(0.1)) and got["thresholds"]["min_distance"] == 1 / 3


def test_a_failed_write_is_one_warning_and_leaves_nothing(tmp_path, capsys):
    checkpoint = str(tmp_path / "net.pth")
    os.makedirs(calibration_path(checkpoint))  # a folder in the way: the rename fails
    assert write_calibration(checkpoint, cac_calibration()) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: could not write the calibration "
                                               f"{calibration_path(checkpoint)} ("), err
    assert "is a folder where a file belongs); move that folder away" in err[0]
    assert os.listdir(tmp_path) == ["net.calibration.json"] and os.listdir(calibration_path(checkpoint)) == []


# ---------------------------------------------------------------- records, anchor means, earlier versions

def fake_data(**change):
    """The parts of a trial's data (datasets.trial.OpenSetData) a calibration reads."""
    data = {"name": "Digits", "known": [0, 1, 2], "train_labels": np.array([0, 1, 2, 0, 1, 2, 0]),
            "train_idx": np.array([0, 2, 4, 5]), "cfg": {"im_size": 16, "im_channels": 1, "anchor_flip": False},
            "mean": [0.5], "std": [0.25], "source_fingerprint": "f00", "trial": 0,
            "class_names": ["zero", "one", "two"]}
    data.update(change)
    return SimpleNamespace(**data)


NETWORK = {"num_classes": 3, "num_channels": 1, "im_size": 16, "dropout": 0.3, "backbone": "cnn", "pretrained": None}


def test_anchor_data_key_says_what_made_the_means():
    key = anchor_data_key(fake_data())
    assert key["train_idx"] == hashlib.sha1(np.array([0, 2, 4, 5], dtype=np.int64).tobytes()).hexdigest()
    assert key["train_labels"] == hashlib.sha1(np.array([0, 2, 1, 2], dtype=np.int64).tobytes()).hexdigest()
    assert (key["dataset"], key["known"], key["im_size"], key["anchor_flip"]) == ("Digits", [0, 1, 2], 16, False)
    assert json.loads(json.dumps(key)) == key  # what the file keeps is what is compared
    others = [fake_data(train_idx=np.array([0, 2, 4, 6])), fake_data(train_labels=np.array([0, 1, 1, 0, 1, 2, 0])),
              fake_data(std=[0.3]), fake_data(cfg={"im_size": 16, "im_channels": 1, "anchor_flip": True}),
              fake_data(known=[0, 1, 3]), fake_data(source_fingerprint="f01"), fake_data(name="MNIST")]
    assert all(anchor_data_key(other) != key for other in others)
    # the label of an image outside the training split plays no part
    assert anchor_data_key(fake_data(train_labels=np.array([0, 1, 2, 1, 1, 2, 0]))) == key


def test_a_record_is_valid_and_holds_the_means_as_float64():
    anchors = np.eye(3, dtype=np.float32) * 7.3
    record = calibration_record(DIGEST, "CAC", fake_data(), NETWORK, {"cac": np.float32(0.5), "min_distance": 2},
                                anchors=anchors)
    assert calibration_problem(record, "CAC", 3) is None and record["checkpoint_sha256"] == DIGEST
    assert record["thresholds"] == {"cac": 0.5, "min_distance": 2.0}
    assert all(type(t) is float for t in record["thresholds"].values())
    assert record["anchor_means"]["means"][1] == [0.0, float(np.float32(7.3)), 0.0]
    assert record["anchor_means"]["data"] == anchor_data_key(fake_data())
    assert record["class_names"] == ["zero", "one", "two"] and record["preprocessing"]["std"] == [0.25]
    closed = calibration_record(DIGEST, "ClosedSet", fake_data(), NETWORK, {"max_softmax": -0.5})
    assert "anchor_means" not in closed and calibration_problem(closed, "ClosedSet", 3) is None


def test_cached_anchor_means_only_for_the_same_data():
    record = calibration_record(DIGEST, "CAC", fake_data(), NETWORK, {"cac": 1.0},
                                anchors=np.arange(9.0).reshape(3, 3) / 7)
    got = cached_anchor_means(json.loads(json.dumps(record)), fake_data())
    assert got.dtype == torch.float64 and torch.equal(got, torch.arange(9.0, dtype=torch.float64).reshape(3, 3) / 7)
    assert cached_anchor_means(record, fake_data(std=[0.3])) is None  # other data
    assert cached_anchor_means(record, fake_data(cfg={**fake_data().cfg, "anchor_flip": True})) is None
    assert cached_anchor_means(None, fake_data()) is None
    assert cached_anchor_means(closed_set_calibration(), fake_data()) is None


def earlier_version(cal):
    """The form an earlier version stored inside the checkpoint: anchor means as a tensor, with a key."""
    old = copy.deepcopy(cal)
    old.pop("checkpoint_sha256")
    old["anchor_means"] = {"means": torch.tensor(cal["anchor_means"]["means"], dtype=torch.float64),
                           "key": {"weights": "abc", "dataset": "Digits"}}
    return old


def test_a_calibration_inside_a_checkpoint_of_an_earlier_version_is_read():
    old = earlier_version(cac_calibration())
    got = embedded_calibration({"net": {}, "calibration": old}, "CAC", 3)
    assert got["anchor_means"]["means"] == cac_calibration()["anchor_means"]["means"]
    assert got["thresholds"] == old["thresholds"] and got["class_names"] == old["class_names"]
    closed = closed_set_calibration()
    assert embedded_calibration({"net": {}, "calibration": closed}, "ClosedSet", 3) == closed
    assert embedded_calibration({"net": {}}, "CAC", 3) is None
    assert embedded_calibration({"net": {}, "calibration": old}, "CAC", 4) is None  # another network's
    old["anchor_means"]["means"][0, 0] = float("nan")
    assert embedded_calibration({"net": {}, "calibration": old}, "CAC", 3) is None
    assert embedded_calibration({"net": {}, "calibration": "calibrated"}, "CAC", 3) is None


def test_each_method_has_its_papers_scorers():
    assert calibration.SCORERS["CAC"].names == ("cac", "min_distance")
    assert calibration.SCORERS["ClosedSet"].names == ("max_softmax", "max_logit")
