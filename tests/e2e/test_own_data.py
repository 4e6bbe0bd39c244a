"""Users' own images (--dataset ImageFolder) through the scripts: the README's three commands end to
end on a tiny generated folder (assorted sizes, modes and formats), image-shape overrides,
one-line errors for bad folders and split files, and caches rebuilt when the images change."""
import csv
import io
import json
import os

import shlex

import numpy as np
import pytest
import torch
from conftest import REPO, assert_one_line_error, ok, read_calibration_file, run_script
from fakedata import (MALFORMED, PETS_SPLIT, PETS_TEST, PETS_TRAIN, replace_training_images_keeping_name_size_and_time,
                      write_bmp_folder, write_image_folder, write_pets, write_split_file)


CKPT = os.path.join("networks", "weights", "ImageFolder", "ImageFolder_0_mineCACclassifierAnchorLoss.pth")
# the README's names -> the generated folder's (relative to the fixture's working folder)
README_PATHS = {"my_images": "../pets", "my_split.json": "../split.json", "new_images/": "../pets/test"}


def readme_commands():
    """The commands of the README's "Your own images" section, as a newcomer pastes them:
    {script: [arguments]}, with the README's example paths pointing at the generated folder."""
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("## Your own images", 1)[1].split("\n## ", 1)[0]
    commands = {}
    for line in section.splitlines():
        if line.startswith("python "):
            words = [README_PATHS.get(w, w) for w in shlex.split(line)[1:]]
            commands[words[0]] = words[1:]
    return commands


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_pets(tmp_path_factory.mktemp("own"))


@pytest.fixture(scope="module")
def three_commands(folder):
    """The README's three commands as printed there (plus 1 epoch and no worker processes):
    train, evaluate with plots, predict; then the cross-entropy pair."""
    cwd = str(folder / "work")
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", "../pets", "--split_file", "../split.json", "--workers", "0"]
    readme = readme_commands()
    assert list(readme) == ["train_cacOpenset.py", "eval_cacOpenset.py", "predict.py"]
    torch.set_num_threads(1)
    return {
        "cwd": cwd,
        "train": ok(run_script("train_cacOpenset.py", *readme["train_cacOpenset.py"], "--epochs", "1", "--workers", "0",
                               cwd=cwd, in_process=True)),
        "eval": ok(run_script("eval_cacOpenset.py", *readme["eval_cacOpenset.py"], "--workers", "0", cwd=cwd,
                              in_process=True)),
        "predict": ok(run_script("predict.py", *readme["predict.py"], cwd=cwd, in_process=True)),
        "ce_train": ok(run_script("train_closedSet.py", *[*data, "--trial", "0", "--name", "mine", "--epochs", "1"], cwd=cwd, in_process=True)),
        "ce_eval": ok(run_script("eval_closedSet.py", *[*data, "--num_trials", "1", "--name", "mine"], cwd=cwd, in_process=True)),
    }


