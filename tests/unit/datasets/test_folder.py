"""Users' own image folders (datasets/folder.py): the class list, the split file of folder
names, the content fingerprint that keys the caches, warnings and errors for missing images."""
import json
import os

import pytest
from conftest import one_line, captured_stderr_lines
from fakedata import replace_training_images_keeping_name_size_and_time, write_bmp_folder, write_image_folder
from PIL import Image

from core.errors import UserError
from datasets.config import load_config
from datasets.folder import FolderData
from datasets.trial import OpenSetData


def test_classes_are_the_union_of_train_and_test_folders(folder):
    data = FolderData(str(folder / "pets"), str(folder / "split.json"), 32, 3)
    assert data.classes == ["cat", "dog", "fox", "owl", "yak"]
    assert data.known == [3, 0, 1] and data.unknown == [2, 4]


def test_fingerprint_changes_with_any_byte_of_a_training_image(tmp_path):
    root = write_bmp_folder(str(tmp_path / "imgs"), seed=0)
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b"], "Unknown": ["u"]}))
    folder = FolderData(root, str(tmp_path / "split.json"), 16, 3)
    before = folder.fingerprint(folder.open(train=True))
    assert folder.fingerprint(folder.open(train=True)) == before
    replace_training_images_keeping_name_size_and_time(root)
    assert folder.fingerprint(folder.open(train=True)) != before


def test_test_classes_without_images_are_named_in_one_warning_each(tmp_path, capsys):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 4, "b": 4, "c": 4}, {"a": 2, "c": 2, "u1": 2})
    os.makedirs(root / "test" / "u2")  # an empty unknown class folder
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b", "c"], "Unknown": ["u1", "u2", "u3"]}))
    capsys.readouterr()
    data = OpenSetData("ImageFolder", 0, str(root), config=load_config("ImageFolder"),
                       split_file=str(tmp_path / "split.json"))
    at_split = captured_stderr_lines(capsys)  # u3 has no folder at all
    assert len(at_split) == 1 and "'u3'" in at_split[0] and at_split[0].startswith("warning: "), at_split
    assert len(data.known_test_dataset()) == 4 and len(data.unknown_test_dataset()) == 2
    at_test = captured_stderr_lines(capsys)
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
    assert captured_stderr_lines(capsys) == []  # the error alone, no warnings before it


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
