"""Digits: scikit-learn's 1,797 real 8x8 handwritten digits, the embedded demo data set.

scikit-learn ships the images, so this works offline everywhere. It has no official
train/test split: a fixed seeded 70/30 split per class stands in for one.
"""
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

TEST_FRACTION = 0.3  # share of each class's images that form the test set
SPLIT_SEED = 1234  # fixed forever: changing it would change every published Digits number


class Digits(Dataset):
    """torchvision-style data set: item i is (PIL grey image 8x8, label); `.targets` holds labels."""

    def __init__(self, train=True):
        from sklearn.datasets import load_digits  # imported here: only this data set needs it

        from datasets.partition import split_per_class

        bunch = load_digits()
        # pixel values are 0..16 -> 0..255 so that ToTensor sees ordinary 8-bit images
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        train_idx, test_idx = split_per_class(bunch.target, TEST_FRACTION, SPLIT_SEED)
        parts = train_idx if train else test_idx
        idx = np.sort(np.concatenate([np.asarray(v, dtype=np.int64) for v in parts.values()]))
        self.data = images[idx]
        self.targets = bunch.target[idx].astype(np.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i], mode="L"), int(self.targets[i])
