"""datasets/summary.py: the start-up line, its counts and class names checked against what the
test computes on its own from the folder it wrote, or from the data set's labels and split file."""
import os
import shutil

import numpy as np
from fakedata import PETS_SPLIT, PETS_TEST, PETS_TRAIN
from rawfiles import read_split

from datasets.config import apply_overrides, load_config
from datasets.digits import Digits
from datasets.summary import summary_line
from datasets.trial import OpenSetData


def val_count(n, fraction=0.2):
    """Validation images of a class of n (datasets/partition.py's rule: round, at least 1 of 2+)."""
    return max(int(round(fraction * n)), 1 if n >= 2 else 0)


def test_summary_of_an_image_folder_counts_names_and_strays(folder, tmp_path):
    root = tmp_path / "pets"
    shutil.copytree(folder / "pets", root)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "test" / "yak" / ".DS_Store").write_bytes(b"\0")
    cfg = apply_overrides(load_config("ImageFolder"), "ImageFolder", im_size=16, im_channels=1)
    data = OpenSetData("ImageFolder", 0, str(root), config=cfg, split_file=str(folder / "split.json"))
    line = summary_line(data)
    known, unknown = PETS_SPLIT["Known"], PETS_SPLIT["Unknown"]
    val = sum(val_count(PETS_TRAIN[c]) for c in known)
    train = sum(PETS_TRAIN[c] for c in known) - val
    test_known, test_unknown = sum(PETS_TEST[c] for c in known), sum(PETS_TEST[c] for c in unknown)
    assert line.startswith(f"data: ImageFolder trial 0: {train} train, {val} val images; "
                           f"test {test_known} known, {test_unknown} unknown; ")
    assert f"3 known classes ('cat', 'dog', 'owl'), 2 unknown ('fox', 'yak')" in line  # labels 0..2: sorted folders
    assert "-> 16x16 grey (shorter side resized to 16, centre cut)" in line
    assert "images 20x28..64x48 (" in line  # fakedata's smallest and largest image (by area)
    assert line.endswith("skipped 2 file(s) that are not images by name (e.g. "
                         f"{os.path.join('train', 'cat', 'notes.txt')})")


def test_summary_of_a_built_in_data_set():
    data = OpenSetData("Digits", 0, "unused")
    line = summary_line(data)
    known, _ = read_split("Digits", 0)
    labels = np.asarray(Digits(train=True).targets)
    sizes = [int((labels == c).sum()) for c in known]
    val = sum(val_count(n) for n in sizes)
    assert line.startswith(f"data: Digits trial 0: {sum(sizes) - val} train, {val} val images; ")
    assert f"6 known classes ({', '.join(repr(str(c)) for c in sorted(known))})" in line  # labels 0..5
    assert line.endswith("images 8x8 grey -> 16x16 grey (resized 8 -> 16)")
    assert "test" not in line  # the official test split is opened by evaluation only
