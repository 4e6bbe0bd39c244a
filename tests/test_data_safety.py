"""Data sets, their caches and their input files under a careless user and a hostile machine:
the normalization cache checked when read, image-folder caches keyed on the images' bytes,
each image read once whatever links point where, warnings for test classes without images,
setup_tinyimagenet.py checking everything before it moves a file, every malformed split file
refused in one line, and damaged data files refused before training instead of mid-epoch."""
import gzip
import json
import os
import shutil
import struct
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import eval_cacOpenset
import train_cacOpenset
from conftest import assert_one_line_error, ok, run_main
from datasets.folder import FolderData
from datasets.loaders import OpenSetData, load_config
from datasets.setup_tinyimagenet import SetupError, main as setup_main, sort_val_images
from datasets.sources import open_source
from datasets.splits import cached_normalization, load_class_split
from core.errors import UserError
from fakedata import write_image_folder, write_mnist, write_svhn, write_tinyimagenet


def stderr_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def one_line(error):
    """A UserError's message is one line, of a readable length."""
    message = str(error)
    assert "\n" not in message and len(message) < 600, message
    return message


# ------------------------------------------------------------------ the normalization cache
BAD_CACHES = {
    "null": lambda good: None,
    "empty list": lambda good: [],
    "string": lambda good: "mean",
    "string mean": lambda good: {**good, "mean": "0.5"},
    "missing keys": lambda good: {"mean": good["mean"], "std": good["std"]},
    "std 0": lambda good: {**good, "std": [0.0]},
    "negative std": lambda good: {**good, "std": [-0.2]},
    "bool std": lambda good: {**good, "std": [True]},
    "3-channel mean for grey data": lambda good: {**good, "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.3, 0.3]},
    "huge integer mean": lambda good: {**good, "mean": [10 ** 400]},
    "NaN": "NaN",  # written as text: json.dumps would not write it
    "truncated": "{\"mean\": [0.",
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_invalid_normalization_cache_is_rebuilt_with_one_warning(case, isolated_datasets_dir, capsys):
    good_data = OpenSetData("Digits", 0, download=False)
    cache = isolated_datasets_dir / "Digits" / "normalization" / "0.json"
    good = json.loads(cache.read_text())
    capsys.readouterr()
    bad = BAD_CACHES[case]
    if isinstance(bad, bytes):
        cache.write_bytes(bad)
    elif isinstance(bad, str):
        cache.write_text(json.dumps(good).replace(str(good["mean"][0]), bad))
    else:
        cache.write_text(json.dumps(bad(good)))
    data = OpenSetData("Digits", 0, download=False)
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "normalization cache" in lines[0], lines
    assert data.mean == good_data.mean and data.std == good_data.std  # recomputed
    assert json.loads(cache.read_text()) == good  # and the cache rewritten whole


def test_stale_normalization_cache_is_rebuilt_quietly_and_a_valid_one_used(isolated_datasets_dir, capsys):
    first = OpenSetData("Digits", 0, download=False)
    cache = isolated_datasets_dir / "Digits" / "normalization" / "0.json"
    good = json.loads(cache.read_text())
    cache.write_text(json.dumps({**good, "mean": [0.25]}))  # valid: used as it is
    assert OpenSetData("Digits", 0, download=False).mean == [0.25]
    cache.write_text(json.dumps({**good, "im_size": 64, "mean": [0.25]}))  # other data: recomputed
    capsys.readouterr()
    assert OpenSetData("Digits", 0, download=False).mean == first.mean
    assert stderr_lines(capsys) == []


def test_a_computed_std_of_zero_is_refused(isolated_datasets_dir):
    labels = np.zeros(10, dtype=np.int64)
    with pytest.raises(UserError, match="std is not above 0") as err:
        cached_normalization("Digits", 0, [0], labels, 8, lambda: ([0.5], [0.0]), channels=1)
    one_line(err.value)
    assert not (isolated_datasets_dir / "Digits" / "normalization" / "0.json").exists()


# ------------------------------------------------------------------ image folders: keyed on content
def write_bmp_folder(root, seed):
    """A tiny folder of uncompressed BMP images: an image's file size depends only on its
    width, height and mode, so other pixels give a file of the same name and the same size."""
    rng = np.random.default_rng(seed)
    counts = {"train": {"a": 6, "b": 6, "c": 6}, "test": {"a": 2, "b": 2, "c": 2, "u": 3}}
    for part, classes in counts.items():
        for k, (name, n) in enumerate(sorted(classes.items())):
            os.makedirs(os.path.join(root, part, name), exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
                pixels[:, 4 * k:4 * k + 4] = 255  # a bright stripe per class
                Image.fromarray(pixels).save(os.path.join(root, part, name, f"{i}.bmp"))
    return root


def replace_training_images_keeping_name_size_and_time(root):
    """Other pixels in every training image: same names, same sizes, same modification times."""
    for folder, _, names in os.walk(os.path.join(root, "train")):
        for name in names:
            path = os.path.join(folder, name)
            before = os.stat(path)
            with Image.open(path) as image:
                pixels = 255 - np.asarray(image)
            Image.fromarray(np.ascontiguousarray(pixels[::-1])).save(path)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.path.getsize(path) == before.st_size


def test_fingerprint_changes_with_any_byte_of_a_training_image(tmp_path):
    root = write_bmp_folder(str(tmp_path / "imgs"), seed=0)
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b"], "Unknown": ["u"]}))
    folder = FolderData(root, str(tmp_path / "split.json"), 16, 3)
    before = folder.fingerprint(folder.open(train=True))
    assert folder.fingerprint(folder.open(train=True)) == before
    replace_training_images_keeping_name_size_and_time(root)
    assert folder.fingerprint(folder.open(train=True)) != before


def test_replaced_training_images_recompute_normalization_and_anchor_means(tmp_path, isolated_datasets_dir):
    """Same names, same sizes, same times, other pixels: the normalization cache and the anchor
    means stored in the checkpoint are both made again (they were reused before)."""
    root = write_bmp_folder(str(tmp_path / "imgs"), seed=1)
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b", "c"], "Unknown": ["u"]}))
    cwd = str(tmp_path / "work")
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", root, "--split_file", str(tmp_path / "split.json"),
            "--workers", "0", "--im_size", "16"]
    torch.set_num_threads(1)
    ok(run_main(train_cacOpenset.main, [*data, "--trial", "0", "--name", "m", "--epochs", "1"], cwd))
    evaluate = [*data, "--num_trials", "1", "--name", "m"]
    assert "anchor means computed" in ok(run_main(eval_cacOpenset.main, evaluate, cwd)).stdout
    cache = isolated_datasets_dir / "ImageFolder" / "normalization" / "0.json"
    first_cache = json.loads(cache.read_text())
    ckpt_path = os.path.join(cwd, "networks", "weights", "ImageFolder", "ImageFolder_0_mCACclassifierAnchorLoss.pth")
    first_key = torch.load(ckpt_path, weights_only=True)["calibration"]["anchor_means"]["key"]
    assert "anchor means read from the checkpoint" in ok(run_main(eval_cacOpenset.main, evaluate, cwd)).stdout

    replace_training_images_keeping_name_size_and_time(root)
    assert "anchor means computed" in ok(run_main(eval_cacOpenset.main, evaluate, cwd)).stdout
    second_cache = json.loads(cache.read_text())
    assert second_cache["Source"] != first_cache["Source"] and second_cache["mean"] != first_cache["mean"]
    second_key = torch.load(ckpt_path, weights_only=True)["calibration"]["anchor_means"]["key"]
    assert second_key["source"] != first_key["source"] and second_key["source"] is not None


# ------------------------------------------------------------------ image folders: each file once
def test_links_read_each_real_folder_and_file_once(tmp_path, capsys):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"cat": 4, "dog": 3}, {"cat": 1, "fox": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["cat", "dog"], "Unknown": ["fox"]}))
    folder = FolderData(str(root), str(tmp_path / "split.json"), 16, 3)
    plain = folder.open(train=True).samples
    capsys.readouterr()
    os.symlink("..", root / "train" / "cat" / "loop")  # a class folder linking to its parent
    os.symlink(".", root / "train" / "dog" / "self")
    os.symlink("../dog", root / "train" / "cat" / "dogs")  # another class's folder
    os.symlink("0.png", root / "train" / "cat" / "again.png")  # the same file twice
    linked = folder.open(train=True).samples
    assert linked == plain  # each image once, under its own class
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "4 folder(s) or file(s)" in lines[0], lines