def test_three_commands_train_evaluate_and_predict(three_commands):
    cwd = three_commands["cwd"]
    assert os.path.isfile(os.path.join(cwd, CKPT))
    with open(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0.json")) as f:
        result = json.load(f)
    assert result["trials"] == [0] and set(result["metrics"]) == {"cac", "min_distance"}
    assert result["classes"][0]["known_class_names"] == sorted(PETS_SPLIT["Known"])  # label order: folder order
    assert result["classes"][0]["unknown_class_names"] == PETS_SPLIT["Unknown"]
    assert "evaluating trials [0]" in three_commands["eval"].stdout  # no --num_trials: the trained one
    assert "data: ImageFolder trial 0:" in three_commands["train"].stdout  # the start-up summary
    assert os.path.isfile(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0_trial0_roc.png"))  # --plots
    rows = list(csv.DictReader(io.StringIO(three_commands["predict"].stdout)))
    assert len(rows) == sum(PETS_TEST.values())
    assert {r["prediction"] for r in rows} <= {"cat", "dog", "owl", "unknown"}
    assert {r["closest_class"] for r in rows} <= {"cat", "dog", "owl"}
    # predictions of the test images agree with the evaluation's saved scores
    z = np.load(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0.npz"))
    known_rows = [r for r in rows if r["image"].split(os.sep)[-2] in PETS_SPLIT["Known"]]  # cat, dog, owl order
    np.testing.assert_allclose(sorted(float(r["score"]) for r in known_rows),
                               sorted(z["trial0_cac_known_score"]), rtol=1e-4, atol=1e-6)
    with open(os.path.join(cwd, "results", "ImageFolder_mineClosedSet_trials0-0.json")) as f:
        assert set(json.load(f)["metrics"]) == {"max_softmax", "max_logit"}


def test_run_config_names_the_classes(three_commands):
    """config.json keeps the class ids (positions in the sorted folder names) beside the names, the known ones in
    label order 0..N-1 as the results file lists them (the split file lists owl, cat, dog)."""
    cwd = three_commands["cwd"]
    with open(os.path.join(cwd, "runs", "ImageFolder_0_mineCAC", "config.json")) as f:
        config = json.load(f)
    folders = sorted({*PETS_TRAIN, *PETS_TEST})
    assert config["known_class_names"] == sorted(PETS_SPLIT["Known"]) != PETS_SPLIT["Known"]
    assert config["known_classes"] == [folders.index(n) for n in sorted(PETS_SPLIT["Known"])]
    assert config["unknown_class_names"] == PETS_SPLIT["Unknown"]
    assert config["unknown_classes"] == [folders.index(n) for n in PETS_SPLIT["Unknown"]]
    # image files cannot be held resident: the pipeline used is said and saved beside the one asked for
    assert (config["args"]["pipeline"], config["pipeline_used"]) == ("resident", "torchvision")
    assert "speed: pipeline torchvision (--pipeline resident asked:" in three_commands["train"].stdout
    with open(os.path.join(cwd, "results", "ImageFolder_mineCAC_trials0-0.json")) as f:
        listed = json.load(f)["classes"][0]
    assert {key: config[key] for key in listed if key != "trial"} == {k: v for k, v in listed.items() if k != "trial"}


def test_evaluation_and_predict_read_the_image_shape_from_the_checkpoint(folder, tmp_path):
    """Trained with --im_size 24 --im_channels 1: evaluation and predict.py need neither flag; a given flag that
    agrees passes, one that contradicts the checkpoint is refused naming both values."""
    cwd = str(tmp_path)
    data = ["--dataset", "ImageFolder", "--data_root", str(folder / "pets"), "--split_file", str(folder / "split.json"),
            "--workers", "0", "--name", "g24"]
    torch.set_num_threads(1)
    ok(run_script("train_cacOpenset.py", *data, "--epochs", "1", "--im_size", "24", "--im_channels", "1", cwd=cwd,
                  in_process=True))
    evaluated = ok(run_script("eval_cacOpenset.py", *data, "--num_trials", "1", cwd=cwd, in_process=True))
    assert "Average AUROC" in evaluated.stdout
    assert read_calibration_file(os.path.join(cwd, CKPT.replace("mine", "g24")))["preprocessing"]["im_size"] == 24
    ok(run_script("eval_cacOpenset.py", *data, "--num_trials", "1", "--im_size", "24", cwd=cwd, in_process=True))
    assert_one_line_error(run_script("eval_cacOpenset.py", *data, "--num_trials", "1", "--im_channels", "3", cwd=cwd,
                                     in_process=True), "trained with im_channels 1, this command gives --im_channels 3",
                          "drop --im_channels")
    os.remove(os.path.join(cwd, CKPT.replace("mine", "g24").replace(".pth", ".calibration.json")))
    predicted = ok(run_script("predict.py", CKPT.replace("mine", "g24"), str(folder / "pets" / "test"), cwd=cwd,
                              in_process=True))  # calibrated on first use, at the trained shape
    assert len(predicted.stdout.splitlines()) == 1 + sum(PETS_TEST.values())


SPLIT_CASES = ["no_split_file", "missing_file", "not_json", "no_lists", "ids_not_names", "unknown_folder",
               "unknown_not_in_test", "one_known", "no_unknown", "both", "repeat"]


def _split_errors(root):
    return {
        "no_split_file": (None, ["needs --split_file"]),
        "missing_file": (str(root / "nope.json"), ["split file", "nope.json", "not found"]),
        "not_json": ("{oops", ["not valid JSON"]),
        "no_lists": ({"Known": ["cat", "dog"]}, ["'Known' and 'Unknown'"]),
        "ids_not_names": ({"Known": [0, 1], "Unknown": ["fox"]}, ["class folder names"]),
        "unknown_folder": ({"Known": ["cat", "emu"], "Unknown": ["fox"]}, ["['emu']", "train", "['cat', 'dog', 'fox', 'owl']"]),
        "unknown_not_in_test": ({"Known": ["cat", "dog"], "Unknown": ["owlet"]}, ["['owlet']", "test"]),
        "one_known": ({"Known": ["cat"], "Unknown": ["fox"]}, ["at least 2"]),
        "no_unknown": ({"Known": ["cat", "dog"], "Unknown": []}, ["no unknown class"]),
        "both": ({"Known": ["cat", "fox"], "Unknown": ["fox"]}, ["both Known and Unknown", "fox"]),
        "repeat": ({"Known": ["cat", "cat"], "Unknown": ["fox"]}, ["repeats"]),
    }


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_bad_split_file_gives_one_line_error(folder, tmp_path, case):
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
    assert_one_line_error(run_script("train_cacOpenset.py", *argv, cwd=str(tmp_path), in_process=True), *fragments)
    assert not (tmp_path / "networks").exists()


def test_bad_folders_and_flags_give_one_line_errors(folder, tmp_path):
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
        assert_one_line_error(run_script("train_cacOpenset.py", *[*base, *extra], cwd=str(tmp_path), in_process=True), *fragments)


# ------------------------------------------------------------------ caches keyed on the images' bytes, split files


def test_replaced_training_images_recompute_normalization_and_anchor_means(tmp_path, private_cache):
    """Same names, same sizes, same times, other pixels: the normalization cache and the anchor
    means kept in the calibration are both made again (they were reused before)."""
    root = write_bmp_folder(str(tmp_path / "imgs"), seed=1)
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["a", "b", "c"], "Unknown": ["u"]}))
    cwd = str(tmp_path / "work")
    os.makedirs(cwd)
    data = ["--dataset", "ImageFolder", "--data_root", root, "--split_file", str(tmp_path / "split.json"),
            "--workers", "0", "--im_size", "16"]
    torch.set_num_threads(1)
    ok(run_script("train_cacOpenset.py", *[*data, "--trial", "0", "--name", "m", "--epochs", "1"], cwd=cwd, in_process=True))
    evaluate = [*data, "--num_trials", "1", "--name", "m"]
    assert "anchor means computed" in ok(run_script("eval_cacOpenset.py", *evaluate, cwd=cwd, in_process=True)).stdout
    [cache] = (private_cache / "ImageFolder").glob("imgs-*/normalization/0.json")  # this folder's own
    first_cache = json.loads(cache.read_text())
    ckpt_path = os.path.join(cwd, "networks", "weights", "ImageFolder", "ImageFolder_0_mCACclassifierAnchorLoss.pth")
    first_key = read_calibration_file(ckpt_path)["anchor_means"]["data"]
    assert "anchor means read from the calibration" in ok(run_script("eval_cacOpenset.py", *evaluate, cwd=cwd, in_process=True)).stdout

    replace_training_images_keeping_name_size_and_time(root)
    assert "anchor means computed" in ok(run_script("eval_cacOpenset.py", *evaluate, cwd=cwd, in_process=True)).stdout
    second_cache = json.loads(cache.read_text())
    assert second_cache["Source"] != first_cache["Source"] and second_cache["mean"] != first_cache["mean"]
    second_key = read_calibration_file(ckpt_path)["anchor_means"]["data"]
    assert second_key["source"] != first_key["source"] and second_key["source"] is not None


