"""plots.py: the training-log reader leaves out torn lines, with one warning."""


def test_training_log_reader_leaves_out_torn_lines(tmp_path, capsys):
    from plots import read_training_log

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 0, "val/accuracy": 50.0}\n{"epoch": 1, "val/acc\n{"epoch": 2, "val/accuracy": 70.0}\n'
                     b'{"epoch": 3, "val/accu')
    runs = read_training_log(str(path))
    assert [[e["epoch"] for e in run] for run in runs] == [[0, 2]]
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and err[0].startswith("warning: ") and "2 incomplete line(s)" in err[0]
