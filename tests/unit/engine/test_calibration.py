"""engine.calibration: a stored calibration is checked part by part (each kind of damage is
named), the anchor means' cache key and the weights' digest change with what made them, and a
checkpoint is rewritten only when its calibration changes."""
import copy
import hashlib
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine import calibration
from engine.calibration import (_same, anchor_key, anchor_means_problem, cached_anchor_means, calibration_problem,
                                calibration_record, store_calibration, stored_calibration, weights_digest)
from networks.checkpoint import save_checkpoint


def cac_calibration():
    """A valid calibration of a 3-class CAC network on 16 x 16 grey images."""
    return {"method": "CAC", "dataset": "Digits", "trial": 0, "scorer": "cac",
            "thresholds": {"cac": 0.5, "min_distance": 1.25}, "accept_rate": 0.95,
            "class_names": ["zero", "one", "two"], "known_classes": [0, 1, 2],
            "preprocessing": {"im_size": 16, "im_channels": 1, "mean": [0.5], "std": [0.25]},
            "network": {"num_classes": 3, "num_channels": 1, "im_size": 16, "dropout": 0.3, "backbone": "cnn"},
            "anchor_means": {"means": 10 * torch.eye(3, dtype=torch.float64), "key": {"weights": "abc"}}}


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


DELETE = object()

# name: (change of the valid CAC calibration, a fragment the message must hold)
DAMAGE = {
    "not_a_dict": (lambda cal: [cal], "it is list, not a dict"),
    "unknown_method": (_set("method", "Other"), "method 'Other'"),
    "method_a_list": (_set("method", ["CAC"]), "method ['CAC']"),  # unhashable: once a TypeError
    "method_a_dict": (_set("method", {"CAC": 1}), "method {'CAC': 1}"),
    "thresholds_not_a_dict": (_set("thresholds", [0.5, 1.25]), "thresholds [0.5, 1.25]"),
    "thresholds_empty": (_set("thresholds", {}), "thresholds {}"),
    "threshold_nan": (_set("thresholds", "cac", float("nan")), "thresholds"),
    "threshold_bool": (_set("thresholds", "cac", True), "not finite numbers"),
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
    "preprocessing_two_channels": (_set("preprocessing", "im_channels", 2), "im_channels 2"),
    "preprocessing_mean_per_rgb": (_set("preprocessing", "mean", [0.5, 0.5, 0.5]), "preprocessing: mean has 3"),
    "preprocessing_std_zero": (_set("preprocessing", "std", [0.0]), "preprocessing: a std is not above 0"),
    "preprocessing_other_size": (_set("preprocessing", "im_size", 32),
                                 "preprocessing for 32 px x 1 channel(s), network for 16 px x 1"),
    "anchor_means_missing": (_set("anchor_means", DELETE), "anchor_means is NoneType, not a dict"),
    "anchor_means_a_list": (_set("anchor_means", "means", [[0.0] * 3] * 3), "anchor_means holds list"),
    "anchor_means_integers": (_set("anchor_means", "means", torch.eye(3, dtype=torch.int64)), "tensor of floats"),
    "anchor_means_wrong_shape": (_set("anchor_means", "means", torch.eye(2, dtype=torch.float64)),
                                 "anchor means of shape (2, 2), not 3 x 3"),
    "anchor_means_nan": (_set("anchor_means", "means", torch.tensor([[0.0, 1, 1], [1, float("nan"), 1], [1, 1, 0]])),
                         "NaN or inf"),
    "anchor_means_without_key": (_set("anchor_means", "key", DELETE), "without the key"),
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
    assert calibration_problem(closed_set_calibration(), "ClosedSet") is None
    assert calibration_problem({**closed_set_calibration(), "method": "CAC", "thresholds": {"cac": 1.0},
                                "scorer": "cac"}) == "anchor_means is NoneType, not a dict"


def test_anchor_means_problem_without_a_class_count():
    key = {"weights": "w"}
    assert anchor_means_problem({"means": torch.zeros(4, 4), "key": key}, None) is None
    assert "not N x N" in anchor_means_problem({"means": torch.zeros(2, 3), "key": key}, None)
    assert "not N x N" in anchor_means_problem({"means": torch.zeros(2, 2, 2), "key": key}, None)
    assert "inf" in anchor_means_problem({"means": torch.tensor([[float("inf")]]), "key": key}, None)
    assert anchor_means_problem(None, 3) == "anchor_means is NoneType, not a dict"


def test_cached_anchor_means_only_for_the_same_key(capsys):
    cal = cac_calibration()
    key = cal["anchor_means"]["key"]
    got = cached_anchor_means(cal, {"weights": "abc"}, 3, "c.pth")
    assert got.dtype == torch.float64 and torch.equal(got, 10 * torch.eye(3, dtype=torch.float64))
    assert cached_anchor_means(cal, {"weights": "other"}, 3, "c.pth") is None  # other weights: not a fault
    assert cached_anchor_means(cal, {"weights": "abc", "dataset": "x"}, 3, "c.pth") is None
    assert cached_anchor_means(None, key, 3, "c.pth") is None
    assert cached_anchor_means({}, key, 3, "c.pth") is None
    assert capsys.readouterr().err == ""
    assert cached_anchor_means(cal, key, 4, "c.pth") is None  # made for another class count: warned
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ignoring the anchor means stored in c.pth"), err


def test_stored_calibration_ignores_an_invalid_one_with_one_warning(capsys):
    assert stored_calibration({"net": {}}, "c.pth", "CAC", 3) is None
    good = cac_calibration()
    assert stored_calibration({"net": {}, "calibration": good}, "c.pth", "CAC", 3) is good
    assert capsys.readouterr().err == ""
    assert stored_calibration({"net": {}, "calibration": good}, "c.pth", "ClosedSet", 3) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ignoring the calibration stored in c.pth (method 'CAC'")


@pytest.mark.parametrize("a,b,same", [
    ({"x": [1, 2.0, "s"]}, {"x": [1, 2.0, "s"]}, True),
    ({"t": torch.tensor([1.0, 2.0])}, {"t": torch.tensor([1.0, 2.0])}, True),
    (1, 1.0, False),  # equal by ==, not by type
    (True, 1, False),
    ([1, 2], (1, 2), False),
    ([1, 2], [1, 2, 3], False),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ({"a": 1}, {"b": 1}, False),
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64), False),
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]), False),
    (torch.zeros(2), torch.zeros(3), False),  # other shapes: no error
    (torch.zeros(2), [0.0, 0.0], False),
    ("abc", torch.zeros(1), False),
    ({"a": {"b": [torch.ones(2)]}}, {"a": {"b": [torch.ones(2)]}}, True),
    (None, None, True),
    (None, {}, False),
])
def test_same_compares_type_structure_and_value(a, b, same):
    assert _same(a, b) is same
    assert _same(b, a) is same


