"""engine/evaluation.py on its own: the network's outputs gathered in order, a checkpoint refused
for other data than it was trained on, and non-finite outputs refused before any metric (one
line naming the checkpoint and the images); the trials an evaluation evaluates (as asked with
--num_trials; else those of the original's window with a checkpoint), the line when none is
trained, and the results file's trial label."""
import argparse
import os

import numpy as np
import pytest
import torch

from core.errors import UserError
from engine.evaluation import check_finite, chosen_trials, gather_outputs, trained_trials, trials_label


def test_gather_outputs_keeps_order_and_tuple():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(10)), batch_size=4)
    net = torch.nn.Flatten()
    out, labels = gather_outputs(net, loader, "cpu")
    assert torch.equal(out.flatten(), torch.arange(10.0)) and torch.equal(labels, torch.arange(10))


def test_gather_outputs_copies_to_the_host_once_per_part(monkeypatch):
    # a wait for the device per batch is what a GPU's evaluation loses time on: outputs and labels
    # are copied once each, whatever the number of batches, and equal the per-batch copies
    def net(x):
        return x.sum((1, 2, 3)).unsqueeze(1) * torch.ones(1, 3), x.mean((1, 2, 3)).double().unsqueeze(1)

    batches = [(torch.randn(4, 1, 2, 2), torch.arange(4) + i) for i in range(6)]
    expected = [torch.cat([net(x)[k] for x, _ in batches]) for k in (0, 1)]
    copies, real = [], torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t, *a, **k: copies.append(t.shape) or real(t, *a, **k))
    net.eval = lambda: None
    (logits, distances), labels = gather_outputs(net, batches, "cpu")
    assert len(copies) == 3, copies  # logits, distances, labels
    assert torch.equal(logits, expected[0]) and torch.equal(distances, expected[1])
    assert torch.equal(labels, torch.cat([t for _, t in batches]))


def test_non_finite_scores_are_one_line_naming_the_images():
    logits = np.zeros((2, 2))
    check_finite("c.pth", 3, {"known test logits": logits, "cac scores (unknown images)": np.array([0.3, 0.4])})
    with pytest.raises(UserError, match=r"^checkpoint c\.pth gives non-finite cac scores \(unknown images\) for 1 "
                                        r"of 2 images \(NaN or inf\) on trial 3: its weights overflow"):
        check_finite("c.pth", 3, {"known test logits": logits, "cac scores (unknown images)": np.array([0.3, np.nan])})
    logits[1, 0] = np.inf  # a row of logits with one non-finite value is one image
    with pytest.raises(UserError, match=r"non-finite known test logits for 1 of 2 images"):
        check_finite("c.pth", 3, {"known test logits": logits})


def test_load_network_refuses_other_data_than_training_had(tmp_path):
    from types import SimpleNamespace

    from engine.evaluation import load_network
    from networks.checkpoint import make_checkpoint, read_checkpoint, save_checkpoint
    from networks.config import NetworkConfig
    from networks.build import build_network

    config = NetworkConfig(3, 1, 16)
    path = str(tmp_path / "c.pth")
    save_checkpoint(make_checkpoint(build_network(config, "ClosedSet"), 1.0, 0, config, "ClosedSet", "Digits", 0,
                                    [2, 5, 7], {}, None), path)
    ckpt = read_checkpoint(path)
    cfg = {"num_known_classes": 3, "im_channels": 1, "im_size": 16, "dropout": 0.3}
    net, got = load_network(path, ckpt, SimpleNamespace(cfg=cfg, known=[7, 2, 5]), "ClosedSet", "cpu")
    assert got == config and not net.training
    with pytest.raises(UserError, match=r"classify.weight is \(3, 512\) in the file but \(3, 2048\) here \(512 "
                                        r"features in the file, 2048 here: another image size\)"):
        load_network(path, ckpt, SimpleNamespace(cfg={**cfg, "im_size": 32}, known=[2, 5, 7]), "ClosedSet", "cpu")
    with pytest.raises(UserError, match=r"trained on known classes \[2, 5, 7\] but the class split here has \[2, 5, 8\]"):
        load_network(path, ckpt, SimpleNamespace(cfg=cfg, known=[2, 5, 8]), "ClosedSet", "cpu")


SUFFIX = "CACclassifierAnchorLoss"


def args(**kw):
    return argparse.Namespace(**{"dataset": "Digits", "name": "s", "num_trials": None, "start_trial": 0,
                                 "data_root": "datasets/data", "split_file": None, "im_size": None,
                                 "im_channels": None, **kw})


def trained(tmp_path, monkeypatch, names):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "networks" / "weights" / "Digits"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_trained_trials_match_the_exact_name_and_suffix(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, ["Digits_0_sCACclassifierAnchorLoss.pth", "Digits_2_sCACclassifierAnchorLoss.pth",
                                    "Digits_1_s2CACclassifierAnchorLoss.pth", "Digits_3_sCACclassifierCACLoss.pth",
                                    "Digits_x_sCACclassifierAnchorLoss.pth", "Digits_12_sCACclassifierAnchorLoss.pth"])
    os.mkdir(tmp_path / "networks" / "weights" / "Digits" / "Digits_4_sCACclassifierAnchorLoss.pth")  # a folder
    assert trained_trials("Digits", "s", SUFFIX) == [0, 2, 12]
    assert trained_trials("MNIST", "s", SUFFIX) == []


def test_num_trials_given_is_taken_as_asked(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, [])
    assert chosen_trials(args(num_trials=5), "CAC")[0] == [0, 1, 2, 3, 4]
    assert chosen_trials(args(num_trials=2, start_trial=5), "CAC")[0] == [5, 6]
    with pytest.raises(UserError, match="--num_trials 0: evaluate at least one trial"):
        chosen_trials(args(num_trials=0), "CAC")


