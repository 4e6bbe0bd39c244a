"""The augmentation spec (datasets/augment.py): the torchvision transforms of SPEC section 4
for each kind, with the config's numbers, and the same numbers for the resident pipeline."""
from torchvision import transforms as T

from datasets.augment import CROP_RATIO, AugmentSpec
from datasets.config import load_config

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def test_each_kind_builds_the_transforms_of_the_spec():
    cfg = load_config("CIFAR10")
    size, aug = cfg["im_size"], cfg["data_transforms"]
    train = AugmentSpec.from_config("train", cfg, MEAN, STD).transform().transforms
    assert [type(t) for t in train] == [T.Resize, T.RandomResizedCrop, T.RandomHorizontalFlip, T.RandomRotation,
                                        T.ToTensor, T.Normalize]
    assert train[0].size == size and train[1].size == (size, size)
    assert train[1].scale == (aug["scale_min"], 1.0) and train[1].ratio == (3 / 4, 4 / 3) == CROP_RATIO
    assert train[2].p == aug["flip"] and train[3].degrees == [-aug["rotate"], aug["rotate"]]
    assert train[5].mean == MEAN and train[5].std == STD
    evaluation = AugmentSpec.from_config("eval", cfg, MEAN, STD).transform().transforms
    assert [type(t) for t in evaluation] == [T.Resize, T.ToTensor, T.Normalize] and evaluation[0].size == size
    anchor = AugmentSpec.from_config("anchor", cfg, MEAN, STD).transform().transforms
    assert [type(t) for t in anchor] == [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert anchor[1].size == (size, size) and anchor[3].mean == MEAN


def test_the_resident_pipeline_reads_the_numbers_of_the_transforms():
    cfg = load_config("TinyImageNet")
    spec = AugmentSpec.from_config("train", cfg, MEAN, STD)
    steps = spec.transform().transforms
    assert spec.random and tuple(steps[3].degrees) == spec.degrees == (-20.0, 20.0)
    assert [type(t) for t in spec.head()] == [T.Resize] and spec.head()[0].size == steps[0].size
    for kind in ("eval", "anchor"):
        other = AugmentSpec.from_config(kind, cfg, MEAN, STD)
        assert not other.random and len(other.head()) == len(other.transform().transforms) - 2
