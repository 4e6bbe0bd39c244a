"""datasets/classnames.py: a data set's class names (its own list, else the id), where each
image of a subset came from (original class, file), and a trial's classes by name."""
import os

import numpy as np
from torch.utils.data import Dataset

from datasets.classnames import TrialClasses, class_names, image_origins


class Raw(Dataset):
    def __init__(self, targets, classes=None, samples=None):
        self.targets = targets
        if classes is not None:
            self.classes = classes
        if samples is not None:
            self.samples = samples


class Subset:
    def __init__(self, base, indices):
        self.base, self.indices = base, indices


def test_class_names_are_the_data_sets_own_else_the_id():
    assert class_names(Raw([0], classes=["T-shirt/top", "Trouser", "Pullover"]), 3) == ["T-shirt/top", "Trouser",
                                                                                       "Pullover"]
    assert class_names(Raw([0]), 4) == ["0", "1", "2", "3"]  # Digits, SVHN: the digit
    assert class_names(Raw([0], classes=["a"]), 3) == ["0", "1", "2"]  # a list too short names nothing


def test_image_origins_are_the_original_class_and_file_of_each_image():
    samples = [("a/0.png", 0), ("b/1.png", 1), ("c/2.png", 2), ("b/3.png", 1)]
    labels, paths = image_origins(Subset(Raw([0, 1, 2, 1], samples=samples), np.array([3, 0])))
    assert labels.tolist() == [1, 0] and paths == [os.path.abspath("b/3.png"), os.path.abspath("a/0.png")]
    labels, paths = image_origins(Subset(Raw(np.array([5, 6, 7])), [2]))
    assert labels.tolist() == [7] and paths is None


def test_trial_classes_name_each_image_by_its_own_class():
    c = TrialClasses([2, 5], ["two", "five"], [9, 0], ["nine", "zero"], np.array([5, 2, 5]), np.array([0, 0, 9]))
    assert c.image_names("known") == ["five", "two", "five"]
    assert c.image_names("unknown") == ["zero", "zero", "nine"]
