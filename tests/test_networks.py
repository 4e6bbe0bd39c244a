"""The paper's CNN (SPEC section 2), the WideResNet backbone, and the CAC distance layer."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from networks import closedSetClassifier, openSetClassifier
from networks.backbones import build_encoder


def _expected_keys(with_anchors):
    keys = []
    for i in range(1, 10):
        keys.append(f"encoder.conv{i}.weight")
        keys += [f"encoder.bn{i}.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    keys += ["classify.weight", "classify.bias"]
    return set(keys + (["anchors"] if with_anchors else []))


def test_state_dict_names_are_the_originals_once():
    assert set(openSetClassifier(6, 1, 32).state_dict()) == _expected_keys(True)
    assert set(closedSetClassifier(6, 3, 32).state_dict()) == _expected_keys(False)


def test_layer_shapes_follow_spec():
    sd = openSetClassifier(6, 3, 32).state_dict()
    channels = [64, 64, 128, 128, 128, 128, 128, 128, 128]
    inputs = [3] + channels[:-1]
    for i, (cin, cout) in enumerate(zip(inputs, channels), start=1):
        assert tuple(sd[f"encoder.conv{i}.weight"].shape) == (cout, cin, 3, 3)
    assert tuple(sd["classify.weight"].shape) == (6, 2048)
    assert tuple(openSetClassifier(20, 3, 64).state_dict()["classify.weight"].shape) == (20, 8192)
    assert sd["anchors"].dtype == torch.float64 and tuple(sd["anchors"].shape) == (6, 6)
    assert not any(p is openSetClassifier(6, 3, 32).anchors for p in openSetClassifier(6, 3, 32).parameters())


@pytest.mark.parametrize("im_size", [16, 24, 32, 48, 64])
def test_any_multiple_of_eight(im_size):
    net = openSetClassifier(5, 3, im_size).eval()
    logits, distances = net(torch.randn(2, 3, im_size, im_size))
    assert logits.shape == (2, 5) and distances.shape == (2, 5) and distances.dtype == torch.float64


@pytest.mark.parametrize("im_size", [30, 0, 33])
def test_other_sizes_are_a_clear_error(im_size):
    with pytest.raises(UserError, match="multiple of 8"):
        openSetClassifier(5, 3, im_size)


def test_distances_are_euclidean_to_anchors():
    net = openSetClassifier(4, 1, 16).eval()
    anchors = torch.randn(4, 4, dtype=torch.float64)
    net.set_anchors(anchors)
    logits, distances = net(torch.randn(3, 1, 16, 16))
    x = logits.detach().double().numpy()
    want = np.sqrt(((x[:, None, :] - anchors.numpy()[None]) ** 2).sum(-1))
    assert np.allclose(distances.detach().numpy(), want, atol=1e-12)


def test_anchors_are_not_trained_and_gradient_is_finite_at_zero_distance():
    net = openSetClassifier(3, 1, 16)
    assert "anchors" not in dict(net.named_parameters())
    net.set_anchors(torch.zeros(3, 3))
    net.classify.weight.data.zero_()
    net.classify.bias.data.zero_()  # logits == anchors: distance exactly 0
    _, d = net(torch.randn(2, 1, 16, 16))
    d.sum().backward()
    assert torch.isfinite(net.classify.weight.grad).all()


def test_init_weights_follow_the_original():
    torch.manual_seed(0)
    net = openSetClassifier(6, 3, 32, init_weights=True)
    w = net.classify.weight
    assert abs(w.std().item() - 0.01) < 0.002 and net.classify.bias.abs().sum() == 0
    conv = net.encoder.conv4.weight  # fan_out = 128 * 9: std = sqrt(2 / fan_out)
    assert abs(conv.std().item() - np.sqrt(2 / (128 * 9))) < 0.003
    assert torch.all(net.encoder.bn1.weight == 1) and torch.all(net.encoder.bn1.bias == 0)


def test_dropout_is_dropout2d_after_each_block():
    net = openSetClassifier(6, 1, 32, dropout=0.25)
    assert isinstance(net.encoder.dropout, torch.nn.Dropout2d) and net.encoder.dropout.p == 0.25


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
