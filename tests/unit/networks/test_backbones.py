"""Backbone names to encoders (the WideResNet, bad names) and the from-scratch weight init."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from networks.closedSetClassifier import closedSetClassifier
from networks.openSetClassifier import openSetClassifier
from networks.backbones import build_encoder


def test_init_weights_follow_the_original():
    torch.manual_seed(0)
    net = openSetClassifier(6, 3, 32, init_weights=True)
    w = net.classify.weight
    assert abs(w.std().item() - 0.01) < 0.002 and net.classify.bias.abs().sum() == 0
    conv = net.encoder.conv4.weight  # fan_out = 128 * 9: std = sqrt(2 / fan_out)
    assert abs(conv.std().item() - np.sqrt(2 / (128 * 9))) < 0.003
    assert torch.all(net.encoder.bn1.weight == 1) and torch.all(net.encoder.bn1.bias == 0)


@pytest.mark.parametrize("backbone,features", [("wrn-10-1", 64), ("wrn-16-4", 256)])
def test_wideresnet_backbone(backbone, features):
    net = openSetClassifier(6, 3, 32, backbone=backbone).eval()
    assert net.encoder.out_features == features and net.backbone == backbone
    logits, distances = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 6)
    out = closedSetClassifier(6, 1, 64, backbone=backbone).eval()(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 6)


@pytest.mark.parametrize("bad", ["wrn-11-2", "resnet", "wrn-16-0"])
def test_bad_backbone_names(bad):
    with pytest.raises(UserError):
        build_encoder(bad, 3, 32, 0.3)
