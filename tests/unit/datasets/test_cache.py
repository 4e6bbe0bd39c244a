"""The cache folder (datasets/cache.py): --cache_dir, else $CAC_CACHE_DIR, else the user cache
directory; the partition and normalization caches land there, never in the source tree; a
folder that cannot be written costs one warning per cache, not the run."""
import json
import os
from argparse import Namespace

import numpy as np
import pytest
from conftest import REPO, captured_stderr_lines
from rawfiles import read_split

from datasets.cache import resolve_cache_dir
from datasets.trial import OpenSetData


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home folder; no CAC_CACHE_DIR nor XDG_CACHE_HOME set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CAC_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "home"


def test_the_flag_wins_over_the_variable_which_wins_over_the_user_cache_directory(home, tmp_path, monkeypatch):
    assert resolve_cache_dir() == str(home / ".cache" / "cac")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == str(tmp_path / "xdg" / "cac")
    monkeypatch.setenv("CAC_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir() == str(tmp_path / "env")
    assert resolve_cache_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")


@pytest.mark.parametrize("xdg", ["", "relative/cache"])
def test_an_empty_variable_or_a_relative_xdg_cache_home_is_ignored(home, monkeypatch, xdg):
    monkeypatch.setenv("CAC_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)  # the XDG specification: absolute paths only
    assert resolve_cache_dir() == str(home / ".cache" / "cac")


def digits_args(**given):
    return Namespace(dataset="Digits", data_root="unused", no_download=True, **given)


def source_tree_caches():
    """Cache files in the repo's datasets/ (where they were written before): none may appear."""
    return sorted(os.path.relpath(os.path.join(top, name), REPO)
                  for top, _, names in os.walk(os.path.join(REPO, "datasets"))
                  for name in names if name == "trainval_idxs.json" or os.path.basename(top) == "normalization")


@pytest.mark.parametrize("where", ["flag", "variable", "default"])
def test_the_partition_and_normalization_land_in_the_cache_folder(home, tmp_path, monkeypatch, where):
    expected = {"flag": tmp_path / "flag", "variable": tmp_path / "env", "default": home / ".cache" / "cac"}[where]
    if where != "default":
        monkeypatch.setenv("CAC_CACHE_DIR", str(tmp_path / "env"))
    before = source_tree_caches()
    data = OpenSetData.from_args(digits_args(cache_dir=str(tmp_path / "flag") if where == "flag" else None), 0)
    partition = json.loads((expected / "Digits" / "trainval_idxs.json").read_text())
    known = read_split("Digits", 0)[0]
    assert data.train_idx.tolist() == sorted(i for c in known for i in partition["Train"][str(c)])
    assert json.loads((expected / "Digits" / "normalization" / "0.json").read_text())["mean"] == data.mean
    assert os.listdir(tmp_path) == [expected.relative_to(tmp_path).parts[0]]  # nowhere else
    assert source_tree_caches() == before


def test_without_a_cache_folder_nothing_is_written(home, tmp_path):
    """A trial built directly without `cache_dir` (tests, benchmarks) makes its partition and
    normalization and writes nothing, not even into the default folder."""
    data = OpenSetData("Digits", 0, download=False)
    cached = OpenSetData.from_args(digits_args(cache_dir=str(tmp_path / "c")), 0)
    assert data.train_idx.tolist() == cached.train_idx.tolist() and data.mean == cached.mean
    assert not home.exists()


def test_a_cache_folder_that_cannot_be_written_costs_one_warning_per_cache(tmp_path, capsys):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    good = OpenSetData("Digits", 0, download=False)
    capsys.readouterr()
    data = OpenSetData.from_args(digits_args(cache_dir=str(blocked)), 0)
    lines = captured_stderr_lines(capsys)
    assert len(lines) == 2 and all(line.startswith("warning: cannot write the cache ") for line in lines), lines
    assert str(blocked / "Digits" / "trainval_idxs.json") in lines[0] and "normalization" in lines[1]
    assert "--cache_dir" in lines[0] and "CAC_CACHE_DIR" in lines[0]
    assert f"(Not a directory: {blocked} is a file, not a folder)" in lines[0]  # the true cause, named
    assert np.array_equal(data.train_idx, good.train_idx) and data.mean == good.mean and data.std == good.std
    assert blocked.read_text() == "not a folder"
