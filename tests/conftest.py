"""Shared test helpers: repo paths on sys.path, the released reference files, the script runner,
the Digits networks trained and evaluated once for the evaluation and predict.py tests, and the
two kinds of test: tests/unit/ (one file per module, fast: `pytest tests/unit`) and tests/e2e/
(whole script runs), marked `unit` and `e2e` by their folder. The session keeps every cache in
a private CAC_CACHE_DIR and fails when a file of the checkout appeared or changed."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

# a test that needs two runs' weights equal bit for bit: on a CUDA machine the scripts train on the GPU (device
# auto), where cudnn.benchmark picks kernels per process and no deterministic mode is set (docs/determinism.md)
CPU_EXACT = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="bit-exact only on the CPU: on CUDA "
                               "cudnn.benchmark picks kernels per process, without deterministic algorithms")

REFERENCE = os.path.join(os.path.dirname(REPO), "shared", "reference")
PROTOCOL = os.path.join(os.path.dirname(REPO), "shared", "protocol", "class_splits.json")


def require_shared(path):
    """Skip when ../shared (the released checkpoints, the protocol's facts) is absent, as next to
    a bare clone; CI sets CAC_REQUIRE_SHARED=1, where its absence fails the test instead."""
    if not os.path.exists(path):
        message = f"{path} is absent"
        if os.environ.get("CAC_REQUIRE_SHARED"):
            pytest.fail(f"{message}, and CAC_REQUIRE_SHARED is set")
        pytest.skip(message)
    return path


@pytest.fixture
def reference_dir():
    return require_shared(REFERENCE)


def run_script(script, *args, cwd, in_process=False, timeout=600):
    """`python <script> <args>` from `cwd`, as a user runs it; returns a CompletedProcess. By
    default a real process; with `in_process` the script's main() through run_cli, as its
    __main__ block does, in this process with stdout and stderr captured (much faster; a test
    may monkeypatch the script's module)."""
    argv = [str(a) for a in args]
    if not in_process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        return subprocess.run([sys.executable, os.path.join(REPO, script), *argv], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, env=env)
    import contextlib
    import importlib
    import io

    from engine.cli import run_cli

    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    out, err, old = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_cli(lambda: module.main(argv))
            except SystemExit as e:  # argparse's --help
                code = e.code
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess([script, *argv], code, out.getvalue(), err.getvalue())


def ok(proc):
    """The run succeeded: status 0, and no traceback on stderr."""
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def assert_one_line_error(proc, *fragments):
    """A bad input ends with status 2 and one line on stderr naming the problem; no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def one_line(error):
    """A UserError's message is one line, of a readable length."""
    message = str(error)
    assert "\n" not in message and len(message) < 600, message
    return message


def captured_stderr_lines(capsys):
    """The non-blank lines written to stderr since the last read."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# the networks of `evaluated_digits`: where they are, and the evaluation that calibrated them
DIGITS_EVAL = ["-dataset", "Digits", "--num_trials", "1", "--start_trial", "0", "--name", "s", "--workers", "0"]
DIGITS_WEIGHTS = os.path.join("networks", "weights", "Digits")
DIGITS_CAC = os.path.join(DIGITS_WEIGHTS, "Digits_0_sCACclassifierAnchorLoss.pth")  # literal: what a user sees
DIGITS_CE = os.path.join(DIGITS_WEIGHTS, "Digits_0_sclosedSetClassifier.pth")
DIGITS_STEM = {"CAC": os.path.join("results", "Digits_sCAC_trials0-0"),
               "ClosedSet": os.path.join("results", "Digits_sClosedSet_trials0-0")}


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """A folder where CAC and cross-entropy networks were trained for one epoch on Digits trial 0
    (--name s, in-process), nothing evaluated, with the first 3 Digits test images as 8 x 8 PNG files
    (images/): the suite's one training of this pair. Change only a copy (`work`)."""
    import torch
    from PIL import Image

    from datasets.digits import Digits

    base = str(tmp_path_factory.mktemp("trained"))
    torch.set_num_threads(1)
    train = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--name", "s", "--workers", "0"]
    ok(run_script("train_cacOpenset.py", *train, cwd=base, in_process=True))
    ok(run_script("train_closedSet.py", *train, cwd=base, in_process=True))
    os.makedirs(os.path.join(base, "images"))
    for i, image in enumerate(Digits(train=False).data[:3]):
        Image.fromarray(image).save(os.path.join(base, "images", f"digit_{i}.png"))
    return base


@pytest.fixture(scope="session")
def evaluated_digits(trained_digits, tmp_path_factory):
    """trained_digits (a copy), both networks evaluated once: results/, a calibration beside each
    evaluated checkpoint. Shared by a whole session: change only a copy (`work`)."""
    base = str(tmp_path_factory.mktemp("evaluated") / "w")
    shutil.copytree(trained_digits, base)
    ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=base, in_process=True))
    ok(run_script("eval_closedSet.py", *DIGITS_EVAL, cwd=base, in_process=True))
    return base


