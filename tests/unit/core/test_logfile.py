"""core/logfile.py: metrics.jsonl holds whole lines only (a torn line is cut off, a full disk
leaves the earlier lines intact)."""
import errno
import os

import pytest

from core.errors import UserError
from core.logfile import append_line


def test_a_torn_last_line_is_cut_off_before_the_next_append(tmp_path, capsys):
    from core.logfile import trim_log

    path = tmp_path / "metrics.jsonl"
    whole = b'{"epoch": 0, "a": 1.0}\n{"epoch": 1, "a": 2.0}\n'
    path.write_bytes(whole + b'{"epoch": 2, "a"')
    trim_log(str(path))
    assert path.read_bytes() == whole
    assert "warning: " in capsys.readouterr().err
    append_line(str(path), '{"epoch": 2, "a": 3.0}')
    assert path.read_bytes() == whole + b'{"epoch": 2, "a": 3.0}\n'
    trim_log(str(path), keep_bytes=len(whole))  # --continue: the state was saved after epoch 1
    assert path.read_bytes() == whole and capsys.readouterr().err == ""


@pytest.mark.parametrize("partial", [False, True], ids=["nothing_written", "half_written"])
def test_a_full_disk_while_logging_keeps_whole_lines(tmp_path, monkeypatch, partial):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 0}\n')
    real_write = os.write

    def full_disk(fd, data):
        if not partial:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data[: len(data) // 2])  # what a filling disk may do

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(UserError, match="metrics.jsonl .*No space left on device.*earlier lines are intact"):
        append_line(str(path), '{"epoch": 1, "val/accuracy": 12.5}')
    monkeypatch.undo()
    assert path.read_bytes() == b'{"epoch": 0}\n'