def test_without_num_trials_the_trained_trials_of_the_window(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, [f"Digits_{t}_sCACclassifierAnchorLoss.pth" for t in (0, 1, 2, 3, 4, 5, 9)])
    assert chosen_trials(args(), "CAC")[0] == [0, 1, 2, 3, 4]  # the original's 5
    assert chosen_trials(args(start_trial=5), "CAC")[0] == [5, 9]  # the paper's splits 5-9
    assert chosen_trials(args(start_trial=3), "CAC")[0] == [3, 4, 5]


def test_none_trained_is_one_line_with_a_runnable_command(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, ["Digits_7_sCACclassifierAnchorLoss.pth"])
    with pytest.raises(UserError) as e:
        chosen_trials(args(), "CAC")
    assert str(e.value).endswith("trained trials: [7]: evaluate them with "
                                 "`python eval_cacOpenset.py -dataset Digits --start_trial 7 --name s`")
    folder = args(dataset="ImageFolder", name="", data_root="../my pets", split_file="s.json", im_size=16)
    with pytest.raises(UserError) as e:
        chosen_trials(folder, "CAC")
    assert "train one with `python train_cacOpenset.py --dataset ImageFolder --trial 0 --name '' --data_root " \
           "'../my pets' --split_file s.json --im_size 16`" in str(e.value)


def test_trials_label():
    assert trials_label([0]) == "0-0" and trials_label([0, 1, 2, 3, 4]) == "0-4"
    assert trials_label([0, 2, 3]) == "0_2_3"


@pytest.fixture(scope="module")
def digits_and_net(tmp_path_factory):
    """Digits trial 0 (a private cache) and a fresh seeded CAC network with anchors 10 e_i."""
    from datasets.trial import OpenSetData
    from networks.build import build_network
    from networks.config import NetworkConfig

    data = OpenSetData("Digits", 0, cache_dir=str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    net = build_network(NetworkConfig.for_data(data.cfg), "CAC", init_weights=True).eval()
    net.set_anchors(10 * torch.eye(6, dtype=torch.float64))
    return data, net


def cac_scores_by_hand(net, dataset):
    """The paper's unknown score of each image, written out: d_i = ||z - c_i||, s = d (1 - softmin(d)), min_i s."""
    with torch.no_grad():
        logits = net(torch.stack([dataset[i][0] for i in range(len(dataset))]))[0].double()
    d = torch.sqrt(((logits[:, None, :] - net.anchors[None]) ** 2).sum(2))
    return (d * (1 - torch.exp(-d) / torch.exp(-d).sum(1, keepdim=True))).min(1).values.numpy()


def loader(dataset):
    from datasets.pipeline import build_loader

    return build_loader(dataset, 64, False, pipeline="torchvision", workers=0)


def test_the_threshold_accepts_95_percent_of_the_validation_images_not_of_the_test_images(digits_and_net):
    from engine.evaluation import evaluate_network
    from scorers import CACScorers

    data, net = digits_and_net
    result = evaluate_network(net, data, loader, torch.device("cpu"), CACScorers(), "c.pth", 0.0)

    def smallest_accepting_95(scores):
        return np.sort(scores)[int(np.ceil(0.95 * len(scores))) - 1]

    on_val = smallest_accepting_95(cac_scores_by_hand(net, data.val_dataset()))
    on_test = smallest_accepting_95(cac_scores_by_hand(net, data.known_test_dataset()))
    assert abs(on_val - on_test) > 1e-6  # the two choices differ here, so the test tells them apart
    assert result.metrics["cac"]["threshold"] == pytest.approx(on_val, rel=1e-9)


@pytest.mark.parametrize("flip", [False, True])
def test_the_anchor_pass_adds_mirrored_images_exactly_when_the_data_set_says_so(digits_and_net, flip):
    """The evaluation's anchors: per class, the mean logits of the correctly classified anchor images
    (of all its images where none is: a barely trained network), plus their mirrored copies when the
    data set's config has anchor_flip (every data set but the digits)."""
    from engine.evaluation import TrialRun
    from scorers import CACScorers

    data, net = digits_and_net
    data.cfg["anchor_flip"] = flip
    run = TrialRun.__new__(TrialRun)
    run.args, run.data, run.net, run.scorers = argparse.Namespace(pipeline="torchvision", seed=0, workers=0), data, \
        net, CACScorers()
    run.device, run.calibration, run.path = torch.device("cpu"), None, "c.pth"
    anchors = net.anchors.clone()
    try:
        run.place_anchors()
        placed = torch.as_tensor(run.anchors)
    finally:
        net.set_anchors(anchors)
        data.cfg["anchor_flip"] = False
    images = torch.stack([data.anchor_dataset()[i][0] for i in range(len(data.anchor_dataset()))])
    labels = torch.as_tensor(data.anchor_dataset().labels)

    def means(views):
        with torch.no_grad():
            logits = torch.cat([net(v)[0].double() for v in views])
        both = labels.repeat(len(views))
        right = logits.argmax(1) == both
        return torch.stack([logits[(right if (right & (both == c)).any() else True) & (both == c)].mean(0)
                            for c in range(6)])

    plain, mirrored = means([images]), means([images, images.flip(3)])
    assert not torch.allclose(plain, mirrored, atol=1e-4)  # the mirrored copies change the means here
    torch.testing.assert_close(placed, mirrored if flip else plain, rtol=1e-9, atol=1e-9)