def work(trained, tmp_path, uncalibrated=False):
    """A private copy of the trained folder (weights, results, runs); optionally with the CAC
    checkpoint as training left it (no calibration beside it yet)."""
    cwd = str(tmp_path / "w")
    shutil.copytree(trained, cwd)
    if uncalibrated:
        os.remove(calibration_file(os.path.join(cwd, DIGITS_CAC)))
    return cwd


def calibration_file(checkpoint):
    """Where the calibration of `checkpoint` (X.pth) is kept: X.calibration.json, written out here."""
    assert checkpoint.endswith(".pth")
    return checkpoint[:-len(".pth")] + ".calibration.json"


def read_calibration_file(checkpoint):
    import json

    with open(calibration_file(checkpoint)) as f:
        return json.load(f)


def sha256(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def edit_checkpoint(cwd, path, change):
    """Load the checkpoint `path` under `cwd`, let `change` edit it, save it back."""
    import torch

    ckpt = torch.load(os.path.join(cwd, path), weights_only=True)
    change(ckpt)
    torch.save(ckpt, os.path.join(cwd, path))


def nan_weight(ckpt):
    """A NaN weight: refused when the checkpoint is loaded."""
    ckpt["net"]["classify.weight"][0, 0] = float("nan")


def overflowing_weights(ckpt):
    """Finite weights whose outputs overflow to inf."""
    ckpt["net"]["classify.weight"].fill_(3e38)  # finite, but the logits overflow to inf


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def checkout_files():
    """{path: (size, mtime) or None (deleted)} of every file of the checkout that git does not
    track (ignored ones included) or that differs from the commit, but Python's own caches; None
    when git cannot say (no git, not a checkout)."""
    try:
        listed = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--ignored", "--untracked-files=all",
                                 "-z", "--", ".", ":(exclude).venv"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0:
        return None
    found = {}
    for entry in filter(None, listed.stdout.split("\0")):
        path = entry[3:]
        if any(part in ("__pycache__", ".pytest_cache") for part in path.split("/")) or path.endswith(".pyc"):
            continue
        try:
            status = os.stat(os.path.join(REPO, path))
            found[path] = (status.st_size, status.st_mtime_ns)
        except OSError:  # deleted
            found[path] = None
    return found


@pytest.fixture(scope="session", autouse=True)
def checkout_left_as_found(tmp_path_factory):
    """Every run of the session, in this process or a script's, keeps its caches in a private folder
    ($CAC_CACHE_DIR, datasets/cache.py); the session fails if it wrote any file into the checkout."""
    before, previous = checkout_files(), os.environ.get("CAC_CACHE_DIR")
    os.environ["CAC_CACHE_DIR"] = str(tmp_path_factory.mktemp("cac_cache"))
    yield
    if previous is None:
        os.environ.pop("CAC_CACHE_DIR", None)
    else:
        os.environ["CAC_CACHE_DIR"] = previous
    after = checkout_files()
    if before is not None and after is not None and after != before:
        written = sorted(p for p in set(before) | set(after) if before.get(p, "absent") != after.get(p, "absent"))
        pytest.fail(f"files of the checkout {REPO} appeared or changed during the tests: {', '.join(written[:10])} "
                    f"(unless edited meanwhile: a test must write under tmp_path, its caches in CAC_CACHE_DIR)",
                    pytrace=False)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache folder of this test alone, also for the scripts it runs ($CAC_CACHE_DIR): a cache
    left by another test can neither hide a wrong computation nor race with it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CAC_CACHE_DIR", str(folder))
    return folder


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: a module's own test (tests/unit/, fast)")
    config.addinivalue_line("markers", "e2e: runs whole scripts (tests/e2e/)")
    config.addinivalue_line("markers", "slow: minute-scale on 2 CPU cores (`-m 'not slow'` leaves them out)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = os.path.relpath(str(item.path), os.path.join(REPO, "tests")).split(os.sep)
        if parts[0] in ("unit", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
