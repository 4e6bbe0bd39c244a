"""engine/commands.py: fix-it commands carry every data flag a run used, quoted for the shell."""
import argparse
import shlex

from engine.commands import data_flags, eval_command, train_command


def test_data_flags_leave_out_defaults():
    assert data_flags({"data_root": "datasets/data", "split_file": None, "im_size": None}) == []
    assert data_flags(argparse.Namespace(data_root="/d", split_file="s.json", im_size=32, im_channels=1)) == \
        ["--data_root", "/d", "--split_file", "s.json", "--im_size", "32", "--im_channels", "1"]


def test_commands_split_back_into_the_arguments_given():
    given = {"data_root": "my data/pets", "split_file": "it's.json"}
    line = train_command("train_cacOpenset.py", "ImageFolder", 0, "", given)
    assert shlex.split(line) == ["python", "train_cacOpenset.py", "--dataset", "ImageFolder", "--trial", "0",
                                 "--name", "", "--data_root", "my data/pets", "--split_file", "it's.json"]
    assert shlex.split(eval_command("eval_closedSet.py", "MNIST", 3, "x", {}, num=1)) == \
        ["python", "eval_closedSet.py", "-dataset", "MNIST", "--start_trial", "3", "--num_trials", "1", "--name", "x"]
