"""networks/wideresnet.py: depth 6n+4, width k, features 64k whatever the image size."""
import pytest
import torch

from core.errors import UserError
from networks.wideresnet import WideResNetEncoder


@pytest.mark.parametrize("depth, k", [(10, 1), (16, 2)])
def test_blocks_widths_and_global_pooling(depth, k):
    encoder = WideResNetEncoder(depth, k, num_channels=3, dropout=0.0).eval()
    assert len(encoder.blocks) == 3 * (depth - 4) // 6  # n blocks in each of 3 groups
    assert encoder.out_features == 64 * k
    for side in (16, 40):  # global average pooling: any size gives 64k features
        assert encoder(torch.randn(2, 3, side, side)).shape == (2, 64 * k)


@pytest.mark.parametrize("depth, k, fragment", [(12, 2, r"not 6n\+4"), (7, 1, r"not 6n\+4"), (16, 0, "must be >= 1")])
def test_impossible_shapes_are_one_line(depth, k, fragment):
    with pytest.raises(UserError, match=fragment):
        WideResNetEncoder(depth, k, num_channels=1)
