"""Bad input through the command-line scripts: one line on stderr naming the problem and the
fix, exit status 2, and nothing written in the working folder.

Each case runs from its own empty working folder (that is where networks/weights/, runs/
and results/ go), after an optional set-up (a checkpoint to load, a file in the way), and
the test compares the folder's tree before and after. Most cases run main() in this
process through the scripts' own run_cli wrapper, with the data sets' folder (split files,
config.json, caches) replaced by a private copy; those in SUBPROCESS_CASES run the script
as a user does. CAC_TEST_ERRORS_IN_SUBPROCESS=1 runs every case that needs no private
data-set folder as a subprocess.
"""
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import assert_one_line_error, run_script
from e2e.workdirs import SPLIT_TRIALS, checkpoint, datasets_dir, private_datasets_dir
from fakedata import write_cifar10, write_mnist, write_tinyimagenet

TRAIN_CAC, TRAIN_CE = "train_cacOpenset.py", "train_closedSet.py"
EVAL_CAC, EVAL_CE = "eval_cacOpenset.py", "eval_closedSet.py"
FAST = ("--workers", "0")
DIGITS = ("--dataset", "Digits", "--trial", 0, "--epochs", 1, *FAST)
EVAL_DIGITS = ("-dataset", "Digits", "--num_trials", 1, "--start_trial", 0, *FAST)
CUDA = torch.cuda.is_available()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def code_checkpoint(cwd, name, plain):
    """A checkpoint whose unpickling would run a shell command that creates cwd/code_ran (the
    test then sees a new file); written by torch.save, or by pickle.dump as a plain pickle."""
    path = checkpoint(cwd, name, "CACclassifierAnchorLoss")
    state = {"net": {}, "acc": 0.0, "epoch": 0, "payload": _RunsCode(os.path.join(cwd, "code_ran"))}
    if plain:
        with open(path, "wb") as f:
            pickle.dump(state, f)
    else:
        torch.save(state, path)


def damaged_checkpoint(cwd, how):
    path = checkpoint(cwd, how, "CACclassifierAnchorLoss")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2] if how == "truncated" else b"not a checkpoint" * 50)


