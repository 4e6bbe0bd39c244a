"""networks/closedSetClassifier.py: the encoder + linear head (the cross-entropy baseline returns
logits only, no anchors), and the original's alias keys added for saving (the same tensors, so
files do not grow)."""
import io

import torch

from networks.closedSetClassifier import closedSetClassifier
from networks.cnn import CNNEncoder
from networks.openSetClassifier import openSetClassifier


def test_logits_only_and_no_anchor_buffer():
    net = closedSetClassifier(7, 1, 32).eval()
    out = net(torch.randn(3, 1, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 7)
    assert "anchors" not in net.state_dict() and net.num_classes == 7


def test_aliases_hold_the_very_same_tensors_and_cost_no_bytes():
    net = closedSetClassifier(4, 1, 16, init_weights=True)
    plain, aliased = net.state_dict(), net.state_dict_with_aliases()
    extra = sorted(set(aliased) - set(plain))
    # the original's Sequential names: encoder<block>.<position> for conv (0, 3, 6) and bn (1, 4, 7)
    assert "encoder.encoder1.0.weight" in extra and "encoder.encoder3.7.running_var" in extra
    assert len(extra) == 9 + 9 * 5  # 9 conv weights, 9 BatchNorms of 5 tensors each
    for alias, name in CNNEncoder.alias_names().items():
        assert aliased[f"encoder.{alias}.weight"].data_ptr() == plain[f"encoder.{name}.weight"].data_ptr()
    sizes = []
    for state in (plain, aliased):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        sizes.append(len(buffer.getvalue()))
    assert sizes[1] - sizes[0] < 8000  # only the extra names, no second copy of ~0.2 MB of weights
    assert sum(t.numel() * t.element_size() for t in plain.values()) > 100_000


def test_the_head_is_a_linear_layer_to_one_logit_per_known_class():
    net = openSetClassifier(5, 3, 24).eval()
    assert net.classify.in_features == net.encoder.out_features == 128 * 3 * 3
    x = torch.randn(2, 3, 24, 24)
    logits, _ = net(x)
    expected = net.encoder(x) @ net.classify.weight.T + net.classify.bias
    assert torch.allclose(logits, expected, atol=1e-6)
