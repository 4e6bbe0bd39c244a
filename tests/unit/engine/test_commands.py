"""engine.commands: the fix-it commands, read back with shlex and parsed by the scripts' own
parsers, so each printed line is a command the script accepts with the invocation's values."""
import argparse
import shlex


from engine.cli import accel_parser, evaluation_parser, runtime_parser, training_parser
from engine.commands import evaluate_command, train_command


def parsed(line, *parents):
    words = shlex.split(line)
    assert words[0] == "python"
    return words[1], argparse.ArgumentParser(parents=list(parents)).parse_args(words[2:])


FOLDER_RUN = {"dataset": "ImageFolder", "trial": 0, "name": "my run", "data_root": "../my pets",
              "split_file": "../split.json", "im_size": 64, "im_channels": 1, "device": "cpu", "workers": 0,
              "backbone": "cnn", "hflip": 0.0, "rotation": None, "crop_scale": 0.5, "lr": 0.1, "batch_size": None}


def test_train_command_carries_the_flags_that_name_the_run_and_its_data():
    line = train_command("train_cacOpenset.py", FOLDER_RUN)
    script, args = parsed(line, training_parser(), runtime_parser(), accel_parser())
    assert script == "train_cacOpenset.py"
    for key in ("dataset", "trial", "name", "data_root", "split_file", "im_size", "im_channels", "hflip",
                "crop_scale"):
        assert getattr(args, key) == FOLDER_RUN[key], key
    assert args.lr is None and args.rotation is None  # --lr is one phase's; unset flags stay unset
    assert "--device" not in line and "--workers" not in line and "--backbone" not in line


def test_defaults_are_left_out_and_an_empty_name_is_quoted():
    line = train_command("train_closedSet.py", {"dataset": "Digits", "name": "", "data_root": "datasets/data",
                                                "split_file": None}, trial=3)
    assert line == "python train_closedSet.py --dataset Digits --trial 3 --name ''"
    assert parsed(line, training_parser(), runtime_parser(), accel_parser())[1].name == ""


def test_evaluate_command_of_a_training_runs_args():
    line = evaluate_command("eval_cacOpenset.py", {**FOLDER_RUN, "trial": 2})
    script, args = parsed(line, evaluation_parser(), runtime_parser(), accel_parser())
    assert script == "eval_cacOpenset.py"
    assert (args.dataset, args.start_trial, args.num_trials, args.name) == ("ImageFolder", 2, 1, "my run")
    assert (args.data_root, args.split_file, args.im_size, args.im_channels) == ("../my pets", "../split.json", 64, 1)


def test_commands_split_back_into_the_arguments_given():
    import shlex

    given = {"dataset": "ImageFolder", "name": "", "data_root": "my data/pets", "split_file": "it's.json"}
    line = train_command("train_cacOpenset.py", given, 0)
    assert shlex.split(line) == ["python", "train_cacOpenset.py", "--dataset", "ImageFolder", "--trial", "0",
                                 "--name", "", "--data_root", "my data/pets", "--split_file", "it's.json"]
    assert shlex.split(evaluate_command("eval_closedSet.py", {"dataset": "MNIST", "name": "x"}, 3)) == \
        ["python", "eval_closedSet.py", "-dataset", "MNIST", "--start_trial", "3", "--num_trials", "1", "--name", "x"]
    assert "--num_trials" not in evaluate_command("eval_closedSet.py", {"dataset": "MNIST", "name": "x"}, 3, num=None)
