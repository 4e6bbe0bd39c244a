"""Users' own images (--dataset ImageFolder): the README's three commands end to end on a tiny
generated folder (assorted sizes, modes and formats), image-shape overrides, and one-line
errors for bad folders and split files."""
import csv
import io
import json
import os

import numpy as np
import pytest
import torch
from torchvision import transforms as T

import eval_cacOpenset
import eval_closedSet
import predict
import train_cacOpenset
import train_closedSet
from conftest import assert_one_line_error, ok, run_main
from datasets.folder import FolderData
from datasets.loaders import OpenSetData, apply_overrides, load_config
from fakedata import write_image_folder

TRAIN = {"cat": 8, "dog": 8, "owl": 8, "fox": 2}  # fox: a class with training images that stays unknown
TEST = {"cat": 3, "dog": 3, "owl": 3, "fox": 3, "yak": 2}  # yak: only in test/
SPLIT = {"Known": ["owl", "cat", "dog"], "Unknown": ["fox", "yak"]}
CKPT = os.path.join("networks", "weights", "ImageFolder", "ImageFolder_0_mineCACclassifierAnchorLoss.pth")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    write_image_folder(str(root / "pets"), TRAIN, TEST, seed=0)
    with open(root / "split.json", "w") as f:
        json.dump(SPLIT, f)
    return root


@pytest.fixture(scope="module")
def private_caches(tmp_path_factory):
    """Train/val and normalization caches of this module in a private folder, not the repo's."""
    import datasets.splits as splits

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(splits, "DATASETS_DIR", str(tmp_path_factory.mktemp("datasets_dir")))
        yield


@pytest.fixture(scope="module")
def three_commands(folder, private_caches):
    """The README's commands, 1 epoch: train, evaluate, predict (plus the cross-entropy pair)."""
    cwd = str(folder / "work")
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--workers", "0"]
    torch.set_num_threads(1)
    return {
        "cwd": cwd,
        "train": ok(run_main(train_cacOpenset.main, [*data, "--trial", "0", "--name", "mine", "--epochs", "1"], cwd)),
        "eval": ok(run_main(eval_cacOpenset.main, [*data, "--num_trials", "1", "--name", "mine"], cwd)),
        "predict": ok(run_main(predict.main, [CKPT, "../pets/test"], cwd)),
        "ce_train": ok(run_main(train_closedSet.main, [*data, "--trial", "0", "--name", "mine", "--epochs", "1"], cwd)),
        "ce_eval": ok(run_main(eval_closedSet.main, [*data, "--num_trials", "1", "--name", "mine"], cwd)),
    }


def test_classes_are_the_union_of_train_and_test_folders(folder):
    data = FolderData(str(folder / "pets"), str(folder / "split.json"), 32, 3)
    assert data.classes == ["cat", "dog", "fox", "owl", "yak"]
    assert data.known == [3, 0, 1] and data.unknown == [2, 4]


def test_open_set_data_of_a_folder(folder, private_caches):
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
    # normalization computed from the known classes' training images (every image 32 x 32 RGB)
    plain = data._train_subset(data.train_idx, T.ToTensor())
    pixels = torch.stack([plain[i][0] for i in range(len(plain))])
    np.testing.assert_allclose(data.mean, pixels.mean((0, 2, 3)).numpy(), atol=1e-3)
    grey = OpenSetData("ImageFolder", 0, str(folder / "pets"), split_file=str(folder / "split.json"),
                       config=apply_overrides(cfg, "ImageFolder", im_size=16, im_channels=1))
    assert tuple(grey.val_dataset()[0][0].shape) == (1, 16, 16) and len(grey.mean) == 1


