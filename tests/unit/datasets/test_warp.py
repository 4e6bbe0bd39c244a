"""Batched augmentation (datasets/warp.py) against torchvision: the same crop box distribution
(compared with torchvision's own sampler) and, for given parameters, the same geometry
(compared with torchvision's functional ops on PIL images)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from datasets.warp import sample_boxes, warp

CPU = torch.device("cpu")


def test_warp_reproduces_torchvision_crop_flip_rotation():
    """Given the same parameters, one batched sampling = PIL crop+resize, hflip, rotate(NEAREST)."""
    rng = np.random.default_rng(0)
    size, total, off_by_more = 32, 0, 0
    for k in range(60):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        h, w = int(rng.integers(18, 33)), int(rng.integers(18, 33))
        top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        flip, angle = bool(k % 2), float(rng.uniform(-20, 20)) if k % 3 else 0.0
        want = TF.resized_crop(Image.fromarray(image), top, left, h, w, [size, size], InterpolationMode.BILINEAR)
        want = TF.rotate(TF.hflip(want) if flip else want, angle, InterpolationMode.NEAREST)
        want = torch.from_numpy(np.asarray(want).copy()).permute(2, 0, 1).float()

        def f64(v):
            return torch.tensor([float(v)], dtype=torch.float64)

        got = warp(torch.from_numpy(image).permute(2, 0, 1)[None], size, f64(top), f64(left), f64(h), f64(w),
                   torch.tensor([flip]), f64(angle), rotate=angle != 0 or k % 2 == 0)[0].round()
        diff = (got - want).abs()
        total += diff.numel()
        off_by_more += int((diff > 1).sum())
        # PIL rounds to 8 bits between its two resize passes: one grey level apart at most,
        # except for the rare pixel whose rotated position sits on a nearest-neighbour boundary
    assert off_by_more / total < 1e-3


def _torchvision_boxes(n, size, scale, ratio):
    torch.manual_seed(0)
    img = torch.zeros(1, size, size)
    return np.array([T.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)], dtype=float)


@pytest.mark.parametrize("scale", [(0.7, 1.0), (0.08, 1.0)])
def test_crop_boxes_follow_torchvision_distribution(scale):
    n, size, ratio = 4000, 32, (3 / 4, 4 / 3)
    top, left, h, w = (t.numpy() for t in
                       sample_boxes(n, size, size, scale, ratio, torch.Generator().manual_seed(1), CPU))
    want = _torchvision_boxes(n, size, scale, ratio)  # rows: top, left, h, w
    assert (h >= 1).all() and (w >= 1).all() and (h <= size).all() and (w <= size).all()
    assert (top >= 0).all() and (top + h <= size).all() and (left >= 0).all() and (left + w <= size).all()
    area, want_area = h * w / size ** 2, want[:, 2] * want[:, 3] / size ** 2
    aspect, want_aspect = np.log(w / h), np.log(want[:, 3] / want[:, 2])
    for got_values, want_values in ((area, want_area), (aspect, want_aspect), (top / np.maximum(size - h, 1),
                                    want[:, 0] / np.maximum(size - want[:, 2], 1))):
        assert stats.ks_2samp(got_values, want_values).pvalue > 1e-3
    # area share within the configured range up to pixel rounding, aspect within 3/4..4/3 likewise
    assert area.min() >= scale[0] * 0.9 and area.max() <= 1.0
    assert np.abs(aspect).max() <= math.log(4 / 3) + 2 / 16
