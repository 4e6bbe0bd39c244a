"""OpenSetData (datasets/trial.py) on tiny fake data sets in each real on-disk format, read by
the real torchvision classes (and scikit-learn's digits), and on users' own image folders.

Every expectation is computed here from what the test itself knows: the raw files (read with
gzip / pickle / scipy / PIL directly, tests/fakedata.py), the class split files, and the
numbers of SPEC section 4, never from a second run of the code under test.
"""
import functools
import os

import numpy as np
import pytest
import torch
from rawfiles import read_cifar, read_split, read_svhn, SHAPES, truth_for
from PIL import Image
from torchvision import transforms as T

from datasets.config import apply_overrides, load_config
from datasets.trial import OpenSetData


FAMILIES = [("MNIST", 0, "mnist_root"), ("SVHN", 0, "svhn_root"), ("CIFAR10", 5, "cifar_root"),
            ("CIFAR+10", 0, "cifar_root"), ("TinyImageNet", 0, "tiny_root"), ("Digits", 0, None),
            ("FashionMNIST", 0, "fashion_root")]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    dataset, trial, root_fixture = request.param
    root = request.getfixturevalue(root_fixture) if root_fixture else "/nonexistent-digits-needs-no-files"
    data = OpenSetData(dataset, trial, data_root=root, download=False)
    known, unknown = read_split(dataset, trial)
    return dict(dataset=dataset, trial=trial, root=root, data=data, known=known, unknown=unknown,
                truth=truth_for(dataset, root, data))


def pil_resize(image, size):
    """uint8 HW / HWC -> float array (C, size, size) in [0, 1], resized as PIL's bilinear does."""
    img = Image.fromarray(image)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float64) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def expected_map(known):
    return {c: i for i, c in enumerate(sorted(known))}


def test_cifar10_paper_trial_mapping_example(cifar_root):
    # the seed README's example: CIFAR10 trial 5 (first-release split) = Known [6, 8, 2, 4, 9, 3]
    data = OpenSetData("CIFAR10", 5, data_root=cifar_root, download=False)
    assert sorted(data.known) == [2, 3, 4, 6, 8, 9] and sorted(data.unknown) == [0, 1, 5, 7]
    mapping = {c: int(data.label_map[c]) for c in range(10)}
    assert mapping == {2: 0, 3: 1, 4: 2, 6: 3, 8: 4, 9: 5, 0: 6, 1: 6, 5: 6, 7: 6}


def test_split_matches_split_file(family):
    data = family["data"]
    size, channels, num_known, _ = SHAPES[family["dataset"]]
    assert list(data.known) == family["known"] and list(data.unknown) == family["unknown"]
    assert data.num_known == num_known == len(family["known"])
    if family["dataset"] == "Digits":  # 6 known / 4 unknown of the 10 digits
        assert sorted(family["known"] + family["unknown"]) == list(range(10))


def test_labels_remapped_in_ascending_order_of_original_id(family):
    data, truth, known = family["data"], family["truth"], family["known"]
    mapping = expected_map(known)
    for ds, raw in ((data.train_dataset(), truth.train_labels), (data.val_dataset(), truth.train_labels),
                    (data.anchor_dataset(), truth.train_labels), (data.known_test_dataset(), truth.test_labels)):
        expected = [mapping[int(raw[i])] for i in ds.indices]
        assert torch.as_tensor(ds.labels).tolist() == expected
        assert sorted(set(expected)) == list(range(len(known)))
    unknown = data.unknown_test_dataset()
    assert torch.as_tensor(unknown.labels).tolist() == [len(known)] * len(unknown.indices)


