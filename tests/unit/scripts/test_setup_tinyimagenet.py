"""scripts/setup_tinyimagenet.py on a tiny synthetic zip (no network): the layout it makes, its
one-line errors, and every check done before the first file moves."""
import os
import shutil
import zipfile

import pytest
from fakedata import make_tinyimagenet_zip, write_tinyimagenet
from rawfiles import check_ready

from scripts.setup_tinyimagenet import SetupError, main, sort_val_images


CLASSES, N_TRAIN, N_VAL = 5, 3, 2


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("zip") / "tiny-imagenet-200.zip"
    return str(make_tinyimagenet_zip(str(path), num_classes=CLASSES, n_train=N_TRAIN, n_val=N_VAL))


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_setup_from_zip_then_noop(tmp_path, zip_path, capsys):
    data = str(tmp_path / "data")
    assert main(["--data_root", data, "--zip", zip_path]) == 0
    top = os.path.join(data, "tiny-imagenet-200")
    check_ready(top, CLASSES, N_TRAIN, N_VAL)
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
    check_ready(str(data / "tiny-imagenet-200"), CLASSES, N_TRAIN, N_VAL)
    assert not (data / "tiny-imagenet-200.zip").exists()


def test_download_keep_zip(tmp_path, zip_path):
    # a file:// URL exercises the real download path offline
    data = tmp_path / "data"
    url = "file://" + os.path.abspath(zip_path)
    assert main(["--data_root", str(data), "--url", url, "--keep_zip"]) == 0
    check_ready(str(data / "tiny-imagenet-200"), CLASSES, N_TRAIN, N_VAL)
    assert (data / "tiny-imagenet-200.zip").is_file()
    assert sorted(os.listdir(data)) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]  # no temp file left
    (tmp_path / "plain").touch()  # the kept zip has a plain file's permissions, not mkstemp's 0600
    assert os.stat(data / "tiny-imagenet-200.zip").st_mode == os.stat(tmp_path / "plain").st_mode


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
    check_ready(top, CLASSES, N_TRAIN, N_VAL)


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


# ------------------------------------------------------------------ everything checked before a file moves


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
    assert main(["--data_root", str(tmp_path / "data"), "--zip", zip_path]) == 2
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
