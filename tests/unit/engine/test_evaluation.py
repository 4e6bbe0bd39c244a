"""engine/evaluation.py on its own: the network's outputs gathered in order, a checkpoint refused
for other data than it was trained on, and non-finite outputs refused before any metric (one
line naming the checkpoint and the images)."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from engine.evaluation import check_finite, gather_outputs


def test_gather_outputs_keeps_order_and_tuple():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(10)), batch_size=4)
    net = torch.nn.Flatten()
    out, labels = gather_outputs(net, loader, "cpu")
    assert torch.equal(out.flatten(), torch.arange(10.0)) and torch.equal(labels, torch.arange(10))


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
    with pytest.raises(UserError, match=r"trained with im_size 16 but the data here has 32: pass --im_size 16"):
        load_network(path, ckpt, SimpleNamespace(cfg={**cfg, "im_size": 32}, known=[2, 5, 7]), "ClosedSet", "cpu")
    with pytest.raises(UserError, match=r"trained on known classes \[2, 5, 7\] but the class split here has \[2, 5, 8\]"):
        load_network(path, ckpt, SimpleNamespace(cfg=cfg, known=[2, 5, 8]), "ClosedSet", "cpu")