def file_in_the_way(cwd, relative):
    path = os.path.join(cwd, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("a file where a folder belongs")


def last_state(cwd, name, phase, epoch, end_epoch, lbda=0.1, **args):
    """A ...Last.pth as a run of phase `phase` leaves it after finishing `epoch - 1`."""
    path = checkpoint(cwd, name, "CACclassifierLast")
    state = torch.load(path, weights_only=True)
    state.update(phase=phase, epoch=epoch, end_epoch=end_epoch, step=0, args={"alpha": 10.0, "lbda": lbda, **args})
    torch.save(state, path)


def cases(roots, splits):
    """name -> (script, args, fragments of the error line, set-up(cwd) or None)."""
    split = lambda key: os.path.join(splits, "Digits", "class_splits", f"{SPLIT_TRIALS[key]}.json")  # noqa: E731
    trial = lambda key: ("--dataset", "Digits", "--trial", SPLIT_TRIALS[key], "--epochs", 1, *FAST)  # noqa: E731
    weights = os.path.join("networks", "weights", "Digits")
    return {
        # arguments
        "unknown_dataset": (TRAIN_CAC, ["--dataset", "Foo", "--trial", 0], ["unknown dataset 'Foo'", "MNIST"], None),
        "epochs_0": (TRAIN_CAC, [*DIGITS, "--epochs", 0], ["--epochs 0", "positive"], None),
        "epochs_negative": (TRAIN_CE, [*DIGITS, "--epochs", -3], ["--epochs -3", "positive"], None),
        "alpha_0": (TRAIN_CAC, [*DIGITS, "--alpha", 0], ["--alpha 0", "positive"], None),
        "alpha_negative": (TRAIN_CAC, [*DIGITS, "--alpha", -2], ["--alpha -2", "positive"], None),
        "lbda_negative": (TRAIN_CAC, [*DIGITS, "--lbda", -1], ["--lbda -1", "0 or more"], None),
        "num_trials_0": (EVAL_CAC, ["-dataset", "Digits", "--num_trials", 0], ["--num_trials 0", "at least one"],
                         None),
        "workers_negative": (TRAIN_CAC, [*DIGITS, "--workers", -1], ["--workers -1", "0 or more"], None),
        "device_cuda": (TRAIN_CAC, [*DIGITS, "--device", "cuda"], ["no CUDA device", "--device cpu"], None),
        "unknown_backbone": (TRAIN_CAC, [*DIGITS, "--backbone", "resnet9"], ["'resnet9'", "wrn-16-4"], None),
        # --name: checked against the file system before any data is read (it failed at the first save, an epoch in)
        "name_too_long": (TRAIN_CAC, [*DIGITS, "--name", "n" * 230],
                          ["--name of 230 bytes is too long", "this file system", "give a --name of at most"], None),
        "name_too_long_255": (TRAIN_CE, [*DIGITS, "--name", "n" * 255], ["--name of 255 bytes is too long"], None),
        "eval_name_too_long": (EVAL_CAC, [*EVAL_DIGITS, "--name", "n" * 240], ["--name of 240 bytes is too long"],
                               None),
        "name_zero_width_space": (TRAIN_CAC, [*DIGITS, "--name", "my\u200bTest"],
                                  ["U+200B (ZERO WIDTH SPACE)", "plain name"], None),
        # class split files
        "missing_split": (TRAIN_CAC, ["--dataset", "Digits", "--trial", 42, *FAST],
                          ["no class split file", "Digits trial 42", os.path.join("class_splits", "42.json"),
                           "write"], None),
        "split_not_json": (TRAIN_CAC, trial("not_json"), [split("not_json"), "not valid JSON", "fix"], None),
        "split_no_known": (TRAIN_CAC, trial("no_known"), [split("no_known"), "'Known' and 'Unknown'"], None),
        "split_repeat": (TRAIN_CE, trial("repeat"), [split("repeat"), "repeats", "once"], None),
        "split_out_of_range": (TRAIN_CAC, trial("out_of_range"), [split("out_of_range"), "[10]", "0..9"], None),
        "split_overlap": (EVAL_CAC, ["-dataset", "Digits", "--start_trial", SPLIT_TRIALS["overlap"], "--num_trials",
                                     1], [split("overlap"), "[5]", "both Known and Unknown"], None),
        # data
        "offline_no_download": (
            TRAIN_CAC, ["--dataset", "MNIST", "--trial", 0, "--no_download", "--data_root", roots["empty"], *FAST],
            ["MNIST not found", roots["empty"], "train-images-idx3-ubyte", "drop --no_download"], None),
        "offline_download_fails": (
            TRAIN_CE, ["--dataset", "CIFAR10", "--trial", 0, "--data_root", roots["empty"] + "/b", *FAST],
            ["CIFAR10 not found", "data_batch_1", "download failed", "copy the files"], None),
        "truncated_mnist": (TRAIN_CAC, ["--dataset", "MNIST", "--trial", 0, "--data_root", roots["mnist"], *FAST],
                            ["train-images-idx3-ubyte.gz is corrupt or truncated", "download MNIST again"], None),
        "corrupt_cifar": (EVAL_CE, ["-dataset", "CIFAR10", "--num_trials", 1, "--data_root", roots["cifar"], *FAST],
                          ["CIFAR10 files", "corrupt or truncated", "download again"], None),
        # a damaged image is read only when its batch comes, in a DataLoader worker process
        "corrupt_image_in_worker": (
            TRAIN_CAC, ["--dataset", "TinyImageNet", "--trial", 0, "--epochs", 1, "--data_root", roots["tiny"],
                        "--workers", 1], ["cannot read", "_0.JPEG", "replace or delete the file"], None),
        # checkpoints
        "eval_missing_checkpoint": (
            EVAL_CAC, [*EVAL_DIGITS, "--name", "nosuch"],
            ["checkpoint not found", os.path.join(weights, "Digits_0_nosuchCACclassifierAnchorLoss.pth"),
             "python train_cacOpenset.py --dataset Digits --trial 0 --name nosuch"], None),
        "eval_ce_missing_checkpoint": (
            EVAL_CE, [*EVAL_DIGITS], ["checkpoint not found", "Digits_0_closedSetClassifier.pth",
                                      "python train_closedSet.py --dataset Digits --trial 0"], None),
        "resume_without_first_run": (
            TRAIN_CAC, [*DIGITS, "-r", "--name", "fresh"],
            ["Digits_0_freshCACclassifierAnchorLoss.pth", "-r",
             "python train_cacOpenset.py --dataset Digits --trial 0 --name fresh"], None),
        "closed_set_resume_without_first_run": (
            TRAIN_CE, [*DIGITS, "-r", "--name", "fresh"],
            ["Digits_0_freshclosedSetClassifier.pth", "-r", "python train_closedSet.py"], None),
        "checkpoint_other_class_count": (
            EVAL_CAC, [*EVAL_DIGITS, "--name", "swap"], ["Digits_0_swapCACclassifierAnchorLoss.pth",
                                                        "4 known classes", "train one"],
            lambda cwd: checkpoint(cwd, "swap", "CACclassifierAnchorLoss", num_classes=4)),
        "checkpoint_other_channel_count": (
            EVAL_CE, [*EVAL_DIGITS, "--name", "rgb"], ["Digits_0_rgbclosedSetClassifier.pth", "3 input channels"],
            lambda cwd: checkpoint(cwd, "rgb", "closedSetClassifier", num_channels=3)),
        "checkpoint_other_image_size": (
            EVAL_CAC, [*EVAL_DIGITS, "--name", "big"], ["Digits_0_bigCACclassifierAnchorLoss.pth", "image size"],
            lambda cwd: checkpoint(cwd, "big", "CACclassifierAnchorLoss", im_size=32)),
        "checkpoint_other_backbone": (
            TRAIN_CAC, [*DIGITS, "-r", "--name", "bb", "--backbone", "wrn-10-1"],
            ["Digits_0_bbCACclassifierAnchorLoss.pth", "backbone 'cnn'", "pass --backbone cnn"],
            lambda cwd: checkpoint(cwd, "bb", "CACclassifierAnchorLoss")),
        "ce_checkpoint_as_cac": (
            TRAIN_CAC, [*DIGITS, "-r", "--name", "ce"], ["Digits_0_ceCACclassifierAnchorLoss.pth", "cross-entropy"],
            lambda cwd: shutil.move(checkpoint(cwd, "ce", "closedSetClassifier"),
                                    os.path.join(cwd, weights, "Digits_0_ceCACclassifierAnchorLoss.pth"))),
        "truncated_checkpoint": (EVAL_CAC, [*EVAL_DIGITS, "--name", "truncated"],
                                 ["Digits_0_truncatedCACclassifierAnchorLoss.pth", "corrupt or truncated",
                                  "delete it and train again"], lambda cwd: damaged_checkpoint(cwd, "truncated")),
        "junk_checkpoint": (EVAL_CAC, [*EVAL_DIGITS, "--name", "junk"],
                            ["Digits_0_junkCACclassifierAnchorLoss.pth", "corrupt"],
                            lambda cwd: damaged_checkpoint(cwd, "junk")),
        "checkpoint_that_runs_code": (EVAL_CAC, [*EVAL_DIGITS, "--name", "evil"],
                                      ["refusing to load", "could run code", "posix.system",
                                       "only checkpoints you trust"], lambda cwd: code_checkpoint(cwd, "evil", False)),
        "plain_pickle_that_runs_code": (TRAIN_CAC, [*DIGITS, "-r", "--name", "pkl"],
                                        ["refusing to load", "Digits_0_pklCACclassifierAnchorLoss.pth", "plain pickle",
                                         "only checkpoints you trust"], lambda cwd: code_checkpoint(cwd, "pkl", True)),
        # --continue
        "continue_without_state": (TRAIN_CAC, [*DIGITS, "--continue", "--name", "new"],
                                   ["Digits_0_newCACclassifierLast.pth", "not found", "without --continue"], None),
        "continue_other_phase": (TRAIN_CAC, [*DIGITS, "--continue", "--name", "p1"],
                                 ["Digits_0_p1CACclassifierLast.pth", "second phase (-r)", "add -r"],
                                 lambda cwd: last_state(cwd, "p1", phase=1, epoch=3, end_epoch=5)),
        "continue_finished_run": (TRAIN_CAC, [*DIGITS, "--continue", "--name", "done"],
                                  ["Digits_0_doneCACclassifierLast.pth", "finished all its epochs", "-r"],
                                  lambda cwd: last_state(cwd, "done", phase=0, epoch=2, end_epoch=2)),
        "continue_other_lbda": (TRAIN_CAC, [*DIGITS, "--continue", "--name", "l2", "--lbda", 0.2],
                                ["Digits_0_l2CACclassifierLast.pth", "--lbda 0.1", "continue it with --lbda 0.1"],
                                lambda cwd: last_state(cwd, "l2", phase=0, epoch=1, end_epoch=3)),
        # killed (-9) in a run that had planned 6 epochs, continued with another --epochs: refused, not run to 6
        "continue_other_epochs": (TRAIN_CAC, [*DIGITS, "--continue", "--name", "ep"],
                                  ["Digits_0_epCACclassifierLast.pth was trained with --epochs 6, this command gives "
                                   "--epochs 1: continue it with --epochs 6"],
                                  lambda cwd: last_state(cwd, "ep", phase=0, epoch=2, end_epoch=6, epochs=6)),
        # folders that cannot be written (checked before any data is read or network trained)
        # (the run's lock, taken first, lives in that folder: its line names the file in the way)
        "weights_folder_is_a_file": (TRAIN_CAC, [*DIGITS], ["move that file away", weights, "is a file"],
                                     lambda cwd: file_in_the_way(cwd, os.path.join("networks", "weights"))),
        "runs_folder_is_a_file": (TRAIN_CE, [*DIGITS, "-t"], ["cannot write to", "runs", "is a file"],
                                  lambda cwd: file_in_the_way(cwd, "runs")),
        "results_folder_is_a_file": (EVAL_CAC, [*EVAL_DIGITS, "--name", "x"], ["cannot write to results/"],
                                     lambda cwd: file_in_the_way(cwd, "results")),
        "lock_file_is_a_folder": (TRAIN_CAC, [*DIGITS, "--name", "lk"],
                                  ["cannot take the lock", ".Digits_0_lkCAC.lock is a folder where a file belongs",
                                   "move that folder away"],
                                  lambda cwd: os.makedirs(os.path.join(cwd, weights, ".Digits_0_lkCAC.lock"))),
    }


# cases whose failure comes from the data or the network stack, run as a real process
SUBPROCESS_CASES = {"offline_no_download", "offline_download_fails", "checkpoint_other_class_count",
                    "checkpoint_that_runs_code"}
# cases that need the private data-set folder: always in this process
PRIVATE = {f"split_{key}" for key in SPLIT_TRIALS} | {"corrupt_image_in_worker"}
ALL_IN_SUBPROCESS = os.environ.get("CAC_TEST_ERRORS_IN_SUBPROCESS") == "1"


def tree(folder):
    """Every file and folder under `folder`, relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        found.update(os.path.relpath(os.path.join(dirpath, n), folder) for n in dirnames + filenames)
    return found


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("roots")
    empty = str(base / "empty")
    mnist = str(base / "mnist")  # the training images' archive cut in half
    write_mnist(mnist, n_train=20, n_test=10, seed=0)
    gz = os.path.join(mnist, "MNIST", "raw", "train-images-idx3-ubyte.gz")
    with open(gz, "rb") as f:
        blob = f.read()
    with open(gz, "wb") as f:
        f.write(blob[: len(blob) // 2])
    cifar = str(base / "cifar")  # one training batch that is not a pickle
    write_cifar10(cifar, n_train=20, n_test=10, seed=0)
    with open(os.path.join(cifar, "cifar-10-batches-py", "data_batch_3"), "wb") as f:
        f.write(b"\x00garbage, not a pickle\xff" * 40)
    tiny = str(base / "tiny")  # the first training image of every class is not a JPEG
    top = write_tinyimagenet(tiny, num_classes=200, n_train=3, n_val=1, image_size=64, seed=0)
    for wnid in os.listdir(os.path.join(top, "train")):
        with open(os.path.join(top, "train", wnid, "images", f"{wnid}_0.JPEG"), "wb") as f:
            f.write(b"not a JPEG")
    return {"empty": empty, "mnist": mnist, "cifar": cifar, "tiny": tiny}


@pytest.fixture(scope="module")
def errors(tmp_path_factory, roots):
    """Run every case from its own working folder; returns {name: (process, tree before, tree after)}."""
    splits = private_datasets_dir(str(tmp_path_factory.mktemp("datasets_dir")))
    table = cases(roots, splits)
    if CUDA:
        del table["device_cuda"]
    results, pending = {}, []
    for name, (script_name, args, _, setup) in table.items():
        cwd = str(tmp_path_factory.mktemp(name))
        if setup:
            setup(cwd)
        before = tree(cwd)
        if name in SUBPROCESS_CASES or (ALL_IN_SUBPROCESS and name not in PRIVATE):
            pending.append((name, script_name, args, cwd, before))
            continue
        with datasets_dir(splits):
            results[name] = (run_script(script_name, *args, cwd=cwd, in_process=True), before, tree(cwd))

    def run(name, script_name, args, cwd, before):
        results[name] = (run_script(script_name, *args, cwd=cwd), before, tree(cwd))

    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=2) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")  # two processes at once on 2 cores
        for future in [pool.submit(run, *item) for item in pending]:
            future.result()
    return {"results": results, "cases": table}


@pytest.mark.parametrize("case", list(cases({"empty": "E", "mnist": "M", "cifar": "C", "tiny": "T"}, "S")))
def test_bad_input_gives_one_line_error_and_writes_nothing(errors, case):
    if case not in errors["cases"]:
        pytest.skip("CUDA is available here")
    fragments = errors["cases"][case][2]
    proc, before, after = errors["results"][case]
    assert_one_line_error(proc, *fragments)
    if case == "corrupt_image_in_worker":  # found while training: the run had begun, no best checkpoint
        new_files = {p for p in after - before if not p.startswith("runs") and os.path.splitext(p)[1]}
        assert new_files == {os.path.join("networks", "weights", "TinyImageNet",
                                          "TinyImageNet_0_myTestCACclassifierLast.pth")}, after - before
    else:
        assert after == before, sorted(after ^ before)


def test_image_size_not_a_multiple_of_8(tmp_path):
    """datasets/config.json's im_size, edited to 20: refused before any data is read."""
    def size_20(config):
        config["Digits"]["im_size"] = 20

    folder = private_datasets_dir(str(tmp_path / "datasets_dir"), size_20)
    cwd = tmp_path / "work"
    cwd.mkdir()
    for script_name, args in ((TRAIN_CAC, DIGITS), (EVAL_CE, EVAL_DIGITS)):
        with datasets_dir(folder):
            proc = run_script(script_name, *args, cwd=str(cwd), in_process=True)
        assert_one_line_error(proc, "im_size 20", os.path.join(folder, "config.json"), "multiple of 8", "32 or 64")
    assert os.listdir(cwd) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_weights_folder(tmp_path):
    cwd = tmp_path / "work"
    folder = cwd / "networks" / "weights" / "Digits"
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        proc = run_script(TRAIN_CAC, *DIGITS, cwd=str(cwd), in_process=True)
    finally:
        folder.chmod(0o755)
    assert_one_line_error(proc, "cannot write to", "Permission denied", "permissions")
    assert os.listdir(folder) == [] and not (cwd / "runs").exists()
