"""SafeImageFolder (datasets/safe_folder.py): each real folder and file read once whatever links
point where; names that are not plain files skipped with a warning."""
import json
import os
import threading

from conftest import captured_stderr_lines
from fakedata import write_image_folder

from datasets.folder import FolderData


def test_links_read_each_real_folder_and_file_once(tmp_path, capsys):
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"cat": 4, "dog": 3}, {"cat": 1, "fox": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["cat", "dog"], "Unknown": ["fox"]}))
    folder = FolderData(str(root), str(tmp_path / "split.json"), 16, 3)
    plain = folder.open(train=True).samples
    capsys.readouterr()
    os.symlink("..", root / "train" / "cat" / "loop")  # a class folder linking to its parent
    os.symlink(".", root / "train" / "dog" / "self")
    os.symlink("../dog", root / "train" / "cat" / "dogs")  # another class's folder
    os.symlink("0.png", root / "train" / "cat" / "again.png")  # the same file twice
    linked = folder.open(train=True).samples
    assert linked == plain  # each image once, under its own class
    lines = captured_stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "4 folder(s) or file(s)" in lines[0], lines


def test_an_image_name_that_is_not_a_plain_file_is_skipped(tmp_path, capsys):
    """A named pipe called x.png would block reading forever; it is skipped with a warning. (A
    writer is attached, so that without the skip the read ends with an error instead of a hang.)"""
    root = tmp_path / "imgs"
    write_image_folder(str(root), {"cat": 3, "dog": 3}, {"cat": 1, "fox": 1})
    (tmp_path / "split.json").write_text(json.dumps({"Known": ["cat", "dog"], "Unknown": ["fox"]}))
    fifo = root / "train" / "cat" / "pipe.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    try:
        dataset = FolderData(str(root), str(tmp_path / "split.json"), 16, 3).open(train=True)
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return: held until it has
        writer.join(5)
        os.close(reader)
    assert len(dataset.samples) == 6
    lines = captured_stderr_lines(capsys)
    assert len(lines) == 1 and "not plain files" in lines[0] and "pipe.png" in lines[0], lines
