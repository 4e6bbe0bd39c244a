"""engine/figures.py: the training curves read from a damaged metrics.jsonl (torn lines,
values that are not numbers) are drawn from what is usable, or refused with the reason."""
import pytest
from PIL import Image

from engine import figures


@pytest.mark.parametrize("text,usable", [
    ('{"epoch": 0, "tr', False),  # nothing but a torn line (a crash while writing it)
    ("", False),
    ('42\n["a"]\n{"epoch": "one", "x_loss": 1}\n', False),
    ('{"epoch": 0, "x_loss": null, "val_accuracy": 10}\n{"epoch": 1, "x_loss": 2.0}\n', True),
    ('{"epoch": 0, "x_loss": 1.0}\n{"epoch": 1, "x_loss": "high"}\n{"epoch": 2}\n', True),
])
def test_training_curves_of_a_damaged_log(tmp_path, text, usable):
    log = tmp_path / "metrics.jsonl"
    log.write_text(text)
    runs, problem = figures.training_curves(str(log))
    assert (runs is not None, problem is None) == (usable, usable)
    if usable:
        figures.training_figure(runs, "t", str(tmp_path / "t.png"))
        with Image.open(tmp_path / "t.png") as image:
            assert image.format == "PNG"


def test_training_log_reader_leaves_out_torn_lines(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 0, "val/accuracy": 50.0}\n{"epoch": 1, "val/acc\n{"epoch": 2, "val/accuracy": 70.0}\n'
                     b'{"epoch": 3, "val/accu')
    runs, _ = figures.training_curves(str(path))
    assert [[e["epoch"] for e in run] for run in runs] == [[0, 2]]
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and err[0].startswith("warning: ") and "2 incomplete line(s)" in err[0]
