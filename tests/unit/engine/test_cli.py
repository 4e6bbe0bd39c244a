"""engine.cli: the checks of --name, --seed and the rest, run_cli's one line and exit status
for each way a script ends, argparse's errors as one line, the device, the seeding, the header."""
import argparse
import json
import random
import subprocess
from argparse import Namespace

import numpy as np
import pytest
import torch

import engine.cli as cli
from core.errors import Interrupted, UserError
from engine.cli import (check_common_args, check_name, evaluation_parser, one_line_usage_errors, print_header,
                        resolve_device, run_cli, runtime_parser, seed_everything, training_parser,
                        with_trained_shape)


@pytest.mark.parametrize("name,why", [
    ("../../x", "contains '/'"), ("a/b", "contains '/'"), ("a\\b", "contains '\\'"), ("..", "contains '..'"),
    ("a..b", "contains '..'"), ("a\x00b", "contains a control character"), ("a\nb", "contains a control character"),
    ("a\x7fb", "contains a control character"), ("-x", "starts with '-'"), (".hidden", "starts with '.'"),
    ("my\u200bTest", "contains the invisible character U+200B (ZERO WIDTH SPACE)"),
    ("a\u2028b", "contains the invisible character U+2028 (LINE SEPARATOR)"),
    ("a\u00a0b", "contains the invisible character U+00A0 (NO-BREAK SPACE)"),
    ("\ufeffx", "contains the invisible character U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("a\udcffb", "contains the invisible character U+DCFF (unnamed)"),  # a byte that was not UTF-8 (surrogateescape)
])
def test_check_name_refuses_what_is_not_a_plain_name_part(name, why):
    with pytest.raises(UserError) as refused:
        check_name(name)
    message = str(refused.value)
    assert message.startswith(f"--name {name!r} {why}:"), message
    assert "plain name" in message and "--name myTest" in message


@pytest.mark.parametrize("name", ["myTest", "a-b_c", "run.2", "x-", "", "Ünïcode", "two words", "日本語"])
def test_check_name_accepts_a_plain_name(name):
    assert check_name(name) is None


def common(**change):
    return Namespace(**{"dataset": "Digits", "workers": 0, "seed": 0, "name": "x", **change})


def test_largest_seed_passes_the_check():
    args = Namespace(dataset="Digits", workers=0, seed=2**32 - 1, name="x")
    check_common_args(args)  # raises on a seed NumPy refuses
    with pytest.raises(UserError, match="--seed 4294967296"):
        check_common_args(Namespace(**{**vars(args), "seed": 2**32}))


@pytest.mark.parametrize("change,fragment", [
    ({"dataset": "Nope"}, "unknown dataset 'Nope'"),
    ({"workers": -1}, "--workers -1"),
    ({"seed": -1}, "--seed -1"),
    ({"name": "a/b"}, "--name 'a/b'"),
])
def test_check_common_args_refusals(change, fragment):
    with pytest.raises(UserError, match=fragment):
        check_common_args(common(**change))
    assert check_common_args(common(workers=None)) is None  # the config's worker count


def test_run_cli_returns_0_when_main_ends(capsys):
    assert run_cli(lambda: print("done")) == 0
    out = capsys.readouterr()
    assert out.out == "done\n" and out.err == ""


def raising(error):
    def main():
        raise error
    return main


def test_run_cli_turns_a_user_error_into_one_line_and_2(capsys):
    assert run_cli(raising(UserError("--epochs 0: give a positive number"))) == 2
    assert capsys.readouterr().err == "error: --epochs 0: give a positive number\n"


def test_run_cli_keeps_the_line_of_a_user_error_from_a_dataloader_worker(capsys):
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\ncore.errors.UserError: image a.png is damaged")
    assert run_cli(raising(wrapped)) == 2
    assert capsys.readouterr().err == "error: image a.png is damaged\n"


def test_run_cli_gives_one_line_for_a_user_error_without_a_message(capsys):
    assert run_cli(raising(UserError())) == 2  # IndexError before: no line to keep
    assert capsys.readouterr().err == "error: bad input (no message)\n"


@pytest.mark.parametrize("status", [130, 143])
def test_run_cli_gives_an_interrupted_runs_exit_status(status, capsys):
    assert run_cli(raising(Interrupted("saved; continue with --continue", status))) == status
    assert capsys.readouterr().err == "stopped: saved; continue with --continue\n"


def test_run_cli_turns_ctrl_c_into_130(capsys):
    assert run_cli(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_run_cli_lets_a_bug_through_and_restores_argparse():
    error = argparse.ArgumentParser.error
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 / 0)
    assert argparse.ArgumentParser.error is error


def parse(argv):
    p = argparse.ArgumentParser(prog="train.py")
    p.add_argument("--epochs", type=int, required=True)
    return p.parse_args(argv)


@pytest.mark.parametrize("argv,fragment", [
    ([], "the following arguments are required: --epochs"),
    (["--epochs", "1e3"], "argument --epochs: invalid int value: '1e3'"),
    (["--epochs", "1", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_argparse_errors_are_one_line_under_run_cli(argv, fragment, capsys):
    assert run_cli(lambda: parse(argv)) == 2
    err = capsys.readouterr().err
    assert err == f"error: {fragment}; see train.py --help\n", err


def test_one_line_usage_errors_only_inside_the_block(capsys):
    with one_line_usage_errors():
        with pytest.raises(UserError, match="required: --epochs; see train.py --help"):
            parse([])
    with pytest.raises(SystemExit) as usage:  # argparse's own usage block again
        parse([])
    assert usage.value.code == 2 and "usage: train.py" in capsys.readouterr().err


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda was asked for but no CUDA device is available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_resolve_device_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(1234)
    got = (random.random(), np.random.rand(), torch.rand(2))
    expected = (random.Random(1234).random(), np.random.RandomState(1234).rand(),
                torch.rand(2, generator=torch.Generator().manual_seed(1234)))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_git_commit_names_this_checkout(monkeypatch, tmp_path):
    head = subprocess.run(["git", "-C", cli.REPO_DIR, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert cli.git_commit().startswith(head.strip()[:12])
    monkeypatch.setattr(cli, "REPO_DIR", str(tmp_path))  # not a git checkout
    assert cli.git_commit() == "unknown"


def test_print_header_shows_the_commit_and_every_argument(capsys, monkeypatch):
    monkeypatch.setattr(cli, "git_commit", lambda: "abc123")
    args = Namespace(dataset="Digits", seed=3, name="x")
    assert print_header(args, torch.device("cpu")) == "abc123"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"git: abc123  device: cpu  torch: {torch.__version__}"
    assert lines[1].startswith("args: ") and json.loads(lines[1][len("args: "):]) == vars(args)
    assert len(lines) == 2


def test_parsers_defaults_and_spellings():
    runtime = runtime_parser().parse_args([])
    assert (runtime.data_root, runtime.device, runtime.workers, runtime.seed, runtime.pipeline) == \
        ("datasets/data", "auto", None, 0, "resident")
    # no --cache_dir: datasets/cache.py resolves $CAC_CACHE_DIR or the default where the trial is loaded
    assert runtime.cache_dir is None and runtime_parser().parse_args(["--cache_dir", "c"]).cache_dir == "c"
    train = argparse.ArgumentParser(parents=[training_parser()])
    args = train.parse_args(["--dataset", "Digits", "-r", "--continue"])
    assert (args.trial, args.resume, args.continue_run, args.name, args.backbone) == (0, True, True, "myTest", "cnn")
    # the overrides default to None: the config's values, so a default run is unchanged
    assert [getattr(args, f) for f in ("hflip", "rotation", "crop_scale", "lr", "batch_size")] == [None] * 5
    with one_line_usage_errors(), pytest.raises(UserError, match="--dataset"):
        train.parse_args(["--trial", "0"])
    evaluation = argparse.ArgumentParser(parents=[evaluation_parser()])
    assert evaluation.parse_args(["-dataset", "SVHN"]).dataset == "SVHN"
    assert evaluation.parse_args(["--dataset", "SVHN"]).dataset == "SVHN"
    assert evaluation.parse_args([]).dataset == "MNIST" and evaluation.parse_args([]).name == ""


def shape_args(**kw):
    return argparse.Namespace(**{"dataset": "Digits", "im_size": None, "im_channels": None, **kw})


def test_the_image_shape_comes_from_the_checkpoint_unless_given_and_a_contradiction_is_refused():
    """Trained with --im_size 24 --im_channels 1 on an image folder: evaluation needs neither flag; a flag equal to
    the checkpoint's passes, one that contradicts it is refused naming both. Built-in data sets keep their channels."""
    ckpt = {"network": {"im_size": 24, "num_channels": 1}}
    folder = shape_args(dataset="ImageFolder")
    got = with_trained_shape(folder, ckpt, "c.pth")
    assert (got.im_size, got.im_channels) == (24, 1) and folder.im_size is None  # a copy: the flags stay as given
    assert (with_trained_shape(shape_args(dataset="ImageFolder", im_size=24), ckpt, "c.pth").im_channels) == 1
    with pytest.raises(UserError, match=r"^checkpoint c.pth was trained with im_channels 1, this command gives "
                                        r"--im_channels 3: drop --im_channels \(read from the checkpoint\)$"):
        with_trained_shape(shape_args(dataset="ImageFolder", im_channels=3), ckpt, "c.pth")
    with pytest.raises(UserError, match=r"trained with im_size 24 and im_channels 1, this command gives --im_size 32 "
                                        r"and --im_channels 3: drop --im_size and --im_channels "):  # both in one line
        with_trained_shape(shape_args(dataset="ImageFolder", im_size=32, im_channels=3), ckpt, "c.pth")
    with pytest.raises(UserError, match="trained with im_size 24, this command gives --im_size 32"):
        with_trained_shape(shape_args(im_size=32), ckpt, "c.pth")
    digits = with_trained_shape(shape_args(), ckpt, "c.pth")
    assert (digits.im_size, digits.im_channels) == (24, None)  # the config's channel count: no --im_channels there
    released = with_trained_shape(shape_args(), {}, "c.pth")  # no record (the paper's weights): the config's
    assert (released.im_size, released.im_channels) == (None, None)
