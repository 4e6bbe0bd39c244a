"""networks/resnet.py: torchvision's ResNets under the repo's heads; grey input, the small-input stem."""
import pytest
import torch
import torch.nn as nn

from networks.build import build_network
from networks.config import NetworkConfig
from networks.resnet import SMALL_STEM_BELOW, ResNetEncoder


def test_resnet18_takes_the_cac_head_and_small_grey_images():
    torch.manual_seed(0)
    net = build_network(NetworkConfig(6, 1, 32, backbone="resnet18"), "CAC", init_weights=True).eval()
    assert net.classify.in_features == 512 and net.backbone == "resnet18"
    assert not hasattr(net.encoder.resnet, "fc")  # replaced by the repo's head, not kept unused
    logits, distances = net(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 6) and distances.shape == (2, 6) and distances.dtype == torch.float64
    out = build_network(NetworkConfig(4, 3, 16, backbone="resnet18"), "ClosedSet").eval()(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4)


def test_grey_images_are_the_same_image_in_three_channels():
    torch.manual_seed(0)
    grey, rgb = ResNetEncoder("resnet18", 1, 16).eval(), ResNetEncoder("resnet18", 3, 16).eval()
    rgb.load_state_dict(grey.state_dict())
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(grey(x), rgb(torch.cat([x, x, x], 1)))
    assert grey.resnet.conv1.weight.shape == (64, 3, 7, 7)  # torchvision's shape: ImageNet files load as they are


@pytest.mark.parametrize("size, small", [(16, True), (SMALL_STEM_BELOW - 8, True), (SMALL_STEM_BELOW, False)])
def test_small_images_keep_their_resolution_through_the_stem(size, small):
    encoder = ResNetEncoder("resnet18", 3, size).eval()
    r = encoder.resnet
    assert (r.conv1.stride == (1, 1)) == small and isinstance(r.maxpool, nn.Identity) == small
    features = {}

    def keep_side(module, inputs, output):
        features["layer4"] = output.shape[-1]

    r.layer4.register_forward_hook(keep_side)
    encoder(torch.randn(1, 3, size, size))
    assert features["layer4"] == (size // 8 if small else size // 32)  # the ImageNet stem: 32x in all


def test_resnet50_builds_and_runs_a_forward_pass():
    net = build_network(NetworkConfig(6, 3, 16, backbone="resnet50"), "CAC", init_weights=True).eval()
    assert net.classify.in_features == 2048
    with torch.no_grad():
        logits, _ = net(torch.randn(1, 3, 16, 16))
    assert logits.shape == (1, 6) and torch.isfinite(logits).all()