def test_three_commands_train_evaluate_and_predict(three_commands):
    cwd = three_commands["cwd"]
    assert os.path.isfile(os.path.join(cwd, CKPT))
    with open(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0.json")) as f:
        result = json.load(f)
    assert result["trials"] == [0] and set(result["metrics"]) == {"cac", "min_distance"}
    rows = list(csv.DictReader(io.StringIO(three_commands["predict"].stdout)))
    assert len(rows) == sum(TEST.values())
    assert {r["prediction"] for r in rows} <= {"cat", "dog", "owl", "unknown"}
    assert {r["closest_class"] for r in rows} <= {"cat", "dog", "owl"}
    # predictions of the test images agree with the evaluation's saved scores
    z = np.load(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0.npz"))
    known_rows = [r for r in rows if r["image"].split(os.sep)[-2] in SPLIT["Known"]]  # cat, dog, owl order
    np.testing.assert_allclose(sorted(float(r["score"]) for r in known_rows),
                               sorted(z["trial0_cac_known_score"]), rtol=1e-4, atol=1e-6)
    with open(os.path.join(cwd, "results", "ImageFolder_mineClosedSet_trials0-0.json")) as f:
        assert set(json.load(f)["metrics"]) == {"max_softmax", "max_logit"}


def test_evaluation_needs_the_image_shape_training_used(three_commands, private_caches):
    cwd = three_commands["cwd"]
    argv = ["--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--workers", "0",
            "--num_trials", "1", "--name", "mine", "--im_size", "16"]
    assert_one_line_error(run_main(eval_cacOpenset.main, argv, cwd), "im_size 32", "--im_size 32")


SPLIT_CASES = ["no_split_file", "missing_file", "not_json", "no_lists", "ids_not_names", "unknown_folder",
               "unknown_not_in_test", "one_known", "no_unknown", "both", "repeat"]


def _split_errors(root):
    return {
        "no_split_file": (None, ["needs --split_file"]),
        "missing_file": (str(root / "nope.json"), ["split file", "nope.json", "not found"]),
        "not_json": ("{oops", ["not valid JSON"]),
        "no_lists": ({"Known": ["cat", "dog"]}, ["'Known' and 'Unknown'"]),
        "ids_not_names": ({"Known": [0, 1], "Unknown": ["fox"]}, ["class folder names"]),
        "unknown_folder": ({"Known": ["cat", "emu"], "Unknown": ["fox"]}, ["['emu']", "train", "cat, dog, fox, owl"]),
        "unknown_not_in_test": ({"Known": ["cat", "dog"], "Unknown": ["owlet"]}, ["['owlet']", "test"]),
        "one_known": ({"Known": ["cat"], "Unknown": ["fox"]}, ["at least 2"]),
        "no_unknown": ({"Known": ["cat", "dog"], "Unknown": []}, ["no unknown class"]),
        "both": ({"Known": ["cat", "fox"], "Unknown": ["fox"]}, ["both Known and Unknown", "fox"]),
        "repeat": ({"Known": ["cat", "cat"], "Unknown": ["fox"]}, ["repeats"]),
    }


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_bad_split_file_gives_one_line_error(folder, tmp_path, case, private_caches):
    errors = _split_errors(folder)
    assert list(errors) == SPLIT_CASES
    split, fragments = errors[case]
    argv = ["--dataset", "ImageFolder", "--data_root", str(folder / "pets"), "--trial", "0", "--epochs", "1",
            "--workers", "0"]
    if isinstance(split, (dict, str)) and not (isinstance(split, str) and split.endswith("nope.json")):
        path = tmp_path / "split.json"
        path.write_text(split if isinstance(split, str) else json.dumps(split))
        argv += ["--split_file", str(path)]
    elif split is not None:
        argv += ["--split_file", split]
    assert_one_line_error(run_main(train_cacOpenset.main, argv, str(tmp_path)), *fragments)
    assert not (tmp_path / "networks").exists()


def test_bad_folders_and_flags_give_one_line_errors(folder, tmp_path, private_caches):
    split = str(folder / "split.json")
    base = ["--dataset", "ImageFolder", "--trial", "0", "--epochs", "1", "--workers", "0", "--split_file", split]
    broken = tmp_path / "broken"
    write_image_folder(str(broken), {"cat": 3, "dog": 3}, {"cat": 1, "fox": 1})
    (broken / "train" / "dog" / "9.png").write_bytes(b"not a png")
    with open(tmp_path / "s.json", "w") as f:
        json.dump({"Known": ["cat", "dog"], "Unknown": ["fox"]}, f)
    cases = [
        (["--data_root", str(tmp_path / "absent")], ["no folder", "absent", "train/ and test/"]),
        (["--data_root", str(broken), "--split_file", str(tmp_path / "s.json")], ["cannot read image", "9.png"]),
        (["--data_root", str(folder / "pets"), "--im_size", "20"], ["--im_size 20", "multiple of 8"]),
        (["--data_root", str(folder / "pets"), "--im_channels", "1", "--dataset", "Digits"],
         ["--im_channels applies to --dataset ImageFolder only"]),
    ]
    for extra, fragments in cases:
        assert_one_line_error(run_main(train_cacOpenset.main, [*base, *extra], str(tmp_path)), *fragments)
