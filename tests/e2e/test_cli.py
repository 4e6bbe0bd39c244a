"""The four command-line scripts end to end, as a user runs them, on tiny fake data sets
in each real on-disk format (and the embedded Digits data). Bad input: test_bad_input.py.

Every script runs its main() in this process (as its __main__ block does, conftest.run_script),
from its own temporary working directory (that is where networks/weights/, runs/ and results/
go); the process boundary itself is tested in tests/unit/test_startup.py and test_bad_input.py.
Each group of runs (all families, Digits) is one module-scoped fixture that runs its chains one
after another; --help is read from the parsers.
"""
import ast
import glob
import json
import math
import os
import re

import pytest
import torch

from conftest import CPU_EXACT, run_script
from scripts.setup_tinyimagenet import main as setup_tinyimagenet
from fakedata import make_tinyimagenet_zip, write_cifar10, write_cifar100, write_mnist, write_svhn
from networks.weights import CAC, RUN_FILES

pytestmark = pytest.mark.slow  # minute-scale on 2 cores: `-m "not slow"` leaves it out

TRAIN_CAC, TRAIN_CE = "train_cacOpenset.py", "train_closedSet.py"
EVAL_CAC, EVAL_CE = "eval_cacOpenset.py", "eval_closedSet.py"
FAST = ("--workers", "0")

CAC_SCALARS = {"train/CAC_Loss", "train/anchor_Loss", "train/tuplet_Loss", "train/accuracy",
               "val/accuracy", "val/anchorLoss", "val/CACLoss"}
CE_SCALARS = {"train/CE_Loss", "train/accuracy", "val/accuracy", "val/CE_Loss"}
# metrics.jsonl names the unit of its percentages (results files hold shares); the tensorboard tags are the original's
LOGGED = {"train/accuracy": "train/accuracy_percent", "val/accuracy": "val/accuracy_percent"}
CAC_SUFFIXES = RUN_FILES[CAC][:-1]  # the best checkpoints (not ...Last); the names: unit/networks/test_weights.py

# (image size, channels, known classes) per data set: SPEC sections 2 and 4 (Digits: 16 x 16 grey)
SHAPES = {"MNIST": (32, 1, 6), "SVHN": (32, 3, 6), "CIFAR10": (32, 3, 6), "CIFAR+10": (32, 3, 4),
          "CIFAR+50": (32, 3, 4), "TinyImageNet": (64, 3, 20), "Digits": (16, 1, 6)}
FLOAT = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
EVAL_PATTERNS = {
    "raw_acc": re.compile(r"^Raw Top-1 Accuracy: (\[.*\])$", re.M),
    "raw_auroc": re.compile(r"^Raw AUROC: (\[.*\])$", re.M),
    "avg_acc": re.compile(rf"^Average Top-1 Accuracy: ({FLOAT})$", re.M),
    "avg_auroc": re.compile(rf"^Average AUROC: ({FLOAT})$", re.M),
}


# ------------------------------------------------------------------ helpers
def run_chains(chains):
    """chains: list of lists of (key, callable), run in order. Returns {key: result}; a step that
    raises is stored as the exception, for the test that reads it."""
    results = {}
    for chain in chains:
        for key, step in chain:
            try:
                results[key] = step()
            except Exception as e:  # noqa: BLE001 - reported by the test that reads it
                results[key] = e
    return results


def script(name, *args, cwd):
    return lambda: run_script(name, *args, cwd=cwd, in_process=True)


def get(results, key):
    value = results[key]
    if isinstance(value, Exception):
        raise value
    return value


