"""Class split files (datasets/splits.py): the committed ones (the protocol's facts, the Digits
procedure, validity), a user's own, and every malformed one refused in one line naming it."""
import json
import os

import numpy as np
import pytest

from conftest import PROTOCOL, REPO, one_line, require_shared
from fakedata import MALFORMED, read_idx_gz, write_split_file
from rawfiles import mnist_train_labels

from core.errors import UserError
from datasets.config import load_config
from datasets.names import SOURCES
from datasets.sources import NUM_CLASSES
from datasets import splits
from datasets.splits import load_class_split
from datasets.trial import OpenSetData

PAPER_DATASETS = ["MNIST", "SVHN", "CIFAR10", "CIFAR+10", "CIFAR+50", "TinyImageNet"]


def _read(dataset, trial):
    with open(os.path.join(REPO, "datasets", dataset, "class_splits", f"{trial}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_trials_0_to_4_are_standard_and_5_to_9_are_paper(dataset):
    with open(require_shared(PROTOCOL)) as f:
        facts = json.load(f)
    for offset, key in ((0, "standard"), (5, "paper")):
        for i, split in enumerate(facts[key][dataset]):
            assert _read(dataset, i + offset) == {"Known": split["Known"], "Unknown": split["Unknown"]}


def test_seed_readme_example_is_trial_5():
    assert _read("CIFAR10", 5)["Known"] == [6, 8, 2, 4, 9, 3]


@pytest.mark.parametrize("dataset", ["Digits", "FashionMNIST"])
def test_generated_trials_follow_the_documented_procedure(dataset):
    for trial in range(5):
        perm = np.random.default_rng(trial).permutation(10).tolist()
        assert _read(dataset, trial) == {"Known": perm[:6], "Unknown": perm[6:]}


@pytest.mark.parametrize("dataset", PAPER_DATASETS + ["Digits", "FashionMNIST"])
def test_every_committed_split_is_valid(dataset):
    cfg = load_config(dataset)
    known_src, unknown_src = SOURCES[dataset]
    folder = os.path.join(REPO, "datasets", dataset, "class_splits")
    trials = sorted(int(f[:-5]) for f in os.listdir(folder))
    assert trials == (list(range(10)) if dataset in PAPER_DATASETS else list(range(5)))
    for trial in trials:
        known, unknown = load_class_split(dataset, trial, cfg["num_known_classes"], NUM_CLASSES[known_src],
                                          NUM_CLASSES[unknown_src] if known_src != unknown_src else None)
        assert len(known) == cfg["num_known_classes"]


# ------------------------------------------------------------------ split files, however written
# MNIST split files under trial numbers the repo does not use, in a private data sets' folder
BAD_SPLITS = [
    ("not json", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [6, 7, 8, 9]', ["not valid JSON"]),
    ("no Known", '{"Unknown": [6, 7, 8, 9]}', ["'Known'"]),
    ("repeat", '{"Known": [0, 1, 2, 3, 4, 4], "Unknown": [6, 7, 8, 9]}', ["Known", "repeats"]),
    ("out of range", '{"Known": [0, 1, 2, 3, 4, 10], "Unknown": [6, 7, 8, 9]}', ["Known", "10", "0..9"]),
    ("negative unknown", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [-1, 7, 8, 9]}', ["Unknown", "-1"]),
    ("overlap", '{"Known": [0, 1, 2, 3, 4, 5], "Unknown": [5, 7, 8, 9]}', ["both Known and Unknown", "5"]),
    ("five known", '{"Known": [0, 1, 2, 3, 4], "Unknown": [6, 7, 8, 9]}', ["5 known classes", "6"]),
    ("strings", '{"Known": ["0", "1", "2", "3", "4", "5"], "Unknown": [6, 7, 8, 9]}', ["Known", "integer"]),
]


@pytest.fixture
def own_datasets_dir(tmp_path, monkeypatch):
    """A private folder in place of the repo's datasets/ for the class split files (datasets.splits
    reads <it>/<dataset>/class_splits/<trial>.json), so that a test's own split files never go
    into the checkout."""
    monkeypatch.setattr(splits, "DATASETS_DIR", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


@pytest.fixture
def split_file(request, own_datasets_dir):
    """Write request.param = (trial, text) as MNIST's class split file of that trial."""
    trial, text = request.param
    path = own_datasets_dir / "MNIST" / "class_splits" / f"{trial}.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return trial, str(path)


@pytest.mark.parametrize("split_file,fragments",
                         [((7301 + k, text), frags) for k, (_, text, frags) in enumerate(BAD_SPLITS)],
                         ids=[b[0] for b in BAD_SPLITS], indirect=["split_file"])
def test_bad_split_file(split_file, fragments, mnist_root):
    trial, path = split_file
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", trial, data_root=mnist_root, download=False)
    msg = str(err.value)
    assert path in msg and "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


@pytest.mark.parametrize("split_file", [(7300, '{"Known": [9, 8, 7, 6, 5, 4], "Unknown": [3, 0]}')],
                         indirect=True)
def test_user_added_split_file(split_file, mnist_root):
    trial, _ = split_file
    data = OpenSetData("MNIST", trial, data_root=mnist_root, download=False)
    assert {c: int(data.label_map[c]) for c in range(10)} == {
        4: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5, 0: 6, 1: 6, 2: 6, 3: 6}
    labels = mnist_train_labels(mnist_root)
    unknown = data.unknown_test_dataset()
    test_labels = read_idx_gz(os.path.join(mnist_root, "MNIST", "raw", "t10k-labels-idx1-ubyte.gz"))
    assert sorted(np.asarray(unknown.indices).tolist()) == np.flatnonzero(np.isin(test_labels, [0, 3])).tolist()
    assert sorted(data.train_idx.tolist() + data.val_idx.tolist()) == \
        np.flatnonzero(np.isin(labels, [4, 5, 6, 7, 8, 9])).tolist()


def test_missing_split_file_lists_existing_trials(mnist_root):
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", 4242, data_root=mnist_root, download=False)
    msg = str(err.value)
    assert "4242" in msg and os.path.join("MNIST", "class_splits", "4242.json") in msg
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in msg


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_split_file_is_one_line(case, tmp_path, own_datasets_dir):
    content, fragment = MALFORMED[case]
    given = tmp_path / "split.json"
    write_split_file(given, content)
    with pytest.raises(UserError) as err:
        load_class_split("Digits", 0, 6, 10, path=str(given))
    assert fragment in one_line(err.value) and str(given) in str(err.value)
    # the trial's own file in the data set's folder, read the same way
    own = own_datasets_dir / "Digits" / "class_splits" / "77.json"
    own.parent.mkdir(parents=True)
    write_split_file(own, content)
    with pytest.raises(UserError) as err:
        load_class_split("Digits", 77, 6, 10)
    assert fragment in one_line(err.value)
