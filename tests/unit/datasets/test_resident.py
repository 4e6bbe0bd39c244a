"""The device-resident pipeline (datasets/resident.py) against the torchvision transforms it
replaces: evaluation batches equal bit for bit, augmentation drawn as configured, the
generator's state restoring an epoch, and the data sets it leaves to the per-sample path; its
batched augmentation against torchvision: the same crop box distribution (compared with
torchvision's own sampler) and, for given parameters, the same geometry (compared with
torchvision's functional ops on PIL images)."""
import math

import numpy as np
import pytest
import torch
from fakedata import write_tinyimagenet
from PIL import Image
from scipy import stats
from torch.utils.data import Subset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from datasets.augment import AugmentSpec
from datasets.pipeline import build_loader
from datasets.resident import ResidentLoader, resident_loader, sample_boxes, warp
from datasets.trial import OpenSetData, RemappedSubset

CPU = torch.device("cpu")


def _batches(loader):
    return [(x.contiguous(), y.cpu()) for x, y in loader]


def test_evaluation_batches_equal_the_torchvision_path(trials):
    for data in trials:
        for dataset in (data.val_dataset(), data.anchor_dataset(), data.known_test_dataset(),
                        data.unknown_test_dataset()):
            fast = build_loader(dataset, 7, False, pipeline="resident")
            assert isinstance(fast, ResidentLoader), data.name
            want = _batches(build_loader(dataset, 7, False, pipeline="torchvision"))
            got = _batches(fast)
            assert len(got) == len(want)
            for (x, y), (wx, wy) in zip(got, want):
                assert torch.equal(y, wy) and x.dtype == wx.dtype and torch.equal(x, wx), data.name


def test_channels_last_batches_hold_the_same_values(trials):
    dataset = trials[2].val_dataset()
    plain = _batches(build_loader(dataset, 5, False))
    last = list(build_loader(dataset, 5, False, channels_last=True))
    assert last[0][0].is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain, last))


def test_flip_rate_and_rotation_angles_follow_the_configuration():
    images = torch.zeros(10, 1, 16, 16, dtype=torch.uint8)
    spec = AugmentSpec("train", 16, [0.5], [0.25], scale_min=0.8, flip=0.3, rotate=10)
    loader = ResidentLoader(images, torch.zeros(10), 10, spec, seed=3)
    size, (_, _, _, _, flip, angle) = loader.draw_params(20000, 16, 16)
    assert size == 16
    p, n = 0.3, len(flip)
    assert abs(flip.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    angle = angle.numpy()
    assert angle.min() >= -10 and angle.max() <= 10
    assert stats.kstest(angle, stats.uniform(loc=-10, scale=20).cdf).pvalue > 1e-3


def test_no_augmentation_configured_means_identity(trials):
    """Digits trains with flip 0 and rotation 0: with crop scale forced to 1 the batch equals eval."""
    data = trials[0]
    data.cfg["data_transforms"] = {**data.cfg["data_transforms"], "scale_min": 1.0}
    train = data.train_dataset()
    # area 1 and aspect 1 is the only box that fits, so it must be the whole image
    got = next(iter(build_loader(train, 9, False)))[0]
    want = next(iter(build_loader(data.anchor_dataset(), 9, False)))[0]
    assert torch.equal(got, want)


def test_generator_state_restores_the_same_epoch(trials):
    loader = build_loader(trials[1].train_dataset(), 8, True, seed=5)
    state = loader.generator.get_state()
    first = _batches(loader)
    loader.generator.set_state(state)
    again = _batches(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(_batches(loader)[0][0], first[0][0])  # the next epoch differs


class InMemory:
    """A raw data set as torchvision's in-memory ones: a uint8 `data` array, items (PIL image, label)."""

    def __init__(self, height, width):
        self.data = np.random.default_rng(0).integers(0, 256, (6, height, width), dtype=np.uint8)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i]), 0


