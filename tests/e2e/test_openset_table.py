"""benchmarks/openset_table.py: cells from the repo's own eval results, resumable, honest Markdown."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_script
from core.errors import UserError

pytestmark = pytest.mark.slow  # minute-scale on 2 cores: `-m "not slow"` leaves it out


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    work = tmp_path_factory.mktemp("table")
    out = work / "tbl"
    argv = ["--dataset", "Digits", "--trials", "0", "1", "--methods", "CAC", "--epochs", "1",
            "--out", out, "--workdir", work]
    proc = run_script("benchmarks/openset_table.py", *argv, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work, out, argv


def test_cells_are_the_evaluation_results(table):
    work, out, _ = table
    cells = json.loads(out.with_suffix(".json").read_text())["cells"]
    assert sorted(cells) == ["0/CAC", "1/CAC"]
    for trial in (0, 1):
        with open(work / "results" / f"Digits_table_e1CAC_trials{trial}-{trial}.json") as f:
            result = json.load(f)
        assert cells[f"{trial}/CAC"]["accuracy"] == result["raw_top1_accuracy"][0]
        assert cells[f"{trial}/CAC"]["auroc"] == result["raw_auroc"][0]
        assert cells[f"{trial}/CAC"]["epochs"] == 1


def test_markdown_rows_and_mean_std(table):
    _, out, _ = table
    cells = json.loads(out.with_suffix(".json").read_text())["cells"]
    text = out.with_suffix(".md").read_text()
    acc = [cells["0/CAC"]["accuracy"], cells["1/CAC"]["accuracy"]]
    auroc = [cells["0/CAC"]["auroc"], cells["1/CAC"]["auroc"]]
    assert f"| 0 | {acc[0]:.4f} | {auroc[0]:.4f} |" in text
    # population std written out: sqrt(mean of squared deviations), for two values |a - b| / 2
    mean_acc, std_acc = (acc[0] + acc[1]) / 2, abs(acc[0] - acc[1]) / 2
    mean_auroc, std_auroc = (auroc[0] + auroc[1]) / 2, abs(auroc[0] - auroc[1]) / 2
    assert f"| mean ± std | {mean_acc:.4f} ± {std_acc:.4f} | {mean_auroc:.4f} ± {std_auroc:.4f} |" in text
    assert "python benchmarks/openset_table.py --dataset Digits --trials 0 1" in text
    assert np.isclose(std_acc, np.std(acc))


def test_resume_skips_finished_cells_and_redoes_the_missing_one(table):
    work, out, argv = table
    path = out.with_suffix(".json")
    before = json.loads(path.read_text())
    weights0 = work / "networks" / "weights" / "Digits" / "Digits_0_table_e1CACclassifierAnchorLoss.pth"
    mtime0 = os.path.getmtime(weights0)
    del before["cells"]["1/CAC"]
    path.write_text(json.dumps(before))  # as if the run had stopped during trial 1
    proc = run_script("benchmarks/openset_table.py", *argv, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0/CAC: done before, skipped" in proc.stdout
    assert os.path.getmtime(weights0) == mtime0  # trial 0 was not trained again
    after = json.loads(path.read_text())["cells"]
    redone = after["1/CAC"]
    with open(work / "results" / "Digits_table_e1CAC_trials1-1.json") as f:
        assert redone["auroc"] == json.load(f)["raw_auroc"][0]


def test_other_settings_on_the_same_output_is_a_one_line_error(table):
    work, out, _ = table
    proc = run_script("benchmarks/openset_table.py", "--dataset", "Digits", "--trials", "0", "--epochs", "2",
                      "--out", out, "--workdir", work, cwd=work)
    assert_one_line_error(proc, "holds another table", "--out")


@pytest.mark.parametrize("text,fragment", [
    ('{"cells": {"0/CAC": {"accuracy"', "not valid JSON"), ("[]", "not a table"), ('{"cells": 3}', "not a table"),
], ids=["truncated", "list", "cells_not_object"])
def test_table_runner_refuses_a_damaged_table_file(tmp_path, text, fragment):
    (tmp_path / "tbl.json").write_text(text)
    proc = run_script("benchmarks/openset_table.py", "--dataset", "Digits", "--trials", "0", "--out", tmp_path / "tbl",
                      "--workdir", tmp_path, cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "tbl.json", fragment, "--out")
    assert sorted(os.listdir(tmp_path)) == ["tbl.json"]


def test_table_runner_checks_cells_and_results(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import openset_table

    path = tmp_path / "tbl.json"
    cell = {"accuracy": 0.9, "auroc": 0.8, "train_s": 1.0, "eval_s": 1.0, "epochs": 1}
    path.write_text(json.dumps({"cells": {"0/CAC": cell, "1/CAC": {**cell, "auroc": "?"}}}))
    assert list(openset_table.read_table(str(path))["cells"]) == ["0/CAC"]  # the broken cell is run again
    assert "cell 1/CAC is incomplete" in capsys.readouterr().err
    for text in ('{"raw_auroc": [0.5]', '{"raw_top1_accuracy": [0.9], "raw_auroc": []}'):
        (tmp_path / "r.json").write_text(text)
        with pytest.raises(UserError, match="r.json"):
            openset_table.read_result(str(tmp_path / "r.json"))


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_table_runner_refuses_a_work_folder_that_is_not_one(tmp_path, kind):
    """--workdir missing (was a FileNotFoundError traceback) or a file: one line, nothing written."""
    workdir = tmp_path / "w"
    if kind == "a file":
        workdir.write_text("x")
    proc = run_script("benchmarks/openset_table.py", "--dataset", "Digits", "--trials", "0", "--out", tmp_path / "t",
                      "--workdir", workdir, cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "--workdir", "does not exist" if kind == "missing" else "is a file, not a folder")
    assert sorted(os.listdir(tmp_path)) == ([] if kind == "missing" else ["w"])

