"""The paper's CNN encoder (SPEC section 2): layer names and shapes, image sizes, dropout."""
import pytest
import torch

from core.errors import UserError
from networks.closedSetClassifier import closedSetClassifier
from networks.openSetClassifier import openSetClassifier


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


def test_dropout_is_dropout2d_after_each_block():
    net = openSetClassifier(6, 1, 32, dropout=0.25)
    assert isinstance(net.encoder.dropout, torch.nn.Dropout2d) and net.encoder.dropout.p == 0.25