def test_weights_digest_changes_with_any_weight_and_only_then():
    state = {"conv.weight": torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)),
             "bias": torch.arange(4, dtype=torch.float32), "anchors": torch.eye(4, dtype=torch.float64)}
    digest = weights_digest(state)
    assert len(digest) == 40 and int(digest, 16) >= 0  # sha1 hex
    copied = {k: state[k].clone() for k in reversed(list(state))}  # other objects, other key order
    assert weights_digest(copied) == digest
    changed = {k: v.clone() for k, v in state.items()}
    changed["conv.weight"][3, 2, 1, 0] = torch.nextafter(changed["conv.weight"][3, 2, 1, 0], torch.tensor(1e9))
    assert weights_digest(changed) != digest  # one float, one step up
    renamed = {("b" if k == "bias" else k): v for k, v in state.items()}
    assert weights_digest(renamed) != digest
    assert weights_digest({**state, "bias": state["bias"].double()}) != digest  # same values, other dtype
    assert weights_digest({**state, "bias": state["bias"].reshape(2, 2)}) != digest  # same bytes, other shape
    half = {"w": torch.ones(3, dtype=torch.bfloat16)}
    assert weights_digest(half) != weights_digest({"w": torch.tensor([1.0, 1.0, 2.0], dtype=torch.bfloat16)})
    assert weights_digest(state) == digest  # reading the tensors changed nothing


def fake_data(**change):
    """The parts of a trial's data (datasets.trial.OpenSetData) the anchor key reads."""
    data = {"name": "Digits", "known": [0, 1, 2], "train_labels": np.array([0, 1, 2, 0, 1, 2, 0]),
            "train_idx": np.array([0, 2, 4, 5]), "cfg": {"im_size": 16, "im_channels": 1, "anchor_flip": False},
            "mean": [0.5], "std": [0.25], "source_fingerprint": {"sha1": "f00"}, "trial": 0,
            "class_names": ["zero", "one", "two"]}
    data.update(change)
    return SimpleNamespace(**data)


