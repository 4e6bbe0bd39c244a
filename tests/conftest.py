"""Shared test helpers: repo paths on sys.path, the released reference files, the script runner,
the Digits networks trained and evaluated once for the evaluation and predict.py tests, and the
two kinds of test: tests/unit/ (one file per module, fast: `pytest tests/unit`) and tests/e2e/
(whole script runs), marked `unit` and `e2e` by their folder."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

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
def evaluated_digits(tmp_path_factory):
    """A folder where CAC and cross-entropy networks were trained for one epoch on Digits trial 0
    (--name s, in-process) and evaluated once (results/, a calibration in each checkpoint), with
    the CAC checkpoint as training left it (uncalibrated_cac.pth) and the first 3 Digits test
    images as 8 x 8 PNG files (images/). Shared by a whole session: change only a copy (`work`)."""
    import torch
    from PIL import Image

    from datasets.digits import Digits

    base = str(tmp_path_factory.mktemp("trained"))
    torch.set_num_threads(1)
    train = ["--dataset", "Digits", "--trial", "0", "--epochs", "1", "--name", "s", "--workers", "0"]
    ok(run_script("train_cacOpenset.py", *train, cwd=base, in_process=True))
    ok(run_script("train_closedSet.py", *train, cwd=base, in_process=True))
    shutil.copy(os.path.join(base, DIGITS_CAC), os.path.join(base, "uncalibrated_cac.pth"))
    ok(run_script("eval_cacOpenset.py", *DIGITS_EVAL, cwd=base, in_process=True))
    ok(run_script("eval_closedSet.py", *DIGITS_EVAL, cwd=base, in_process=True))
    images = os.path.join(base, "images")
    os.makedirs(images)
    test = Digits(train=False)
    for i in range(3):
        Image.fromarray(test.data[i]).save(os.path.join(images, f"digit_{i}.png"))
    return base


def work(trained, tmp_path, uncalibrated=False):
    """A private copy of the trained folder (weights, results, runs); optionally with the CAC
    checkpoint as training left it (no calibration yet)."""
    cwd = str(tmp_path / "w")
    shutil.copytree(trained, cwd)
    if uncalibrated:
        shutil.copy(os.path.join(cwd, "uncalibrated_cac.pth"), os.path.join(cwd, DIGITS_CAC))
    return cwd


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


@pytest.fixture
def isolated_datasets_dir(tmp_path, monkeypatch):
    """The repo's class split files copied into a private folder that datasets/splits.py then
    uses, so the caches seen here (train/val split, normalization) are written by this test
    alone: a cache left by another run can neither hide a wrong computation nor race with it."""
    import datasets.splits as splits

    private = tmp_path / "datasets_dir"
    source = os.path.join(REPO, "datasets")
    for name in os.listdir(source):
        if os.path.isdir(os.path.join(source, name, "class_splits")):
            shutil.copytree(os.path.join(source, name, "class_splits"), private / name / "class_splits")
    monkeypatch.setattr(splits, "DATASETS_DIR", str(private))
    return private


@pytest.fixture(scope="module")
def private_caches(tmp_path_factory):
    """Train/val and normalization caches of a whole test module in a private folder, not the repo's
    (datasets.config, which reads config.json from the repo's folder, is imported first: it binds
    that folder when first imported)."""
    import datasets.config  # noqa: F401
    import datasets.splits as splits

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(splits, "DATASETS_DIR", str(tmp_path_factory.mktemp("datasets_dir")))
        yield


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: a module's own test (tests/unit/, fast)")
    config.addinivalue_line("markers", "e2e: runs whole scripts (tests/e2e/)")
    config.addinivalue_line("markers", "slow: over about 20 s on 2 CPU cores (`-m 'not slow'` leaves them out)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = os.path.relpath(str(item.path), os.path.join(REPO, "tests")).split(os.sep)
        if parts[0] in ("unit", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
