"""benchmarks/reproduce.py on Digits (1 + 1 epochs, one trial, cross-entropy): both phases and
the evaluation per cell, the table from the cell's own results file, resume per phase (a
finished phase is skipped, an interrupted one continues with --continue), one line for
missing data. (Mean ± std over several trials: tests/unit/benchmarks/test_protocol.py.)"""
import json
import os

import pytest
import torch

from conftest import assert_one_line_error, ok, run_script

pytestmark = pytest.mark.slow  # minute-scale on 2 cores: `-m "not slow"` leaves it out

NAME = "repro_paper_e1-1"


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    work = tmp_path_factory.mktemp("repro")
    argv = ["--datasets", "Digits", "--trials", "0", "--methods", "ce", "--epochs", "1", "1", "--workdir", work,
            "--out", work / "tbl"]
    ok(run_script("benchmarks/reproduce.py", *argv, cwd=work, in_process=True))
    return work, argv


def commands(work):
    return [line for line in (work / "tbl.log").read_text().splitlines() if line.startswith("$ ")]


def metrics_lines(work):
    return (work / "runs" / f"Digits_0_{NAME}ClosedSet" / "metrics.jsonl").read_text().splitlines()


def test_both_phases_then_the_evaluation_and_the_table_from_its_results(cell):
    work, _ = cell
    runs = commands(work)
    assert len(runs) == 3 and "train_closedSet.py" in runs[0] and " -r " not in runs[0]
    assert " -r " in runs[1] and "eval_closedSet.py" in runs[2]
    assert [json.loads(line)["epoch"] for line in metrics_lines(work)] == [0, 1]  # -r continues after epoch 0
    result = json.loads((work / "results" / f"Digits_{NAME}ClosedSet_trials0-0.json").read_text())
    table = json.loads((work / "tbl.json").read_text())
    text = (work / "tbl.md").read_text()
    for scorer in ("max_softmax", "max_logit"):
        for metric in ("accuracy", "auroc", "oscr"):
            value = result["metrics"][scorer][metric][0]
            assert table["summary"]["Digits"]["CE"][scorer][metric] == {"mean": value, "std": 0.0, "n": 1}
            assert f"{value:.4f} (n=1)" in text and "± 0.0000 (n=1)" not in text  # one trial: no spread to show
    assert table["cells"]["Digits/0/CE"]["phase1"]["epochs"] == 1 and "1 of 1 cells done" in text
    assert "python benchmarks/reproduce.py --datasets Digits" in text and table["git"] in text


def test_resume_skips_finished_phases_and_continues_an_interrupted_one(cell):
    work, argv = cell
    ok(run_script("benchmarks/reproduce.py", *argv, cwd=work, in_process=True))
    assert len(commands(work)) == 3  # everything recorded: nothing ran again
    # as if the -r phase had been stopped after its first epoch with one more planned
    last = work / "networks" / "weights" / "Digits" / f"Digits_0_{NAME}closedSetClassifierLast.pth"
    state = torch.load(last, weights_only=True)
    state["end_epoch"] += 1
    torch.save(state, last)
    table = json.loads((work / "tbl.json").read_text())
    for key in ("phase1", "result"):
        del table["cells"]["Digits/0/CE"][key]
    (work / "tbl.json").write_text(json.dumps(table))
    ok(run_script("benchmarks/reproduce.py", *argv, cwd=work, in_process=True))
    runs = commands(work)[3:]
    assert len(runs) == 2 and " -r " in runs[0] and "--continue" in runs[0] and "eval_closedSet.py" in runs[1]
    assert [json.loads(line)["epoch"] for line in metrics_lines(work)] == [0, 1, 2]
    assert "result" in json.loads((work / "tbl.json").read_text())["cells"]["Digits/0/CE"]


def test_missing_data_is_one_line_saying_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(tmp_path / "not-installed"))
    proc = run_script("benchmarks/reproduce.py", "--datasets", "FashionMNIST", "--trials", "0", "--methods", "ce",
                      "--workdir", tmp_path, cwd=tmp_path, in_process=True)
    line = assert_one_line_error(proc, "FashionMNIST not found", os.path.join("datasets", "data"),
                                 "add --download to reproduce.py to fetch them")
    assert "--no_download" not in line  # a flag the user never gave


def test_bad_input_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm here, whatever the machine
    for argv, fragment in ((["--datasets", "Nope"], "unknown data set 'Nope'"),
                           (["--datasets", "Digits", "--budget", "-1"], "--budget"),
                           (["--datasets", "Digits", "--epochs", "0", "1"], "--epochs"),
                           (["--datasets", "Digits", "--launcher", "slurm"], "--launcher slurm needs Slurm"),
                           (["--datasets", "Digits", "--launcher", "pool"], "--launcher pool needs --jobs N")):
        assert_one_line_error(run_script("benchmarks/reproduce.py", *argv, cwd=tmp_path, in_process=True), fragment)


def test_inputs_are_checked_before_anything_is_written(tmp_path, monkeypatch):
    """What a cell's script would refuse after the table was written is refused first, in one line, leaving the
    folders as they were: a trial without a split file, data absent, a table file that is not a table (a JSON
    list: was an AttributeError), --workdir missing or a file, a --name too long for the file system."""
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(tmp_path / "not-installed"))
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    (work / "old.json").write_text("[1, 2]")
    cases = [(["--datasets", "Digits", "--trials", "99"], ["no class split file for Digits trial 99"]),
             (["--datasets", "FashionMNIST", "--trials", "0"], ["FashionMNIST not found", "train-images-idx3-ubyte",
                                                               "add --download to reproduce.py"]),
             (["--datasets", "Digits", "--trials", "0", "--out", work / "old"], ["old.json is not a table"]),
             (["--datasets", "Digits", "--workdir", tmp_path / "missing"], ["--workdir", "missing does not exist"]),
             (["--datasets", "Digits", "--workdir", tmp_path / "a_file"], ["a_file is a file, not a folder"]),
             (["--datasets", "Digits", "--name", "n" * 240], ["--name of 240 bytes is too long"])]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for argv, fragments in cases:
        argv = argv if "--workdir" in argv else [*argv, "--workdir", work]
        assert_one_line_error(run_script("benchmarks/reproduce.py", *argv, cwd=work, in_process=True), *fragments)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before

