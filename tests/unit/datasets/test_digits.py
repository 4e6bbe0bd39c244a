"""Digits (datasets/digits.py): scikit-learn's 1,797 images, 70% of each class for training, 30% for testing."""
from collections import Counter

import numpy as np


def test_digits_is_the_real_sklearn_set_split_70_30_per_class():
    from sklearn.datasets import load_digits

    from datasets.digits import Digits

    bunch = load_digits()
    assert len(bunch.target) == 1797
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) + len(test) == 1797
    for c in range(10):
        n = int((bunch.target == c).sum())
        n_test = int((np.asarray(test.targets) == c).sum())
        assert abs(n_test - 0.3 * n) <= 0.5 + 1e-9, (c, n, n_test)
    # the two parts together are exactly the 1,797 images (scaled 0..16 -> 0..255) with their labels
    full = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)

    def key(img, lab):
        return (np.asarray(img, np.uint8).tobytes(), int(lab))

    want = Counter(key(img, lab) for img, lab in zip(full, bunch.target))
    got = Counter(key(img, lab) for part in (train, test) for img, lab in zip(part.data, part.targets))
    assert got == want
    image, label = train[0]
    assert image.size == (8, 8) and image.mode == "L" and label == int(train.targets[0])