def test_items_have_shape_label_and_pixels(family):
    data, truth = family["data"], family["truth"]
    size, channels, _, _ = SHAPES[family["dataset"]]
    mapping = expected_map(family["known"])
    mean = np.asarray(data.mean, np.float64).reshape(-1, 1, 1)
    std = np.asarray(data.std, np.float64).reshape(-1, 1, 1)
    cases = [(data.train_dataset(), truth.train_labels, truth.train_image, False),
             (data.val_dataset(), truth.train_labels, truth.train_image, True),
             (data.anchor_dataset(), truth.train_labels, truth.train_image, True),  # no training augmentation
             (data.known_test_dataset(), truth.test_labels, truth.test_image, True),
             (data.unknown_test_dataset(), truth.unknown_labels, truth.unknown_image, True)]
    for ds, raw_labels, raw_image, exact in cases:
        for k in (0, len(ds) - 1):
            image, label = ds[k]
            assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
            assert tuple(image.shape) == (channels, size, size)
            raw = int(raw_labels[ds.indices[k]])
            assert int(label) == mapping.get(raw, len(family["known"]))
            if exact:  # evaluation and anchor transforms: Resize (CenterCrop), ToTensor, Normalize - no randomness
                expected = (pil_resize(raw_image(ds.indices[k]), size) - mean) / std
                np.testing.assert_allclose(image.numpy(), expected, atol=1e-4)


def test_train_val_partition_per_class(family):
    data, truth, known = family["data"], family["truth"], family["known"]
    fraction = SHAPES[family["dataset"]][3]
    train, val = np.asarray(data.train_idx), np.asarray(data.val_idx)
    assert np.array_equal(np.asarray(data.train_dataset().indices), train)
    assert np.array_equal(np.asarray(data.val_dataset().indices), val)
    assert not set(train.tolist()) & set(val.tolist())
    assert len(set(train.tolist())) == len(train) and len(set(val.tolist())) == len(val)
    all_known = np.flatnonzero(np.isin(truth.train_labels, known))
    assert sorted(train.tolist() + val.tolist()) == all_known.tolist()
    for c in known:
        n = int((truth.train_labels == c).sum())
        n_val = int((truth.train_labels[val] == c).sum())
        assert n_val >= 1 and abs(n_val - fraction * n) <= 0.5 + 1e-9, (c, n, n_val)


def test_known_test_set_is_test_images_of_known_classes(family):
    data, truth = family["data"], family["truth"]
    ds = data.known_test_dataset()
    expected = np.flatnonzero(np.isin(truth.test_labels, family["known"]))
    assert len(expected) > 0 and sorted(np.asarray(ds.indices).tolist()) == expected.tolist()


def test_unknown_test_set_is_test_images_of_unknown_classes(family):
    data, truth = family["data"], family["truth"]
    ds = data.unknown_test_dataset()
    expected = np.flatnonzero(np.isin(truth.unknown_labels, family["unknown"]))
    assert len(expected) > 0 and sorted(np.asarray(ds.indices).tolist()) == expected.tolist()


def test_cifar_plus_unknowns_are_the_cifar100_test_images(cifar_root):
    data = OpenSetData("CIFAR+10", 0, data_root=cifar_root, download=False)
    known, unknown = read_split("CIFAR+10", 0)
    assert known == [0, 1, 8, 9] and len(unknown) == 10
    images, fine = read_cifar(os.path.join(cifar_root, "cifar-100-python"), ["test"], "fine_labels")
    want = np.flatnonzero(np.isin(fine, unknown))
    assert len(want) == 10 * 5  # write_cifar100: 5 test images per class
    ds = data.unknown_test_dataset()
    assert len(ds) == len(want)
    got = sorted(np.asarray(ds.indices).tolist())
    assert got == want.tolist()
    for k, i in enumerate(ds.indices):  # the very pixels of the CIFAR-100 *test* file
        pil, _ = ds.base[int(i)]
        assert np.array_equal(np.asarray(pil), images[int(i)])
    # known classes come from CIFAR-10: its test images of classes 0, 1, 8, 9
    _, te_y = read_cifar(os.path.join(cifar_root, "cifar-10-batches-py"), ["test_batch"], "labels")
    assert sorted(np.asarray(data.known_test_dataset().indices).tolist()) == \
        np.flatnonzero(np.isin(te_y, known)).tolist()


