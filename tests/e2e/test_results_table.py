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


def test_results_table_rows_match_the_saved_scores(evaluated_digits, tmp_path):
    """Each scorer's row: accuracy and AUROC recomputed from the .npz with numpy and scikit-learn;
    the machine line carries the thread count the evaluation ran with (1 in the fixture)."""
    import glob
    import json

    import numpy as np
    from sklearn.metrics import roc_auc_score

    paths = sorted(glob.glob(f"{evaluated_digits}/results/*.json"))
    shown = run_script("scripts/results_table.py", *paths, cwd=tmp_path, in_process=True)
    assert shown.returncode == 0, shown.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in shown.stdout.splitlines() if line.startswith(("| CAC |", "| cross-entropy |"))}
    expected_scorers = {("CAC", "CAC score (paper)"), ("CAC", "min distance"),
                        ("cross-entropy", "max softmax (paper baseline)"), ("cross-entropy", "max logit (MLS)")}
    assert set(rows) == expected_scorers
    for path in paths:
        scores = np.load(path.replace(".json", ".npz"))
        with open(path) as f:
            network = "CAC" if json.load(f)["method"] == "CAC" else "cross-entropy"
        for (net, label), line in rows.items():
            if net != network:
                continue
            scorer = {"CAC score (paper)": "cac", "min distance": "min_distance",
                      "max softmax (paper baseline)": "max_softmax", "max logit (MLS)": "max_logit"}[label]
            known, unknown = scores[f"trial0_{scorer}_known_score"], scores[f"trial0_{scorer}_unknown_score"]
            auroc = roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])
            accuracy = np.mean(scores[f"trial0_{scorer}_known_pred"] == scores["trial0_known_labels"])
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[4] == f"{accuracy:.4f}" and cells[5] == f"{auroc:.4f}", (line, accuracy, auroc)
    assert shown.stdout.count("1 torch threads") == 1 and "Measured on" in shown.stdout


def results_file(path, auroc_per_trial, auroc_summary):
    """A two-trial results file whose per-trial AUROCs and summary disagree (as after a hand edit)."""
    import json

    metrics = {"accuracy": [0.9, 0.8], "auroc": auroc_per_trial, "oscr": [0.7, 0.6]}
    summary = {"accuracy": {"mean": 0.85, "std": 0.05}, "auroc": auroc_summary, "oscr": {"mean": 0.65, "std": 0.05}}
    path.write_text(json.dumps({"method": "CAC", "dataset": "Digits", "trials": [0, 1], "raw_top1_accuracy": [0.9, 0.8],
                                "raw_auroc": auroc_per_trial, "metrics": {"cac": metrics}, "summary": {"cac": summary}}))
    return path


def test_results_table_shows_the_summary_a_file_states_and_warns_of_disagreement_and_repeats(tmp_path):
    """The table's cell is the file's `summary` (mean ± std), not a recomputation from other keys; per-trial
    values that contradict it are named in a warning; a file given twice (by two spellings) is listed once."""
    path = results_file(tmp_path / "r.json", [0.1, 0.1], {"mean": 0.9113, "std": 0.0123})
    proc = run_script("scripts/results_table.py", path, tmp_path / "." / "r.json", cwd=tmp_path, in_process=True)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| CAC |")]
    assert rows == ["| CAC | CAC score (paper) | Digits | 0-1 | 0.8500 ± 0.0500 | 0.9113 ± 0.0123 | 0.6500 ± 0.0500 |"]
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings), warnings
    assert "summary gives auroc 0.9113 for cac, its per-trial metrics 0.1000" in warnings[0]
    assert "r.json is given twice" in warnings[1] and "listed once" in warnings[1]
    agreeing = run_script("scripts/results_table.py", results_file(tmp_path / "s.json", [0.9, 0.9],
                                                                   {"mean": 0.9, "std": 0.0}), cwd=tmp_path, in_process=True)
    assert agreeing.returncode == 0 and agreeing.stderr == "" and "| 0.9000 ± 0.0000 |" in agreeing.stdout
