"""engine/trial_choice.py: the trials an evaluation evaluates (as asked with --num_trials; else
those of the original's window with a checkpoint), the line when none is trained, and the
results file's trial label."""
import argparse
import os

import pytest

from core.errors import UserError
from engine.trial_choice import chosen_trials, trained_trials, trials_label

SUFFIX = "CACclassifierAnchorLoss"


def args(**kw):
    return argparse.Namespace(**{"dataset": "Digits", "name": "s", "num_trials": None, "start_trial": 0,
                                 "data_root": "datasets/data", "split_file": None, "im_size": None,
                                 "im_channels": None, **kw})


def trained(tmp_path, monkeypatch, names):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "networks" / "weights" / "Digits"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_trained_trials_match_the_exact_name_and_suffix(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, ["Digits_0_sCACclassifierAnchorLoss.pth", "Digits_2_sCACclassifierAnchorLoss.pth",
                                    "Digits_1_s2CACclassifierAnchorLoss.pth", "Digits_3_sCACclassifierCACLoss.pth",
                                    "Digits_x_sCACclassifierAnchorLoss.pth", "Digits_12_sCACclassifierAnchorLoss.pth"])
    os.mkdir(tmp_path / "networks" / "weights" / "Digits" / "Digits_4_sCACclassifierAnchorLoss.pth")  # a folder
    assert trained_trials("Digits", "s", SUFFIX) == [0, 2, 12]
    assert trained_trials("MNIST", "s", SUFFIX) == []


def test_num_trials_given_is_taken_as_asked(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, [])
    assert chosen_trials(args(num_trials=5), "CAC")[0] == [0, 1, 2, 3, 4]
    assert chosen_trials(args(num_trials=2, start_trial=5), "CAC")[0] == [5, 6]
    with pytest.raises(UserError, match="--num_trials 0: evaluate at least one trial"):
        chosen_trials(args(num_trials=0), "CAC")


def test_without_num_trials_the_trained_trials_of_the_window(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, [f"Digits_{t}_sCACclassifierAnchorLoss.pth" for t in (0, 1, 2, 3, 4, 5, 9)])
    assert chosen_trials(args(), "CAC")[0] == [0, 1, 2, 3, 4]  # the original's 5
    assert chosen_trials(args(start_trial=5), "CAC")[0] == [5, 9]  # the paper's splits 5-9
    assert chosen_trials(args(start_trial=3), "CAC")[0] == [3, 4, 5]


def test_none_trained_is_one_line_with_a_runnable_command(tmp_path, monkeypatch):
    trained(tmp_path, monkeypatch, ["Digits_7_sCACclassifierAnchorLoss.pth"])
    with pytest.raises(UserError) as e:
        chosen_trials(args(), "CAC")
    assert str(e.value).endswith("trained trials: [7]: evaluate them with "
                                 "`python eval_cacOpenset.py -dataset Digits --start_trial 7 --name s`")
    folder = args(dataset="ImageFolder", name="", data_root="../my pets", split_file="s.json", im_size=16)
    with pytest.raises(UserError) as e:
        chosen_trials(folder, "CAC")
    assert "train one with `python train_cacOpenset.py --dataset ImageFolder --trial 0 --name '' --data_root " \
           "'../my pets' --split_file s.json --im_size 16`" in str(e.value)


def test_trials_label():
    assert trials_label([0]) == "0-0" and trials_label([0, 1, 2, 3, 4]) == "0-4"
    assert trials_label([0, 2, 3]) == "0_2_3"