def test_an_image_name_that_is_not_a_plain_file_is_skipped(tmp_path, capsys):
    """A named pipe called x.png would block reading forever; it is skipped with a warning. (A
    writer is attached, so that without the skip the read ends with an error instead of a hang.)"""
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"cat": 3, "dog": 3}, {"cat": 1, "fox": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["cat", "dog"], "Unknown": ["fox"]}))
    fifo = root / "train" / "cat" / "pipe.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    try:
        dataset = FolderData(str(root), str(tmp_path / "split.json"), 16, 3).open(train=True)
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # releases the writer
        writer.join(5)
    assert len(dataset.samples) == 6
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "not plain files" in lines[0] and "pipe.png" in lines[0], lines


# ------------------------------------------------------------------ image folders: test classes
def test_test_classes_without_images_are_named_in_one_warning_each(tmp_path, isolated_datasets_dir, capsys):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 4, "b": 4, "c": 4}, {"a": 2, "c": 2, "u1": 2})
    os.makedirs(root / "test" / "u2")  # an empty unknown class folder
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b", "c"], "Unknown": ["u1", "u2", "u3"]}))
    capsys.readouterr()
    data = OpenSetData("ImageFolder", 0, str(root), config=load_config("ImageFolder"),
                       split_file=str(tmp_path / "split.json"))
    at_split = stderr_lines(capsys)  # u3 has no folder at all
    assert len(at_split) == 1 and "'u3'" in at_split[0] and at_split[0].startswith("warning: "), at_split
    assert len(data.known_test_dataset()) == 4 and len(data.unknown_test_dataset()) == 2
    at_test = stderr_lines(capsys)
    assert len(at_test) == 2 and all(line.startswith("warning: ") for line in at_test), at_test
    assert "'b'" in at_test[0] and "does not exist" in at_test[0]
    assert "'u2'" in at_test[1] and "no image file" in at_test[1]