def test_anchor_key_says_what_made_the_means():
    ckpt = {"net": {"w": torch.ones(2)}}
    key = anchor_key(fake_data(), ckpt)
    assert key["train_idx"] == hashlib.sha1(np.array([0, 2, 4, 5], dtype=np.int64).tobytes()).hexdigest()
    assert (key["dataset"], key["known"], key["im_size"], key["anchor_flip"]) == ("Digits", [0, 1, 2], 16, False)
    assert key["weights"] == weights_digest(ckpt["net"])
    assert _same(anchor_key(fake_data(), {"net": {"w": torch.ones(2)}}), key)  # the same inputs: the same key
    others = [fake_data(train_idx=np.array([0, 2, 4, 6])), fake_data(train_labels=np.array([0, 1, 1, 0, 1, 2, 0])),
              fake_data(std=[0.3]), fake_data(cfg={"im_size": 16, "im_channels": 1, "anchor_flip": True}),
              fake_data(known=[0, 1, 3]), fake_data(source_fingerprint={"sha1": "f01"})]
    for other in others:
        assert not _same(anchor_key(other, ckpt), key)
    assert not _same(anchor_key(fake_data(), {"net": {"w": torch.zeros(2)}}), key)
    # the label of an image outside the training split plays no part
    assert _same(anchor_key(fake_data(train_labels=np.array([0, 1, 2, 1, 1, 2, 0])), ckpt), key)


def test_a_record_of_calibration_record_is_valid():
    data = fake_data()
    network = {"num_classes": 3, "num_channels": 1, "im_size": 16, "dropout": 0.3, "backbone": "cnn"}
    anchors = np.eye(3) * 7
    record = calibration_record("CAC", data, network, "cac", {"cac": np.float32(0.5), "min_distance": 2},
                                0.95, anchors=anchors, key={"weights": "abc"})
    assert calibration_problem(record, "CAC", 3) is None
    assert record["thresholds"] == {"cac": 0.5, "min_distance": 2.0}
    assert all(type(t) is float for t in record["thresholds"].values())
    assert record["anchor_means"]["means"].dtype == torch.float64
    assert torch.equal(record["anchor_means"]["means"], 7 * torch.eye(3, dtype=torch.float64))
    closed = calibration_record("ClosedSet", data, network, "max_softmax", {"max_softmax": -0.5}, 0.95)
    assert "anchor_means" not in closed and calibration_problem(closed, "ClosedSet", 3) is None


@pytest.fixture
def checkpoint(tmp_path):
    path = str(tmp_path / "net.pth")
    save_checkpoint({"net": {"w": torch.arange(6.0)}, "acc": 88.5, "epoch": 4}, path)
    return path


def test_store_calibration_writes_the_record_beside_the_weights(checkpoint):
    record = cac_calibration()
    assert store_calibration(checkpoint, record) is True
    ckpt = torch.load(checkpoint, weights_only=True)
    assert _same(ckpt["calibration"], record)
    assert torch.equal(ckpt["net"]["w"], torch.arange(6.0)) and (ckpt["acc"], ckpt["epoch"]) == (88.5, 4)


def test_store_calibration_leaves_the_file_alone_when_the_record_is_the_same(checkpoint):
    record = cac_calibration()
    store_calibration(checkpoint, record)
    os.utime(checkpoint, ns=(1_000_000_000, 1_000_000_000))  # a known mtime, long ago
    with open(checkpoint, "rb") as f:
        before = f.read()
    current = torch.load(checkpoint, weights_only=True)["calibration"]
    assert store_calibration(checkpoint, copy.deepcopy(record), current=current) is False
    assert os.stat(checkpoint).st_mtime_ns == 1_000_000_000
    with open(checkpoint, "rb") as f:
        assert f.read() == before


def test_store_calibration_rewrites_the_file_when_the_record_changes(checkpoint):
    record = cac_calibration()
    store_calibration(checkpoint, record)
    current = torch.load(checkpoint, weights_only=True)["calibration"]
    changed = copy.deepcopy(record)
    changed["thresholds"]["cac"] = 0.75
    assert store_calibration(checkpoint, changed, current=current) is True
    assert torch.load(checkpoint, weights_only=True)["calibration"]["thresholds"]["cac"] == 0.75
    changed = copy.deepcopy(changed)
    changed["anchor_means"]["means"][0, 1] = 1e-9  # a change inside a tensor counts too
    assert store_calibration(checkpoint, changed, current=torch.load(checkpoint, weights_only=True)["calibration"])
    assert torch.load(checkpoint, weights_only=True)["calibration"]["anchor_means"]["means"][0, 1] == 1e-9


def test_a_failed_store_is_one_warning(tmp_path, capsys):
    missing = str(tmp_path / "gone.pth")
    assert store_calibration(missing, cac_calibration()) is False
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: could not store the calibration in {missing}"), err
    assert "checkpoint not found" in err[0] and not os.path.exists(missing)


def test_each_method_has_its_papers_scorers():
    assert calibration.SCORERS["CAC"].names == ("cac", "min_distance")
    assert calibration.SCORERS["ClosedSet"].names == ("max_softmax", "max_logit")
