"""datasets/randaugment.py against Vaze et al.'s RandAugment as facts: their 16 operations (13
without rotation and translation), the value M / 30 of each range, each operation's effect
computed here independently with numpy, the cutout box from their centre draw, a uniform choice
of operation and of direction, grey and RGB images alike."""
import numpy as np
import pytest
import torch
from PIL import Image

import datasets.randaugment as ra
from datasets.randaugment import OPERATIONS, VazeRandAugment, value

THEIR_ORDER = ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
               "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "Cutout", "TranslateX", "TranslateY"]
RANGES = {"Rotate": (0, 30), "Posterize": (0, 4), "Solarize": (0, 256), "SolarizeAdd": (0, 110), "Color": (0.1, 1.9),
          "Contrast": (0.1, 1.9), "Brightness": (0.1, 1.9), "Sharpness": (0.1, 1.9), "ShearX": (0, 0.3),
          "ShearY": (0, 0.3), "Cutout": (0, 40), "TranslateX": (0, 100), "TranslateY": (0, 100)}


def image(mode="RGB", size=32, seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_their_operations_ranges_and_values():
    assert list(OPERATIONS) == THEIR_ORDER
    for name, (low, high) in RANGES.items():
        assert OPERATIONS[name][1:] == (low, high)
        for m in (0, 6, 9, 18, 30):
            assert value(name, m) == pytest.approx(m / 30 * (high - low) + low)
    assert len(VazeRandAugment(1, 6).names) == 16
    assert VazeRandAugment(1, 8, geometry=False).names == [n for n in THEIR_ORDER if n not in
                                                            ("Rotate", "TranslateX", "TranslateY")]


def test_posterize_keeps_one_bit_at_m6_and_two_at_m18():
    img = image()
    for m, bits in ((6, 1), (8, 1), (9, 1), (18, 2), (30, 4)):
        out = np.asarray(OPERATIONS["Posterize"][0](img, value("Posterize", m)))
        assert np.array_equal(out, np.asarray(img) & (256 - 2 ** (8 - bits))), m


def test_solarize_and_solarize_add_as_their_numpy():
    img = image()
    x = np.asarray(img).astype(np.int64)
    v = value("Solarize", 6)  # 51.2: pixels at or above it are inverted
    assert np.array_equal(np.asarray(OPERATIONS["Solarize"][0](img, v)), np.where(x >= v, 255 - x, x))
    v = value("SolarizeAdd", 6)  # 22.0
    added = np.clip(x + v, 0, 255).astype(np.uint8).astype(np.int64)
    assert np.array_equal(np.asarray(OPERATIONS["SolarizeAdd"][0](img, v)), np.where(added >= 128, 255 - added, added))
    grey = image("L")
    g = np.clip(np.asarray(grey).astype(np.int64) + 22.5, 0, 255).astype(np.uint8).astype(np.int64)
    assert np.array_equal(np.asarray(OPERATIONS["SolarizeAdd"][0](grey, 22.5)), np.where(g >= 128, 255 - g, g))


def test_cutout_box_from_their_centre_draw(monkeypatch):
    monkeypatch.setattr(ra, "_uniform", lambda: 0.5)
    img = Image.new("RGB", (32, 32), (0, 0, 0))
    out = np.asarray(OPERATIONS["Cutout"][0](img, value("Cutout", 6)))  # side 8, centre 32 - 31 / 2 = 16.5
    filled = np.argwhere((out == (125, 123, 114)).all(axis=2))
    assert filled.min(0).tolist() == [12, 12] and filled.max(0).tolist() == [20, 20]  # int(12.5), then + 8, inclusive
    monkeypatch.setattr(ra, "_uniform", lambda: 0.0)  # centre at the far edge: clipped to the image
    out = np.asarray(OPERATIONS["Cutout"][0](Image.new("L", (28, 28), 0), 10.0))
    grey = round(125 * 0.299 + 123 * 0.587 + 114 * 0.114)
    rows, cols = np.nonzero(out == grey)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (23, 27, 23, 27)


def test_every_operation_runs_on_grey_and_rgb_images():
    for mode in ("L", "RGB"):
        img = image(mode, 28)
        for name, (fn, _, _) in OPERATIONS.items():
            out = fn(img, value(name, 9))
            assert out.mode == mode and out.size == img.size, name


def test_uniform_choice_of_operation_and_direction():
    torch.manual_seed(0)
    aug = VazeRandAugment(1, 6, geometry=False)
    seen = {}
    real = dict(OPERATIONS)
    try:
        for name in real:
            OPERATIONS[name] = (lambda n: (lambda img, v: seen.__setitem__(n, seen.get(n, 0) + 1) or img))(name), \
                *real[name][1:]
        for _ in range(6500):
            aug(image("L", 4))
    finally:
        OPERATIONS.update(real)
    assert set(seen) == set(aug.names) and all(400 < c < 600 for c in seen.values()), seen  # 500 each expected
    signs = [np.sign(ra._signed(1.0)) for _ in range(2000)]
    assert 900 < signs.count(1) < 1100 and signs.count(1) + signs.count(-1) == 2000


def test_shear_and_translate_are_their_affine_maps():
    img = Image.new("L", (8, 8), 0)
    img.putpixel((2, 3), 255)
    torch.manual_seed(1)
    moved = [np.argwhere(np.asarray(OPERATIONS["TranslateX"][0](img, 2.0)) == 255).tolist() for _ in range(20)]
    assert {tuple(map(tuple, m)) for m in moved} == {((3, 0),), ((3, 4),)}  # x - 2 or x + 2: output(x) = input(x + v)