@pytest.mark.parametrize("kind", ["known", "unknown"])
def test_no_test_image_for_any_known_or_unknown_class_is_one_error(kind, tmp_path, capsys):
    root = tmp_path / "imgs"
    test = {"u": 2} if kind == "known" else {"a": 1, "b": 1}
    write_image_folder(str(root), {"a": 3, "b": 3}, test)
    os.makedirs(root / "test" / "u", exist_ok=True)  # unknown: an empty folder
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b"], "Unknown": ["u"]}))
    folder = FolderData(str(root), str(tmp_path / "split.json"), 16, 3)
    with pytest.raises(UserError, match=f"no {kind} class has a test image") as err:
        folder.open(train=False)
    one_line(err.value)
    assert stderr_lines(capsys) == []  # the error alone, no warnings before it


def test_known_class_folder_without_training_images_is_named(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 4, "b": 4}, {"a": 1, "u": 1})
    os.makedirs(root / "train" / "c")
    (root / "train" / "c" / "notes.txt").write_text("not an image")
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b", "c"], "Unknown": ["u"]}))
    folder = FolderData(str(root), str(tmp_path / "split.json"), 16, 3)
    with pytest.raises(UserError, match=r"\['c'\]") as err:
        folder.open(train=True)
    assert "no image file" in one_line(err.value)


