"""Vaze et al.'s RandAugment (ICLR 2022; their data/augmentations/randaugment.py), written from its
facts: N operations drawn uniformly with replacement from their 16 (OPERATIONS: their order and
ranges), each at magnitude M of 30; rotation, shear and translation take either sign with probability
1/2. Their MNIST and SVHN (here also Digits and FashionMNIST) leave out Rotate and the translations.
Draws come from torch's generator, which the DataLoader seeds per worker and --continue restores, so a
run repeats with --seed (theirs use Python's and NumPy's: other draws, the same distributions)."""
import math

import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

CUTOUT_RGB = (125, 123, 114)  # their fill
AFFINE = getattr(Image, "Transform", Image).AFFINE
NO_GEOMETRY = ("Rotate", "TranslateX", "TranslateY")


def _uniform():
    return float(torch.rand(()))


def _signed(value):
    return -value if _uniform() < 0.5 else value


def _affine(img, matrix):
    return img.transform(img.size, AFFINE, matrix)


def _solarize_add(img, value):
    lut = [min(255, math.floor(i + value)) for i in range(256)] * len(img.getbands())
    return ImageOps.solarize(img.point(lut), 128)


def _cutout(img, side):
    w, h = img.size
    cx, cy = w - (w - 1) * _uniform(), h - (h - 1) * _uniform()  # uniform in (1, w], (1, h]: their `uniform(w)`
    x0, y0 = int(max(0.0, cx - side / 2)), int(max(0.0, cy - side / 2))
    x1, y1 = min(w, x0 + side), min(h, y0 + side)
    fill = CUTOUT_RGB if img.mode == "RGB" else Image.new("RGB", (1, 1), CUTOUT_RGB).convert(img.mode).getpixel((0, 0))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), fill=fill)
    return img


# name -> (function of (image, value), low, high), in their order; rotation and affine maps: PIL's
# nearest neighbour, black outside; Posterize keeps max(1, int(value)) bits (M = 6: one)
OPERATIONS = {
    "AutoContrast": (lambda img, v: ImageOps.autocontrast(img), 0, 1),
    "Equalize": (lambda img, v: ImageOps.equalize(img), 0, 1),
    "Invert": (lambda img, v: ImageOps.invert(img), 0, 1),
    "Rotate": (lambda img, v: img.rotate(_signed(v)), 0, 30),
    "Posterize": (lambda img, v: ImageOps.posterize(img, max(1, int(v))), 0, 4),
    "Solarize": (lambda img, v: ImageOps.solarize(img, v), 0, 256),
    "SolarizeAdd": (_solarize_add, 0, 110),
    "Color": (lambda img, v: ImageEnhance.Color(img).enhance(v), 0.1, 1.9),
    "Contrast": (lambda img, v: ImageEnhance.Contrast(img).enhance(v), 0.1, 1.9),
    "Brightness": (lambda img, v: ImageEnhance.Brightness(img).enhance(v), 0.1, 1.9),
    "Sharpness": (lambda img, v: ImageEnhance.Sharpness(img).enhance(v), 0.1, 1.9),
    "ShearX": (lambda img, v: _affine(img, (1, _signed(v), 0, 0, 1, 0)), 0, 0.3),
    "ShearY": (lambda img, v: _affine(img, (1, 0, 0, _signed(v), 1, 0)), 0, 0.3),
    "Cutout": (_cutout, 0, 40),
    "TranslateX": (lambda img, v: _affine(img, (1, 0, _signed(v), 0, 1, 0)), 0, 100),
    "TranslateY": (lambda img, v: _affine(img, (1, 0, 0, 0, 1, _signed(v))), 0, 100),
}


def value(name, magnitude):
    """The value operation `name` applies at `magnitude` (their formula, before any sign)."""
    _, low, high = OPERATIONS[name]
    return magnitude / 30 * (high - low) + low


class VazeRandAugment:
    """`geometry` False: without Rotate and the translations (their MNIST and SVHN list)."""

    def __init__(self, num_ops, magnitude, geometry=True):
        self.num_ops, self.magnitude, self.geometry = num_ops, magnitude, geometry
        self.names = [n for n in OPERATIONS if geometry or n not in NO_GEOMETRY]

    def __call__(self, img):
        for _ in range(self.num_ops):
            name = self.names[int(torch.randint(len(self.names), ()))]
            img = OPERATIONS[name][0](img, value(name, self.magnitude))
        return img

    def __repr__(self):
        return f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, geometry={self.geometry})"
