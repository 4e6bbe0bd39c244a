"""benchmarks/measure.py's InMemoryTrial: a trial over images in memory, as the speed
benchmark measures one."""
import numpy as np
import torch
from PIL import Image

from benchmarks.measure import InMemoryTrial
from datasets.config import load_config


class InMemory:
    """Grey 8 x 8 images in memory, as torchvision's in-memory data sets hold them."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.data = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
        self.targets = (np.arange(n) % 10).tolist()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i]), self.targets[i]


def test_a_trial_over_in_memory_sources(private_cache):
    """InMemoryTrial: the class split and sources given, nothing read from or written to disk."""
    train, test = InMemory(60, seed=1), InMemory(30, seed=2)
    known, unknown = [7, 1, 3, 5, 8, 9], [0, 2]
    data = InMemoryTrial("Digits", load_config("Digits"), train, test, known, unknown)
    assert {c: int(data.label_map[c]) for c in known + unknown} == {1: 0, 3: 1, 5: 2, 7: 3, 8: 4, 9: 5, 0: 6, 2: 6}
    every_known = np.flatnonzero(np.isin(train.targets, known))
    assert data.train_idx.tolist() == data.val_idx.tolist() == every_known.tolist()
    pixels = train.data[every_known].astype(np.float64) / 255.0  # Digits lists no normalization
    np.testing.assert_allclose(data.mean, [pixels.mean()], rtol=1e-9)
    np.testing.assert_allclose(data.std, [pixels.std()], rtol=1e-9)
    image, label = data.train_dataset()[0]
    assert tuple(image.shape) == (1, 16, 16) and int(label) == int(data.label_map[train.targets[every_known[0]]])
    known_test, unknown_test = data.known_test_dataset(), data.unknown_test_dataset()
    assert len(known_test) == 18 and len(unknown_test) == 6 and known_test.base is unknown_test.base is test
    assert torch.as_tensor(unknown_test.labels).tolist() == [6] * 6
    assert data.class_names == ["1", "3", "5", "7", "8", "9"]
    assert not private_cache.exists()  # not even the cache folder of $CAC_CACHE_DIR
