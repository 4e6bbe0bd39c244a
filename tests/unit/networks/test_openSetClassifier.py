"""The CAC head: Euclidean distances to fixed, untrained anchors."""
import numpy as np
import torch

from networks.openSetClassifier import openSetClassifier


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
