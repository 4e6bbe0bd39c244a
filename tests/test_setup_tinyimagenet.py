"""Tests for datasets/setup_tinyimagenet.py on a tiny synthetic zip (no network)."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from torchvision.datasets import ImageFolder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "tests")):  # no conftest guaranteed yet
    if p not in sys.path:
        sys.path.insert(0, p)
from datasets.setup_tinyimagenet import SetupError, main, sort_val_images  # noqa: E402
from fakedata import make_tinyimagenet_zip, write_tinyimagenet  # noqa: E402

CLASSES, N_TRAIN, N_VAL = 5, 3, 2


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("zip") / "tiny-imagenet-200.zip"
    return str(make_tinyimagenet_zip(str(path), num_classes=CLASSES, n_train=N_TRAIN, n_val=N_VAL))


def read_annotations(top):
    with open(os.path.join(top, "val", "val_annotations.txt")) as f:
        return [line.split("\t")[:2] for line in f.read().splitlines()]


def check_ready(top):
    """ImageFolder sees identical classes in train and val, every val image under its annotated wnid."""
    train = ImageFolder(os.path.join(top, "train"))
    val = ImageFolder(os.path.join(top, "val"))
    wnids = open(os.path.join(top, "wnids.txt")).read().split()
    assert train.classes == val.classes == sorted(wnids)
    assert len(train) == CLASSES * N_TRAIN and len(val) == CLASSES * N_VAL
    assert not os.path.exists(os.path.join(top, "val", "images"))
    for name, wnid in read_annotations(top):
        assert os.path.isfile(os.path.join(top, "val", wnid, name))
    for path, label in val.samples:
        assert os.path.basename(os.path.dirname(path)) == val.classes[label]


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_setup_from_zip_then_noop(tmp_path, zip_path, capsys):
    data = str(tmp_path / "data")
    assert main(["--data_root", data, "--zip", zip_path]) == 0
    top = os.path.join(data, "tiny-imagenet-200")
    check_ready(top)
    assert os.path.isfile(zip_path)  # a zip given by --zip is the user's: kept
    assert "ready" in capsys.readouterr().out
    # second run: nothing to do, so it needs no zip at all
    stamp = os.stat(os.path.join(top, "val")).st_mtime_ns
    assert main(["--data_root", data, "--zip", str(tmp_path / "missing.zip")]) == 0
    assert "ready" in capsys.readouterr().out
    assert os.stat(os.path.join(top, "val")).st_mtime_ns == stamp


def test_zip_in_data_root_is_used_and_removed(tmp_path, zip_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(zip_path, data / "tiny-imagenet-200.zip")
    assert main(["--data_root", str(data), "--url", "file:///nonexistent/never-used.zip"]) == 0
    check_ready(str(data / "tiny-imagenet-200"))
    assert not (data / "tiny-imagenet-200.zip").exists()


def test_download_keep_zip(tmp_path, zip_path):
    # a file:// URL exercises the real download path offline
    data = tmp_path / "data"
    url = "file://" + os.path.abspath(zip_path)
    assert main(["--data_root", str(data), "--url", url, "--keep_zip"]) == 0
    check_ready(str(data / "tiny-imagenet-200"))
    assert (data / "tiny-imagenet-200.zip").is_file()
    assert sorted(os.listdir(data)) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]  # no temp file left


def test_download_failure(tmp_path, capsys):
    url = "file:///nonexistent/tiny-imagenet-200.zip"
    assert main(["--data_root", str(tmp_path), "--url", url]) == 2
    err = one_line_error(capsys)
    assert url in err and "--zip" in err
    assert os.listdir(tmp_path) == []  # no partial download left behind


def test_corrupt_zip(tmp_path, zip_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file" * 100)
    assert main(["--data_root", str(tmp_path / "data"), "--zip", str(bad)]) == 2
    assert "not a valid zip" in one_line_error(capsys)
    # a truncated download is corrupt too
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(open(zip_path, "rb").read()[: os.path.getsize(zip_path) // 2])
    assert main(["--data_root", str(tmp_path / "data"), "--zip", str(truncated)]) == 2
    one_line_error(capsys)
    # so is one with damaged contents but an intact directory (bad CRC / deflate data)
    damaged = bytearray(open(zip_path, "rb").read())
    mid = len(damaged) // 2
    damaged[mid:mid + 64] = bytes(64)
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    assert main(["--data_root", str(tmp_path / "data"), "--zip", str(tmp_path / "damaged.zip")]) == 2
    one_line_error(capsys)


def test_zip_without_top_folder(tmp_path, capsys):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something-else/readme.txt", "hello")
    assert main(["--data_root", str(tmp_path / "data"), "--zip", str(other)]) == 2
    assert "tiny-imagenet-200/" in one_line_error(capsys)


def test_missing_zip_argument(tmp_path, capsys):
    assert main(["--data_root", str(tmp_path), "--zip", str(tmp_path / "nope.zip")]) == 2
    assert "nope.zip" in one_line_error(capsys)


def test_sort_val_images_alone(tmp_path):
    top = write_tinyimagenet(str(tmp_path), num_classes=CLASSES, n_train=N_TRAIN, n_val=N_VAL)
    assert sort_val_images(top) == CLASSES * N_VAL
    check_ready(top)


def test_annotation_naming_missing_file(tmp_path, capsys):
    top = write_tinyimagenet(str(tmp_path / "raw"), num_classes=CLASSES, n_train=1, n_val=N_VAL)
    os.remove(os.path.join(top, "val", "images", "val_3.JPEG"))
    with pytest.raises(SetupError, match="val_3.JPEG"):
        sort_val_images(top)
    assert len(os.listdir(os.path.join(top, "val", "images"))) == CLASSES * N_VAL - 1  # nothing moved
    # and through main, from a zip with that hole in it
    zpath = str(tmp_path / "holey.zip")
    shutil.make_archive(zpath[:-4], "zip", str(tmp_path / "raw"), "tiny-imagenet-200")
    assert main(["--data_root", str(tmp_path / "data"), "--zip", zpath]) == 2
    assert "val_3.JPEG" in one_line_error(capsys)


def test_as_script(tmp_path, zip_path):
    data = str(tmp_path / "data")
    cmd = [sys.executable, "datasets/setup_tinyimagenet.py", "--data_root", data, "--zip", zip_path]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    check_ready(os.path.join(data, "tiny-imagenet-200"))
    bad = subprocess.run(cmd[:-1] + [os.path.join(data, "nope.zip"), "--data_root", str(tmp_path / "d2")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    helptext = subprocess.run([sys.executable, "datasets/setup_tinyimagenet.py", "--help"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "datasets/data" in helptext and "--keep_zip" in helptext