def test_folder_data_sets_and_unknown_transforms_fall_back(tmp_path):
    write_tinyimagenet(str(tmp_path), n_train=3, n_val=2)
    tiny = OpenSetData("TinyImageNet", 0, data_root=str(tmp_path), download=False)
    assert resident_loader(tiny.val_dataset(), 4, False, CPU) is None
    # a data set without an augmentation spec (not a trial's subset) stays per-sample
    digits = Subset(OpenSetData("Digits", 0).val_dataset(), range(8))
    assert resident_loader(digits, 4, False, CPU) is None
    assert not isinstance(build_loader(digits, 4, False), ResidentLoader)
    # a crop that would shrink the image (PIL filters wider then: an 8 x 12 image resized to
    # 16 x 24 and cut to 16 x 16) stays per-sample too; a square one does not
    spec = AugmentSpec("train", 16, [0.5], [0.2], scale_min=0.08, flip=0.5)
    labels = torch.zeros(6, dtype=torch.int64)
    assert resident_loader(RemappedSubset(InMemory(8, 12), np.arange(6), labels, spec), 4, False, CPU) is None
    square = RemappedSubset(InMemory(8, 8), np.arange(6), labels, spec)
    assert isinstance(resident_loader(square, 4, False, CPU), ResidentLoader)


# ------------------------------------------------------------------ the batched augmentation


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


def _mirroring_loader(n, batch, **options):
    """A ResidentLoader whose augmentation is fixed (whole-image crop, always mirrored): any way of
    drawing its parameters must give the same pixels."""
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 1, 16, 16), dtype=np.uint8))
    spec = AugmentSpec("train", 16, [0.5], [0.25], scale_min=1.0, flip=1.0, rotate=0)
    return ResidentLoader(images, torch.arange(n), batch, spec, shuffle=True, seed=4, **options)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_augmenting_several_batches_at_once_cuts_them_back_in_order(k):
    plain, chunked = _batches(_mirroring_loader(23, 5)), _batches(_mirroring_loader(23, 5, augment_batches=k))
    assert [len(y) for _, y in chunked] == [5, 5, 5, 5, 3]
    for (x, y), (cx, cy) in zip(plain, chunked, strict=True):
        assert torch.equal(y, cy) and torch.equal(x, cx)
    # the same images, mirrored, normalized: written out for the first batch
    loader = _mirroring_loader(23, 5, augment_batches=k)
    x, y = next(iter(_mirroring_loader(23, 5, augment_batches=k)))
    assert torch.equal(x, (loader.images[y].flip(3).float() / 255 - 0.5) / 0.25)


@pytest.mark.parametrize("k", [1, 3])
def test_the_ranks_shares_interleave_to_the_one_process_batches(k):
    """Each rank draws the parameters of the whole global batch but makes only its own share's images."""
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (23, 3, 12, 12), dtype=np.uint8))
    spec = AugmentSpec("train", 16, [0.5] * 3, [0.25] * 3, scale_min=0.6, flip=0.5, rotate=10)

    def batches(rank, world):  # 7 images a batch: shares of 3, 2 and 2 under 3 ranks
        return _batches(ResidentLoader(images, torch.arange(23), 7, spec, shuffle=True, seed=2, shard=(rank, world),
                                       augment_batches=k))
    whole, shares = batches(0, 1), [batches(rank, 3) for rank in range(3)]
    assert len(whole) == 4 and [len(s) for s in shares] == [3, 3, 3]  # the last 2 images: too few for 3 ranks
    for b, (x, y) in enumerate(whole[:3]):
        for rank in range(3):
            assert torch.equal(shares[rank][b][0], x[rank::3]) and torch.equal(shares[rank][b][1], y[rank::3])


def test_drop_last_gives_every_batch_one_shape(trials):
    assert [len(y) for _, y in _mirroring_loader(23, 5, drop_last=True)] == [5, 5, 5, 5]
    assert len(_mirroring_loader(20, 5, drop_last=True)) == 4
    train = trials[0].train_dataset()
    for pipeline in ("resident", "torchvision"):
        full = build_loader(train, 64, True, pipeline=pipeline)
        dropped = build_loader(train, 64, True, pipeline=pipeline, drop_last=True)
        sizes = [len(y) for _, y in dropped]
        assert len(train) % 64 and sizes == [64] * (len(train) // 64) and len(full) == len(sizes) + 1, pipeline
    sharded = build_loader(train, 64, True, pipeline="torchvision", shard=(1, 2), drop_last=True)
    assert [len(y) for _, y in sharded] == [32] * (len(train) // 64)
