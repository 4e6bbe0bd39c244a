"""Class names of a data set, and where each image of a trial's subset came from (TrialClasses, for an
evaluation's results). Names come from the data set: torchvision's `classes` (MNIST's "0 - zero",
TinyImageNet's wnids), an image folder's folder names, else (Digits, SVHN) the class id."""
import os
from dataclasses import dataclass

import numpy as np

from datasets.sources import source_labels


def class_names(raw, num_classes):
    """Name of each class id 0..num_classes-1 of the raw data set `raw`."""
    names = getattr(raw, "classes", None)
    if names is not None and len(names) >= num_classes:
        return [str(n) for n in names[:num_classes]]
    return [str(c) for c in range(num_classes)]


def image_origins(subset):
    """(original class id of each image, its absolute file path or None) of a subset (.base, .indices)
    of a raw data set; paths exist for data sets read from files (image folders, TinyImageNet)."""
    indices = np.asarray(subset.indices, dtype=np.int64)
    labels = source_labels(subset.base)[indices]
    samples = getattr(subset.base, "samples", None)
    paths = [os.path.abspath(samples[int(i)][0]) for i in indices] if samples is not None else None
    return labels, paths


@dataclass
class TrialClasses:
    """One trial's classes by original id and name (known ones in label order 0..N-1) and, per
    test image, its original class (id, name) and file (None when not read from files)."""
    known: list
    known_names: list
    unknown: list
    unknown_names: list
    known_image_classes: np.ndarray
    unknown_image_classes: np.ndarray
    known_paths: list | None = None
    unknown_paths: list | None = None

    def as_json(self):
        """The classes for a results JSON (ids and names, no per-image lists)."""
        return {"known_classes": self.known, "known_class_names": self.known_names,
                "unknown_classes": self.unknown, "unknown_class_names": self.unknown_names}

    def image_names(self, part):
        """The class name of each known or unknown (`part`) test image."""
        lookup = dict(zip(getattr(self, part), getattr(self, f"{part}_names")))
        return [lookup[int(c)] for c in getattr(self, f"{part}_image_classes")]
