"""FashionMNIST missing everywhere, through the training script: one line, nothing written."""
from conftest import assert_one_line_error, run_script


def test_cli_missing_everywhere_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CAC_SYSTEM_FASHION_MNIST", str(tmp_path / "not-installed"))
    proc = run_script("train_cacOpenset.py", "--dataset", "FashionMNIST", "--trial", "0", "--no_download",
                      "--data_root", tmp_path / "empty", cwd=tmp_path)
    assert_one_line_error(proc, "FashionMNIST not found", "apt-get install dataset-fashion-mnist")
    assert not (tmp_path / "networks").exists() and not (tmp_path / "runs").exists()
