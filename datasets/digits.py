"""Digits: scikit-learn's 1,797 real 8x8 handwritten digits, the embedded demo data set (scikit-learn
ships the images, so it works offline everywhere). It has no official test set: a fixed seeded 30%
of each class's images stands in for one."""
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datasets.partition import hold_out_per_class

TEST_FRACTION = 0.3  # share of each class's images that form the test set
TEST_SEED = 1234  # fixed forever: changing it would change every published Digits number


class Digits(Dataset):
    """torchvision-style data set: item i is (PIL grey image 8x8, label); `.targets` holds labels."""

    def __init__(self, train=True):
        from sklearn.datasets import load_digits  # imported here: only this data set needs it

        bunch = load_digits()
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> ordinary 8-bit images
        part = hold_out_per_class(bunch.target, TEST_FRACTION, TEST_SEED)[0 if train else 1]
        idx = np.sort(np.concatenate([np.asarray(v, dtype=np.int64) for v in part.values()]))
        self.data, self.targets = images[idx], bunch.target[idx].astype(np.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i], mode="L"), int(self.targets[i])
