"""Every script answers --help without importing torch (issue 13: --help in under a second): its
parser is built and parsed in a fresh interpreter, as `python SCRIPT --help` does, and the modules
loaded by then are listed. (What this pins is the import, not a time, so it cannot be flaky.)"""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = ["train_cacOpenset.py", "train_closedSet.py", "eval_cacOpenset.py", "eval_closedSet.py", "predict.py",
           "benchmarks/eval_anchor_cache.py", "benchmarks/fingerprint.py", "benchmarks/folder_fingerprint.py", "benchmarks/gpu_check_ddp.py",
           "benchmarks/gpu_check_train.py",
           "benchmarks/openset_table.py", "benchmarks/reproduce.py",
           "benchmarks/speed.py", "scripts/import_released_weights.py", "scripts/results_table.py",
           "scripts/setup_tinyimagenet.py"]
HEAVY = ("torch", "torchvision", "matplotlib", "sklearn", "scipy")

PROBE = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, {repo!r})
sys.argv = [{script!r}, "--help"]
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "usage": out.getvalue()[:200], "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def test_every_script_with_a_main_block_is_listed():
    found = [p for p in ["train_cacOpenset.py", "train_closedSet.py", "eval_cacOpenset.py", "eval_closedSet.py",
                         "predict.py"] + [os.path.join(d, f) for d in ("benchmarks", "scripts")
                                          for f in sorted(os.listdir(os.path.join(REPO, d))) if f.endswith(".py")]
             if '__name__ == "__main__"' in open(os.path.join(REPO, p)).read()]
    assert sorted(found) == sorted(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_does_not_import_torch(script):
    code = PROBE.format(repo=REPO, script=os.path.join(REPO, script), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["usage"].startswith("usage:"), result
    assert result["heavy"] == [], f"{script} --help imports {result['heavy']}: import them after parse_args"