def ok(proc):
    assert proc.returncode == 0, (proc.args, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    return proc


def epoch_lines(proc):
    """The JSON object printed once per epoch."""
    lines = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "epoch" in obj:
                lines.append(obj)
    return lines


def check_epoch_lines(proc, scalars, epochs):
    lines = epoch_lines(ok(proc))
    assert [line["epoch"] for line in lines] == list(epochs), proc.stdout[-2000:]
    for line in lines:
        assert set(line) == {"epoch"} | {LOGGED.get(s, s) for s in scalars}
        assert all(math.isfinite(v) for v in line.values())
        assert 0 <= line["train/accuracy_percent"] <= 100 and 0 <= line["val/accuracy_percent"] <= 100
        if "train/CAC_Loss" in line:  # total = lbda * anchor + tuplet, lbda = 0.1 (SPEC 1)
            assert line["train/CAC_Loss"] == pytest.approx(
                0.1 * line["train/anchor_Loss"] + line["train/tuplet_Loss"], abs=1e-4)
            assert line["val/CACLoss"] >= 0.1 * line["val/anchorLoss"] - 1e-6
            assert line["train/anchor_Loss"] > 0 and line["train/tuplet_Loss"] > 0
        else:
            assert line["train/CE_Loss"] > 0 and line["val/CE_Loss"] > 0
    return lines


def parse_eval(proc, cwd, dataset, method, name="myTest", trials=(0,)):
    """The original's four lines, exactly, and the results JSON holding the same numbers."""
    out = ok(proc).stdout
    found = {}
    for key, pattern in EVAL_PATTERNS.items():
        matches = pattern.findall(out)
        assert len(matches) == 1, (key, out[-2000:])
        found[key] = ast.literal_eval(matches[0]) if key.startswith("raw") else float(matches[0])
    assert len(found["raw_acc"]) == len(found["raw_auroc"]) == len(trials)
    for value in found["raw_acc"] + found["raw_auroc"] + [found["avg_acc"], found["avg_auroc"]]:
        assert isinstance(value, float) and 0.0 <= value <= 1.0, found
    assert found["avg_acc"] == pytest.approx(sum(found["raw_acc"]) / len(trials), abs=1e-4)
    assert found["avg_auroc"] == pytest.approx(sum(found["raw_auroc"]) / len(trials), abs=1e-4)
    printed = re.findall(r"\d+\.\d+", "".join(p.search(out)[0] for p in EVAL_PATTERNS.values()))
    assert printed and all(len(number.split(".")[1]) == 4 for number in printed), printed  # rounded, as the table
    written = re.findall(r"^results written to (.+)$", out, re.M)
    assert len(written) == 1
    path = os.path.join(cwd, written[0])
    assert os.path.dirname(os.path.relpath(path, cwd)) == "results" and path.endswith(".json")
    with open(path) as f:
        result = json.load(f)
    assert result["dataset"] == dataset and result["method"] == method and result["name"] == name
    assert result["trials"] == list(trials)
    four = lambda values: [float(f"{v:.4f}") for v in values]  # noqa: E731 - the printed form of the file's values
    assert four(result["raw_top1_accuracy"]) == found["raw_acc"] and four(result["raw_auroc"]) == found["raw_auroc"]
    assert four([result["average_top1_accuracy"], result["average_auroc"]]) == [found["avg_acc"], found["avg_auroc"]]
    return found


def weights(cwd, dataset, trial, name, suffix):
    return os.path.join(cwd, "networks", "weights", dataset, f"{dataset}_{trial}_{name}{suffix}.pth")


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def check_checkpoint(path, dataset, cac, backbone="cnn", alpha=10.0):
    assert os.path.isfile(path), path
    ckpt = load(path)
    assert isinstance(ckpt, dict) and {"net", "acc", "epoch", "backbone"} <= set(ckpt)
    assert ckpt["backbone"] == backbone and isinstance(ckpt["epoch"], int)
    assert isinstance(ckpt["acc"], float)
    size, channels, n = SHAPES[dataset]
    net = ckpt["net"]
    if backbone == "cnn":  # SPEC 2: 9 convolutions, Linear of 128 * (im_size / 8)^2 inputs
        assert tuple(net["encoder.conv1.weight"].shape) == (64, channels, 3, 3)
        assert tuple(net["encoder.conv9.weight"].shape) == (128, 128, 3, 3)
        assert tuple(net["classify.weight"].shape) == (n, 128 * (size // 8) ** 2)
    assert net["classify.weight"].shape[0] == n
    if cac:  # the training anchors: alpha * one-hot, float64
        assert net["anchors"].dtype == torch.float64
        assert torch.equal(net["anchors"], alpha * torch.eye(n, dtype=torch.float64))
    else:
        assert "anchors" not in net
    return ckpt


def tensorboard_tags(run_dir):
    """The bytes of the tensorboard event files in run_dir (the scalar tags appear in them)."""
    events = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    assert events, f"no tensorboard event file in {run_dir}"
    blob = b""
    for path in events:
        with open(path, "rb") as f:
            blob += f.read()
    return blob


# ------------------------------------------------------------------ --help (the parsers, in-process)
@pytest.mark.parametrize("module,flags", [
    ("train_cacOpenset", ["--dataset", "--trial", "-r", "--resume", "-t", "--tensorboard", "--name",
                          "--alpha", "--lbda", "--epochs", "--data_root", "--seed", "--device",
                          "--backbone", "--workers", "--continue"]),
    ("train_closedSet", ["--dataset", "--trial", "-r", "--resume", "-t", "--tensorboard", "--name",
                         "--epochs", "--data_root", "--seed", "--device", "--backbone", "--workers", "--continue"]),
    ("eval_cacOpenset", ["-dataset", "--num_trials", "--start_trial", "--name", "--data_root", "--seed",
                         "--device", "--workers"]),
    ("eval_closedSet", ["-dataset", "--num_trials", "--start_trial", "--name", "--data_root", "--seed",
                        "--device", "--workers"]),
])
def test_help_lists_the_flags(module, flags, capsys):
    mod = __import__(module)
    with pytest.raises(SystemExit) as done:
        mod.parse_args(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    words = set(re.findall(r"(?<![\w-])-{1,2}[A-Za-z_]+", out))
    for flag in flags:
        assert flag in words, (flag, out)
    if module == "train_closedSet":  # the CAC flags belong to the CAC script only
        assert "--alpha" not in words and "--lbda" not in words


# ------------------------------------------------------------------ every family end to end
FAMILY_TRIALS = {"MNIST": 0, "SVHN": 0, "CIFAR10": 0, "CIFAR+10": 0, "TinyImageNet": 0}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Fake data of each family, then CAC train -> eval and CE train -> eval in each.

    Sizes and seeds are those of test_datasets.py (so the repo's train/validation partition caches stay valid
    between the two files), except TinyImageNet: 5 training images and 1 val image per class
    (4 train / 1 val per known class, 20 known and 180 unknown test images) halve its cost."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(str(root), n_train=20, n_test=10, seed=0)
    write_svhn(str(root / "svhn"), n_train=20, n_test=10, seed=0)
    write_cifar10(str(root), n_train=20, n_test=10, seed=0)
    write_cifar100(str(root), n_train=2, n_test=5, seed=0)
    zip_path = str(tmp_path_factory.mktemp("zip") / "tiny-imagenet-200.zip")  # set up as a user does
    make_tinyimagenet_zip(zip_path, num_classes=200, n_train=5, n_val=1, image_size=64, seed=0)
    assert setup_tinyimagenet(["--data_root", str(root), "--zip", zip_path]) == 0
    chains, work = [], {}
    for ds, trial in FAMILY_TRIALS.items():
        cwd = str(tmp_path_factory.mktemp(f"work_{ds.replace('+', 'plus')}"))
        work[ds] = cwd
        common = ("--trial", trial, "--epochs", 1, "--data_root", str(root), *FAST)
        ev = ("--num_trials", 1, "--start_trial", trial, "--name", "myTest", "--data_root", str(root), *FAST)
        cac = [((ds, "cac_train"), script(TRAIN_CAC, "--dataset", ds, *common, cwd=cwd)),
               ((ds, "cac_eval"), script(EVAL_CAC, "-dataset", ds, *ev, cwd=cwd))]
        if ds == "CIFAR+10":
            cac.append(((ds, "cac_eval_plus50"), script(EVAL_CAC, "-dataset", "CIFAR+50", *ev, cwd=cwd)))
        ce = [((ds, "ce_train"), script(TRAIN_CE, "--dataset", ds, *common, cwd=cwd)),
              ((ds, "ce_eval"), script(EVAL_CE, "--dataset", ds, *ev, cwd=cwd))]  # 2 dashes work too
        chains += [cac, ce]
    results = run_chains(chains)
    return {"results": results, "work": work, "root": str(root)}


FAMILY_IDS = list(FAMILY_TRIALS)


@pytest.mark.parametrize("ds", FAMILY_IDS)
def test_family_cac_training(families, ds):
    cwd, trial = families["work"][ds], FAMILY_TRIALS[ds]
    check_epoch_lines(get(families["results"], (ds, "cac_train")), CAC_SCALARS, [0])
    for suffix in CAC_SUFFIXES:
        ckpt = check_checkpoint(weights(cwd, ds, trial, "myTest", suffix), ds, cac=True)
        assert ckpt["epoch"] == 0
    if ds == "CIFAR+10":  # the same networks under CIFAR+50 names (same known classes)
        for suffix in CAC_SUFFIXES:
            a = load(weights(cwd, "CIFAR+10", trial, "myTest", suffix))
            b = load(weights(cwd, "CIFAR+50", trial, "myTest", suffix))
            assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


@pytest.mark.parametrize("ds", FAMILY_IDS)
def test_family_cac_eval(families, ds):
    parse_eval(get(families["results"], (ds, "cac_eval")), families["work"][ds], ds, "CAC",
               trials=(FAMILY_TRIALS[ds],))


def test_cifar_plus50_eval_uses_the_cifar_plus10_training(families):
    cwd = families["work"]["CIFAR+10"]
    assert os.path.isfile(weights(cwd, "CIFAR+50", 0, "myTest", "closedSetClassifier"))
    parse_eval(get(families["results"], ("CIFAR+10", "cac_eval_plus50")), cwd, "CIFAR+50", "CAC")


@pytest.mark.parametrize("ds", FAMILY_IDS)
def test_family_closed_set(families, ds):
    cwd, trial = families["work"][ds], FAMILY_TRIALS[ds]
    check_epoch_lines(get(families["results"], (ds, "ce_train")), CE_SCALARS, [0])
    ckpt = check_checkpoint(weights(cwd, ds, trial, "myTest", "closedSetClassifier"), ds, cac=False)
    assert ckpt["epoch"] == 0
    parse_eval(get(families["results"], (ds, "ce_eval")), cwd, ds, "ClosedSet", trials=(trial,))


# ------------------------------------------------------------------ Digits: all four scripts, resume, -t
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cwd = str(tmp_path_factory.mktemp("digits"))
    base = ("--dataset", "Digits", "--trial", 0, *FAST)
    ev = ("--num_trials", 1, "--start_trial", 0, *FAST)

    def snapshot(*suffixes):
        # the first run's files, read before -r overwrites them
        return lambda: {suffix: load(weights(cwd, "Digits", 0, "myTest", suffix)) for suffix in suffixes}

    chains = [
        [("cac_train", script(TRAIN_CAC, *base, "--epochs", 2, "--seed", 3, "-t", cwd=cwd)),
         ("cac_snapshot", snapshot(*CAC_SUFFIXES)),
         ("cac_eval", script(EVAL_CAC, "-dataset", "Digits", *ev, "--name", "myTest", cwd=cwd)),
         ("cac_resume", script(TRAIN_CAC, *base, "-r", "--epochs", 2, "--seed", 3, cwd=cwd))],
        [("ce_train", script(TRAIN_CE, *base, "--epochs", 2, "-t", cwd=cwd)),
         ("ce_snapshot", snapshot("closedSetClassifier")),
         ("ce_eval", script(EVAL_CE, "-dataset", "Digits", *ev, "--name", "myTest", cwd=cwd)),
         ("ce_resume", script(TRAIN_CE, *base, "-r", "--epochs", 2, cwd=cwd))],
        [("twin_train", script(TRAIN_CAC, *base, "--epochs", 2, "--seed", 3, "-t", "--name", "twin", cwd=cwd)),
         ("twin_eval", script(EVAL_CAC, "-dataset", "Digits", *ev, "--name", "twin", cwd=cwd))],
        [("wrn_train", script(TRAIN_CAC, *base, "--epochs", 1, "--backbone", "wrn-10-1", "--name", "wrn",
                              cwd=cwd)),
         ("wrn_eval", script(EVAL_CAC, "--dataset", "Digits", *ev, "--name", "wrn", cwd=cwd))],
    ]
    return {"results": run_chains(chains), "cwd": cwd}


def test_digits_cac_train(digits):
    r, cwd = digits["results"], digits["cwd"]
    lines = check_epoch_lines(get(r, "cac_train"), CAC_SCALARS, [0, 1])
    first = get(r, "cac_snapshot")
    for suffix in CAC_SUFFIXES:
        path = weights(cwd, "Digits", 0, "myTest", suffix)
        check_checkpoint(path, "Digits", cac=True)  # (by now written by the resumed run)
        assert first[suffix]["epoch"] in (0, 1) and first[suffix]["backbone"] == "cnn"
    # each file holds an epoch that was best by its own validation measure
    for suffix, key, pick in (("CACclassifierAnchorLoss", "val/anchorLoss", min),
                              ("CACclassifierCACLoss", "val/CACLoss", min),
                              ("CACclassifierAccuracy", "val/accuracy_percent", max)):
        best = pick(line[key] for line in lines)
        assert first[suffix]["epoch"] in [line["epoch"] for line in lines if line[key] == best], suffix
    assert first["CACclassifierAccuracy"]["acc"] == pytest.approx(max(l["val/accuracy_percent"] for l in lines), abs=1e-4)
    blob = tensorboard_tags(os.path.join(cwd, "runs", "Digits_0_myTestCAC"))
    for tag in CAC_SCALARS:
        assert tag.encode() in blob, tag


def test_digits_cac_eval(digits):
    found = parse_eval(get(digits["results"], "cac_eval"), digits["cwd"], "Digits", "CAC")
    assert found["avg_acc"] > 0.5  # real digits after 2 epochs; chance is 1/6


@pytest.mark.parametrize("method,suffix,scalars", [
    ("cac", "CACclassifierAnchorLoss", CAC_SCALARS),  # -r resumes from the AnchorLoss file
    ("ce", "closedSetClassifier", CE_SCALARS),  # SPEC 8: the original counted these epochs twice
])
def test_digits_resume_continues_after_the_saved_epoch_once(digits, method, suffix, scalars):
    r, cwd = digits["results"], digits["cwd"]
    first = get(r, f"{method}_snapshot")[suffix]
    saved = first["epoch"]
    lines = check_epoch_lines(get(r, f"{method}_resume"), scalars, [saved + 1, saved + 2])
    assert len(lines) == 2
    ckpt = check_checkpoint(weights(cwd, "Digits", 0, "myTest", suffix), "Digits", cac=method == "cac")
    if method == "cac":  # the best values start afresh: the resumed run's first epoch is saved
        assert ckpt["epoch"] in (saved + 1, saved + 2)
    else:  # the original: the loaded accuracy is the one to beat, strictly
        better = [line for line in lines if line["val/accuracy_percent"] > first["acc"]]
        if better:
            best = max(line["val/accuracy_percent"] for line in better)
            assert ckpt["epoch"] == min(line["epoch"] for line in better if line["val/accuracy_percent"] == best)
        else:
            assert ckpt["epoch"] == saved and ckpt["acc"] == first["acc"]


def test_digits_closed_set_train(digits):
    r, cwd = digits["results"], digits["cwd"]
    lines = check_epoch_lines(get(r, "ce_train"), CE_SCALARS, [0, 1])
    first = get(r, "ce_snapshot")["closedSetClassifier"]
    best = max(line["val/accuracy_percent"] for line in lines)
    assert first["epoch"] in [line["epoch"] for line in lines if line["val/accuracy_percent"] == best]
    assert first["acc"] == pytest.approx(best, abs=1e-4)
    assert first["backbone"] == "cnn" and "anchors" not in first["net"]
    blob = tensorboard_tags(os.path.join(cwd, "runs", "Digits_0_myTestClosedSet"))
    for tag in CE_SCALARS:
        assert tag.encode() in blob, tag


def test_digits_closed_set_eval(digits):
    found = parse_eval(get(digits["results"], "ce_eval"), digits["cwd"], "Digits", "ClosedSet")
    assert found["avg_acc"] > 0.5


@CPU_EXACT
def test_digits_same_seed_same_weights_and_numbers(digits):
    r, cwd = digits["results"], digits["cwd"]
    ok(get(r, "twin_train"))
    first = get(r, "cac_snapshot")
    for suffix in CAC_SUFFIXES:
        a, b = first[suffix], load(weights(cwd, "Digits", 0, "twin", suffix))
        assert a["epoch"] == b["epoch"] and set(a["net"]) == set(b["net"])
        for key in a["net"]:
            assert torch.equal(a["net"][key], b["net"][key]), (suffix, key)
    a = parse_eval(get(r, "cac_eval"), cwd, "Digits", "CAC")
    b = parse_eval(get(r, "twin_eval"), cwd, "Digits", "CAC", name="twin")
    assert a == b


def test_digits_wide_resnet_backbone(digits):
    r, cwd = digits["results"], digits["cwd"]
    check_epoch_lines(get(r, "wrn_train"), CAC_SCALARS, [0])
    ckpt = check_checkpoint(weights(cwd, "Digits", 0, "wrn", "CACclassifierAnchorLoss"), "Digits",
                            cac=True, backbone="wrn-10-1")
    assert "encoder.conv9.weight" not in ckpt["net"]  # not the paper's CNN
    parse_eval(get(r, "wrn_eval"), cwd, "Digits", "CAC", name="wrn")  # rebuilt from the checkpoint
