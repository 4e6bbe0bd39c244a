"""The paper's released checkpoints reproduce the original code's outputs (reference/README.md)."""
import os

import numpy as np
import pytest
import torch

from networks.checkpoint import load_checkpoint

from networks.closedSetClassifier import closedSetClassifier

from networks.openSetClassifier import openSetClassifier
from utils import cac_scores

TAGS = ["MNIST_0_CACclassifierAnchorLoss", "MNIST_0_closedSetClassifier",
        "CIFAR10_0_CACclassifierAnchorLoss", "CIFAR10_0_closedSetClassifier"]


def _close(got, want, rtol=1e-4):
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


@pytest.mark.parametrize("tag", TAGS)
def test_reference_outputs(reference_dir, tag):
    ref = np.load(os.path.join(reference_dir, "conformance.npz"))
    if f"{tag}/input" not in ref.files:
        pytest.skip(f"{tag} not in conformance.npz")
    x = torch.from_numpy(ref[f"{tag}/input"])
    n = ref[f"{tag}/logits"].shape[1]
    cac = "CACclassifier" in tag
    net = (openSetClassifier if cac else closedSetClassifier)(n, x.shape[1], 32)
    load_checkpoint(os.path.join(reference_dir, "checkpoints", f"{tag}.pth"), net)
    net.eval()
    with torch.no_grad():
        out = net(x)
    logits = out[0] if cac else out
    _close(logits.numpy(), ref[f"{tag}/logits"])
    if cac:
        assert np.array_equal(net.anchors.numpy(), ref[f"{tag}/anchors"])
        _close(out[1].numpy(), ref[f"{tag}/distances"])
        _close(cac_scores(out[1]).numpy(), ref[f"{tag}/cac_scores"])


def test_every_released_checkpoint_loads(reference_dir):
    folder = os.path.join(reference_dir, "checkpoints")
    names = sorted(os.listdir(folder))
    assert names
    for name in names:
        n = 4 if name.startswith("CIFAR+") else 6
        channels = 1 if name.startswith("MNIST") else 3
        cls = openSetClassifier if "CACclassifier" in name else closedSetClassifier
        ckpt = load_checkpoint(os.path.join(folder, name), cls(n, channels, 32))
        assert {"acc", "epoch"} <= set(ckpt)