@pytest.mark.parametrize("case", ["nested 200,000 deep", "5,000-digit number", "not UTF-8", "a folder in the way"])
def test_malformed_image_folder_split_file_is_one_line_through_the_script(case, tmp_path, private_cache):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"a": 2, "b": 2}, {"a": 1, "u": 1})
    content, fragment = MALFORMED[case]
    write_split_file(tmp_path / "split.json", content)
    argv = ["--dataset", "ImageFolder", "--data_root", str(root), "--split_file", str(tmp_path / "split.json"),
            "--trial", "0", "--epochs", "1", "--workers", "0"]
    cwd = tmp_path / "work"
    cwd.mkdir()
    assert_one_line_error(run_script("train_cacOpenset.py", *argv, cwd=str(cwd), in_process=True), fragment, "split file")
    assert os.listdir(cwd) == []


# ------------------------------------------------------------------ fix-it lines run as printed


def printed_command(proc):
    """The command between backticks in a one-line error, split as a shell would."""
    import shlex

    line = assert_one_line_error(proc)
    assert line.count("`") == 2, line
    words = shlex.split(line.split("`")[1])
    assert words[0] == "python"
    return words[1], words[2:]


def test_fix_it_commands_run_as_printed(folder, tmp_path):
    """Evaluation before training, and -r before a first run, name the training command with every
    flag of the folder (data root, split file, image shape); run as printed (only --epochs 1 added,
    to keep the test short), it trains, and the evaluation that failed then gets past that point."""
    cwd = str(tmp_path)
    data = ["--dataset", "ImageFolder", "--data_root", str(folder / "pets"), "--split_file",
            str(folder / "split.json"), "--im_size", "16", "--im_channels", "1", "--workers", "0"]
    torch.set_num_threads(1)
    evaluate = [*data, "--num_trials", "1", "--name", "fix"]
    script, argv = printed_command(run_script("eval_cacOpenset.py", *evaluate, cwd=cwd, in_process=True))
    assert script == "train_cacOpenset.py" and "--data_root" in argv and "--im_channels" in argv
    second = run_script(script, *argv, "-r", cwd=cwd, in_process=True)  # -r before its first run
    first_script, first_argv = printed_command(second)
    assert (first_script, first_argv) == (script, argv)
    trained = ok(run_script(script, *argv, "--epochs", "1", cwd=cwd, in_process=True)).stdout
    # not a terminal: the start-up summary, then a line per tenth of the epoch (short epoch: per step)
    assert "\ndata: ImageFolder trial 0: 18 train, 6 val images; test 9 known, 5 unknown; " in trained
    assert "epoch 0: 100% (1/1 steps), loss " in trained
    assert "anchor means computed" in ok(run_script("eval_cacOpenset.py", *evaluate, cwd=cwd, in_process=True)).stdout
