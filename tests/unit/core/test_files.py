"""core/files.py: atomic writes and the early writable-folder check."""
import errno
import os
import stat

import pytest

from core.errors import UserError
from core.files import FileSet, atomic_write, ensure_writable


def test_atomic_write_replaces_with_usual_permissions(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with atomic_write(str(path), "w") as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path), "w") as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_ensure_writable_creates_nothing_and_refuses(tmp_path):
    ensure_writable(str(tmp_path / "a" / "b"))
    assert os.listdir(tmp_path) == []  # checked through tmp_path; the first save makes a/b
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write to .*file/x/: .*file is a file"):
        ensure_writable(str(tmp_path / "file" / "x"))  # a file where a folder should be
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_ensure_writable_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write to .*locked/new/ .*Permission denied"):
            ensure_writable(str(locked / "new"))
    finally:
        locked.chmod(0o755)


def test_failed_rename_restores_the_set_already_replaced(tmp_path, monkeypatch):
    """A rename that fails after the .npz was replaced (the JSON's) puts the old .npz back."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("r.npz", "r.json"):
        (folder / name).write_text(f"old {name}")
    files = FileSet()
    for name in ("r.npz", "r.json"):
        with open(files.stage(str(folder / name)), "w") as f:
            f.write(f"new {name}")
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("r.json"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        files.commit()
    monkeypatch.undo()
    files.discard()
    assert sorted(os.listdir(folder)) == ["r.json", "r.npz"]
    assert [(folder / n).read_text() for n in ("r.npz", "r.json")] == ["old r.npz", "old r.json"]


def test_a_named_pipe_is_refused_not_waited_on(tmp_path):
    """A named pipe where a JSON file belongs (split file, results, table): one line saying what it is; opening it
    would wait for a writer forever."""
    from core.files import read_json

    pipe = tmp_path / "split.json"
    os.mkfifo(pipe)
    with pytest.raises(UserError, match=r"split file .*split.json is not a regular file \(a named pipe"):
        read_json(str(pipe), "split file", "fix it")


def test_a_name_too_long_for_the_file_system_is_refused_with_the_length_that_fits(tmp_path):
    """The limit is the file system's own (NAME_MAX, in bytes, of the nearest existing folder), counted in bytes:
    128 two-byte characters are 256 bytes. The line gives the longest --name that fits."""
    from core.files import check_name_length

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    made = lambda name: [str(tmp_path / "not_yet" / f".tmp_previous_Digits_{name}CAC_trials0-0_trial0_training.png")]  # noqa: E731
    extra = len(made("")[0].split(os.sep)[-1])
    fits = "n" * (limit - extra)
    assert check_name_length(fits, made(fits)) is None
    for name in ("n" * (limit - extra + 1), "é" * ((limit - extra) // 2 + 1)):
        with pytest.raises(UserError) as refused:
            check_name_length(name, made(name))
        assert str(refused.value).startswith(f"--name of {len(name.encode())} bytes is too long")
        assert str(refused.value).endswith(f"allows {limit}; give a --name of at most {limit - extra} bytes")
        assert "<name>CAC_trials0-0_trial0_training.png" in str(refused.value)


def test_the_length_given_is_the_tightest_of_all_the_names(tmp_path):
    """A name refused by the first path's limit is told the length that every path allows (the longest name
    decides), not the first one's: that length then passes."""
    from core.files import check_name_length

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    paths = lambda name: [str(tmp_path / f"D_0_{name}CACclassifierAnchorLoss.calibration.json"),  # noqa: E731
                          str(tmp_path / f".tmp_previous_D_{name}CAC_trials0-0_trial0_training.png")]
    tightest = limit - len(".tmp_previous_D_CAC_trials0-0_trial0_training.png")
    with pytest.raises(UserError, match=f"give a --name of at most {tightest} bytes$"):
        check_name_length("n" * limit, paths("n" * limit))
    assert check_name_length("n" * tightest, paths("n" * tightest)) is None
    with pytest.raises(UserError):
        check_name_length("n" * (tightest + 1), paths("n" * (tightest + 1)))