def test_svhn_label_10_is_digit_0(svhn_root):
    _, y_file, y = read_svhn(os.path.join(svhn_root, "svhn", "train_32x32.mat"))
    assert (y_file == 10).any() and not (y_file == 0).any()  # the file stores digit 0 as 10
    data = OpenSetData("SVHN", 0, data_root=svhn_root, download=False)
    assert 0 in data.known
    zeros = set(np.flatnonzero(y_file == 10).tolist())
    train = data.train_dataset()
    labels = torch.as_tensor(train.labels).tolist()
    picked = [lab for i, lab in zip(train.indices, labels) if int(i) in zeros]
    assert picked and set(picked) == {0}  # digit 0 is the smallest known id: label 0


def test_tinyimagenet_images_and_class_folders(tiny_root):
    data = OpenSetData("TinyImageNet", 0, data_root=tiny_root, download=False)
    assert len(data.train_set) == 200 * 10
    top = os.path.join(tiny_root, "tiny-imagenet-200")
    with open(os.path.join(top, "wnids.txt")) as f:
        wnids = sorted(f.read().split())
    assert data.train_set.classes == wnids  # class id = position of the wnid in sorted order
    val = data._test_set("TinyImageNet")
    assert val.classes == wnids and len(val) == 200 * 2
    image, label = data.known_test_dataset()[0]
    assert tuple(image.shape) == (3, 64, 64)


def test_test_split_is_opened_once_for_known_and_unknown(mnist_root, monkeypatch):
    import datasets.trial as trial_module

    calls = []
    real = trial_module.open_source

    def counting(source, root, train, download=True):
        calls.append((source, train))
        return real(source, root, train, download)

    monkeypatch.setattr(trial_module, "open_source", counting)
    data = OpenSetData("MNIST", 0, data_root=mnist_root, download=False)
    known, unknown = data.known_test_dataset(), data.unknown_test_dataset()
    assert calls.count(("MNIST", False)) == 1
    assert known.base is unknown.base and len(known) + len(unknown) == len(known.base)


def test_open_set_data_of_a_folder(folder):
    cfg = load_config("ImageFolder")
    data = OpenSetData("ImageFolder", 0, str(folder / "pets"), config=cfg, split_file=str(folder / "split.json"))
    assert data.cfg["num_known_classes"] == 3 and data.class_names == ["cat", "dog", "owl"]  # ascending id
    assert len(data.train_idx) + len(data.val_idx) == 24  # fox's training images are not used
    image, label = data.train_dataset()[0]
    assert tuple(image.shape) == (3, 32, 32) and 0 <= int(label) < 3
    known, unknown = data.known_test_dataset(), data.unknown_test_dataset()
    assert len(known) == 9 and len(unknown) == 5
    assert sorted(int(known[i][1]) for i in range(9)) == [0] * 3 + [1] * 3 + [2] * 3
    assert {int(unknown[i][1]) for i in range(5)} == {3}
    assert data.describe([3, 0]) == "'owl', 'cat'"  # split files of image folders list names
    # normalization computed from the known classes' training images (every image 32 x 32 RGB)
    pixels = torch.stack([T.ToTensor()(data.train_set[int(i)][0]) for i in data.train_idx])
    np.testing.assert_allclose(data.mean, pixels.mean((0, 2, 3)).numpy(), atol=1e-3)
    grey = OpenSetData("ImageFolder", 0, str(folder / "pets"), split_file=str(folder / "split.json"),
                       config=apply_overrides(cfg, "ImageFolder", im_size=16, im_channels=1))
    assert tuple(grey.val_dataset()[0][0].shape) == (1, 16, 16) and len(grey.mean) == 1


