"""scripts/setup_tinyimagenet.py run as a script: it sets a zip up, refuses a missing one in one
line, and documents its options."""
import os

import pytest

from conftest import run_script
from fakedata import make_tinyimagenet_zip
from rawfiles import check_ready


CLASSES, N_TRAIN, N_VAL = 5, 3, 2


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("zip") / "tiny-imagenet-200.zip"
    return str(make_tinyimagenet_zip(str(path), num_classes=CLASSES, n_train=N_TRAIN, n_val=N_VAL))


def test_as_script(tmp_path, zip_path):
    data = str(tmp_path / "data")
    cmd = ["scripts/setup_tinyimagenet.py", "--data_root", data, "--zip", zip_path]
    res = run_script(*cmd, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    check_ready(os.path.join(data, "tiny-imagenet-200"), CLASSES, N_TRAIN, N_VAL)
    bad = run_script(*cmd[:-1], os.path.join(data, "nope.zip"), "--data_root", tmp_path / "d2", cwd=tmp_path,
                     timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    helptext = run_script("scripts/setup_tinyimagenet.py", "--help", cwd=tmp_path, timeout=60).stdout
    assert "datasets/data" in helptext and "--keep_zip" in helptext
