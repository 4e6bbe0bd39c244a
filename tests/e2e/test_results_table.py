"""scripts/results_table.py: a bad results file is refused in one line."""
import pytest

from conftest import assert_one_line_error, run_script


@pytest.mark.parametrize("text,fragment", [
    ('{"method": "CAC", "dataset": "Digits", "trials": [0], "raw_top1_accuracy": [0.9', "not valid JSON"),
    ('{"method": "CAC", "dataset": "Digits", "trials": [0], "raw_top1_accuracy": [0.9]}', "raw_auroc"),
    ('{"method": "CAC", "dataset": "Digits", "trials": [0, 1], "raw_top1_accuracy": [0.9], "raw_auroc": [0.8]}',
     "raw_top1_accuracy is not 2 finite"),
    ('"results"', "not an object"),
], ids=["truncated", "no_auroc", "too_few_values", "string"])
def test_results_table_refuses_a_bad_results_file_in_one_line(tmp_path, text, fragment):
    (tmp_path / "r.json").write_text(text)
    proc = run_script("scripts/results_table.py", tmp_path / "r.json", cwd=tmp_path, in_process=True)
    assert_one_line_error(proc, "r.json", fragment)


def test_results_table_help_and_no_file(tmp_path):
    shown = run_script("scripts/results_table.py", "--help", cwd=tmp_path, in_process=True)
    assert shown.returncode == 0 and "RESULTS.json" in shown.stdout  # was read as a results file named --help
    assert_one_line_error(run_script("scripts/results_table.py", cwd=tmp_path, in_process=True),
                          "required: RESULTS.json")