def test_two_image_folders_keep_separate_caches(folder, tmp_path, private_cache):
    """Each folder's train/validation partition and normalization live in a cache folder of its own,
    keyed by its real path; the shared <cache>/ImageFolder/ holds no cache file of its own."""
    from fakedata import PETS_TRAIN, write_image_folder

    other = write_image_folder(str(tmp_path / "pets"), PETS_TRAIN, {"cat": 1, "fox": 1}, seed=5)
    split = str(folder / "split.json")
    folder_data = functools.partial(OpenSetData, "ImageFolder", 0, config=load_config("ImageFolder"),
                                    split_file=split, cache_dir=str(private_cache))
    first, second = folder_data(str(folder / "pets")), folder_data(other)
    shared = private_cache / "ImageFolder"
    assert first.cache_dir != second.cache_dir
    assert {os.path.dirname(first.cache_dir), os.path.dirname(second.cache_dir)} == {str(shared)}
    for data in (first, second):
        assert os.path.isfile(os.path.join(data.cache_dir, "trainval_idxs.json"))
        assert os.path.isfile(os.path.join(data.cache_dir, "normalization", "0.json"))
    assert not (shared / "trainval_idxs.json").exists() and not (shared / "normalization").exists()
    assert first.mean != second.mean  # other pixels: the other folder's cache did not answer
    again = folder_data(os.path.join(str(folder), ".", "pets"))  # the same folder by another spelling: the same cache
    assert again.cache_dir == first.cache_dir and again.mean == first.mean


def test_cifar_plus_classes_are_named_by_their_own_source(cifar_root):
    """CIFAR+N: known names from CIFAR-10's meta file, unknown ones from CIFAR-100's (their ids overlap)."""
    data = OpenSetData("CIFAR+10", 0, data_root=cifar_root, download=False)
    known, unknown = read_split("CIFAR+10", 0)
    cifar10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert data.class_names == [cifar10[c] for c in sorted(known)]
    known_test, unknown_test = data.known_test_dataset(), data.unknown_test_dataset()
    classes = data.trial_classes(known_test, unknown_test)
    assert classes.known == sorted(known) and classes.unknown == unknown
    assert classes.unknown_names == [f"fine_{c:02d}" for c in unknown]  # write_cifar100's names
    _, fine = read_cifar(os.path.join(cifar_root, "cifar-100-python"), ["test"], "fine_labels")
    _, te_y = read_cifar(os.path.join(cifar_root, "cifar-10-batches-py"), ["test_batch"], "labels")
    assert classes.unknown_image_classes.tolist() == [fine[i] for i in unknown_test.indices]
    assert classes.known_image_classes.tolist() == [te_y[i] for i in known_test.indices]
    assert classes.image_names("unknown")[:3] == [f"fine_{fine[i]:02d}" for i in unknown_test.indices[:3]]
    assert classes.known_paths is None and classes.unknown_paths is None


def test_class_names_in_messages_and_lists(tmp_path):
    """A known class without training images is named ('1 - one', MNIST's own name) with its id
    as the split file has it; class_names follow the labels (ascending id), unknown_names the split file."""
    import json

    from fakedata import write_training_labels

    from core.errors import UserError

    root = write_training_labels("MNIST", str(tmp_path / "data"), np.repeat([0, 2, 3, 4, 5, 6, 7, 8, 9], 3))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"Known": [2, 1, 3, 4, 5, 6], "Unknown": [0, 9]}))
    with pytest.raises(UserError) as err:
        OpenSetData("MNIST", 0, root, download=False, split_file=str(split))
    assert "known classes '1 - one' (id 1) of MNIST trial 0 have no training image" in str(err.value)
    split.write_text(json.dumps({"Known": [2, 8, 3, 4, 5, 6], "Unknown": [0, 9]}))
    data = OpenSetData("MNIST", 0, root, download=False, split_file=str(split))
    assert data.class_names == ["2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "8 - eight"]
    assert data.unknown_names == ["0 - zero", "9 - nine"]
    # remapped label 4 is the fifth known class in ascending id: 6 (8 is the last)
    assert data.describe_labels([4, 5]) == "'6 - six' (id 6), '8 - eight' (id 8)"
    assert OpenSetData("Digits", 0).describe([1, 2]) == "1, 2"  # a class named by its id: the id alone
