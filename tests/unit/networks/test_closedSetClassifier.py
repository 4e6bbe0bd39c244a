"""networks/closedSetClassifier.py: the cross-entropy baseline returns logits only, no anchors."""
import torch

from networks.closedSetClassifier import closedSetClassifier


def test_logits_only_and_no_anchor_buffer():
    net = closedSetClassifier(7, 1, 32).eval()
    out = net(torch.randn(3, 1, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 7)
    assert "anchors" not in net.state_dict() and net.num_classes == 7