def test_image_over_the_decompression_limit_is_one_line(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 3, "b": 3}, {"a": 1, "u": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b"], "Unknown": ["u"]}))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every image here is over twice this
    folder = FolderData(str(root), str(tmp_path / "split.json"), 16, 3)
    with pytest.raises(UserError, match="safety limit") as err:
        folder.open(train=True)
    assert os.path.join("train", "a") in one_line(err.value)


# ------------------------------------------------------------------ setup_tinyimagenet.py
def _annotations(top):
    return os.path.join(top, "val", "val_annotations.txt")


def _edit_annotations(top, edit):
    with open(_annotations(top)) as f:
        lines = f.read().splitlines()
    with open(_annotations(top), "w") as f:
        f.write("\n".join(edit(lines)) + "\n")


def _first_wnid(top):
    return open(_annotations(top)).readline().split("\t")[1]


SETUP_FAULTS = {
    "same line twice": (lambda top: _edit_annotations(top, lambda lines: lines + [lines[0]]), "listed again"),
    "file with two classes": (lambda top: _edit_annotations(
        top, lambda lines: lines + [lines[0].split("\t")[0] + "\t" + lines[-1].split("\t")[1]]), "listed again"),
    "destination exists": (lambda top: (os.makedirs(os.path.join(top, "val", _first_wnid(top))), open(os.path.join(
        top, "val", _first_wnid(top), "val_0.JPEG"), "w").close()), "exists already"),
    "class named images": (lambda top: (os.remove(os.path.join(top, "wnids.txt")), _edit_annotations(
        top, lambda lines: [lines[0].split("\t")[0] + "\timages"] + lines[1:])), "clashes"),
    "class folder is a file": (lambda top: open(os.path.join(top, "val", _first_wnid(top)), "w").close(), "clashes"),
    "path outside val": (lambda top: _edit_annotations(
        top, lambda lines: ["../../x.JPEG\t" + lines[0].split("\t")[1]] + lines), "plain"),
    "file not listed": (lambda top: _edit_annotations(top, lambda lines: lines[1:]), "not in val_annotations"),
    "not UTF-8": (lambda top: open(_annotations(top), "ab").write(b"\xff\xfe bad\n"), "UTF-8"),
}


@pytest.mark.parametrize("case", list(SETUP_FAULTS))
def test_setup_checks_everything_before_moving_a_file(case, tmp_path):
    top = write_tinyimagenet(str(tmp_path), num_classes=4, n_train=1, n_val=2)
    fault, fragment = SETUP_FAULTS[case]
    fault(top)
    images = os.path.join(top, "val", "images")
    before = sorted(os.listdir(images)), sorted(os.listdir(os.path.join(top, "val")))
    with pytest.raises(SetupError, match=fragment):
        sort_val_images(top)
    assert (sorted(os.listdir(images)), sorted(os.listdir(os.path.join(top, "val")))) == before  # nothing moved


def test_setup_with_a_duplicate_line_is_one_line_exit_2(tmp_path, capsys):
    raw = tmp_path / "raw"
    top = write_tinyimagenet(str(raw), num_classes=4, n_train=1, n_val=2)
    _edit_annotations(top, lambda lines: lines + [lines[2]])
    zip_path = shutil.make_archive(str(tmp_path / "tiny"), "zip", str(raw), "tiny-imagenet-200")
    assert setup_main(["--data_root", str(tmp_path / "data"), "--zip", zip_path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "listed again" in err and "Traceback" not in err
    assert len(os.listdir(tmp_path / "data" / "tiny-imagenet-200" / "val" / "images")) == 8


def test_setup_puts_moved_files_back_when_a_move_fails(tmp_path, monkeypatch):
    top = write_tinyimagenet(str(tmp_path), num_classes=4, n_train=1, n_val=2)
    before = sorted(os.listdir(os.path.join(top, "val")))
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        sort_val_images(top)
    assert sorted(os.listdir(os.path.join(top, "val"))) == before
    assert len(os.listdir(os.path.join(top, "val", "images"))) == 8


# ------------------------------------------------------------------ split files, however malformed
MALFORMED = {
    "nested 200,000 deep": ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    "5,000-digit number": ('{"Known": [' + "9" * 5000 + '], "Unknown": [1]}', "integer too long"),
    "NaN": ('{"Known": [NaN], "Unknown": [1]}', "NaN"),
    "not UTF-8": (b'{"Known": ["\xff"], "Unknown": [1]}', "not UTF-8"),
    "empty file": ("", "not valid JSON"),
    "a folder in the way": (None, "is a folder"),
    "floats as ids": ('{"Known": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "Unknown": [6]}', "integer class ids"),
    "bools as ids": ('{"Known": [true, false, 2, 3, 4, 5], "Unknown": [6]}', "integer class ids"),
    "4,000-digit id": ('{"Known": [' + "9" * 4000 + ', 1, 2, 3, 4, 5], "Unknown": [6]}', "outside 0..9"),
    "list, not object": ("[1, 2]", "'Known' and 'Unknown'"),
}


def _write_split(path, content):
    if content is None:
        os.makedirs(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_split_file_is_one_line(case, tmp_path, isolated_datasets_dir):
    content, fragment = MALFORMED[case]
    given = tmp_path / "split.json"
    _write_split(given, content)
    with pytest.raises(UserError) as err:
        load_class_split("Digits", 0, 6, 10, path=str(given))
    assert fragment in one_line(err.value) and str(given) in str(err.value)
    # the trial's own file in the data set's folder, read the same way
    own = isolated_datasets_dir / "Digits" / "class_splits" / "77.json"
    _write_split(own, content)
    with pytest.raises(UserError) as err:
        load_class_split("Digits", 77, 6, 10)
    assert fragment in one_line(err.value)


@pytest.mark.parametrize("case", ["nested 200,000 deep", "5,000-digit number", "not UTF-8", "a folder in the way"])
def test_malformed_image_folder_split_file_is_one_line_through_the_script(case, tmp_path, isolated_datasets_dir):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 2, "b": 2}, {"a": 1, "u": 1})
    content, fragment = MALFORMED[case]
    _write_split(tmp_path / "split.json", content)
    argv = ["--dataset", "ImageFolder", "--data_root", str(root), "--split_file", str(tmp_path / "split.json"),
            "--trial", "0", "--epochs", "1", "--workers", "0"]
    cwd = tmp_path / "work"
    cwd.mkdir()
    assert_one_line_error(run_main(train_cacOpenset.main, argv, str(cwd)), fragment, "split file")
    assert os.listdir(cwd) == []


# ------------------------------------------------------------------ damaged or unreadable data files
def _rewrite_idx_labels(root, labels):
    path = os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte.gz")
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes())
    raw = path[:-3]
    if os.path.exists(raw):
        os.remove(raw)


@pytest.mark.parametrize("labels,fragment", [(np.arange(150) % 10, "150 labels"),
                                             (np.r_[np.arange(199) % 10, 12], "label 12")],
                         ids=["more labels than images", "label out of range"])
def test_mnist_labels_that_do_not_fit_the_images_are_one_line(labels, fragment, tmp_path):
    write_mnist(str(tmp_path), n_train=20, n_test=5)  # 200 training images
    _rewrite_idx_labels(str(tmp_path), labels)
    with pytest.raises(UserError, match=fragment) as err:
        open_source("MNIST", str(tmp_path), train=True, download=False)
    one_line(err.value)


@pytest.mark.parametrize("source,module", [("SVHN", "scipy.io"), ("Digits", "sklearn.datasets")])
def test_a_missing_module_is_named_not_called_corrupt_data(source, module, tmp_path, monkeypatch):
    if source == "SVHN":
        write_svhn(str(tmp_path / "svhn"), n_train=2, n_test=2)
    monkeypatch.setitem(sys.modules, module, None)  # `import scipy.io` now raises ImportError
    with pytest.raises(UserError) as err:
        open_source(source, str(tmp_path), train=True, download=False)
    message = one_line(err.value)
    assert module in message and "corrupt" not in message


def test_tinyimagenet_with_unsorted_or_mismatched_val_folders_is_refused(tmp_path):
    top = write_tinyimagenet(str(tmp_path), num_classes=4, n_train=1, n_val=2)
    with pytest.raises(UserError, match="setup_tinyimagenet") as err:  # val/images not sorted yet
        open_source("TinyImageNet", str(tmp_path), train=False, download=False)
    one_line(err.value)
    sort_val_images(top)
    assert len(open_source("TinyImageNet", str(tmp_path), train=False, download=False)) == 8
    missing = sorted(os.listdir(os.path.join(top, "val")))[0]
    shutil.rmtree(os.path.join(top, "val", missing))  # class ids of val would shift by one
    with pytest.raises(UserError, match=missing) as err:
        open_source("TinyImageNet", str(tmp_path), train=False, download=False)
    one_line(err.value)
