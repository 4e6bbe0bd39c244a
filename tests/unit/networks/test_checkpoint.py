"""Checkpoints: this project's and the original's format, mismatches, safety, atomic saves."""
import errno
import os
import pickle

import pytest
import torch

from core.errors import UserError
from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.closedSetClassifier import closedSetClassifier
from networks.openSetClassifier import openSetClassifier


def _original_style(net):
    """A checkpoint as the original code wrote it: every layer twice, `means` + covariances."""
    sd = dict(net.state_dict())
    means = sd.pop("anchors", None)
    enc = {1: (1, 2, 3), 2: (4, 5, 6), 3: (7, 8, 9)}
    for block, layers in enc.items():
        for pos, layer in zip((0, 3, 6), layers):
            for k, v in list(sd.items()):
                if k.startswith(f"encoder.conv{layer}."):
                    sd[f"encoder.encoder{block}.{pos}.{k.split('.')[-1]}"] = v.clone()
                if k.startswith(f"encoder.bn{layer}."):
                    sd[f"encoder.encoder{block}.{pos + 1}.{k.split('.')[-1]}"] = v.clone()
    if means is not None:
        n = means.shape[0]
        sd["means"] = torch.randn(n, n, dtype=torch.float64)
        sd["covars"] = torch.randn(n, n, n, dtype=torch.float64)
        sd["invcovars"] = torch.randn(n, n, n, dtype=torch.float64)
    return {"net": sd, "acc": 91.5, "epoch": 7}


def test_roundtrip_keeps_everything(tmp_path):
    net = openSetClassifier(6, 1, 16, init_weights=True)
    net.set_anchors(torch.eye(6) * 10)
    path = tmp_path / "a.pth"
    save_checkpoint({"net": net.state_dict(), "acc": 50.0, "epoch": 3, "backbone": "cnn"}, str(path))
    other = openSetClassifier(6, 1, 16)
    ckpt = load_checkpoint(str(path), other)
    assert ckpt["epoch"] == 3 and ckpt["acc"] == 50.0
    for k, v in net.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def test_original_format_loads_means_as_anchors(tmp_path):
    src = openSetClassifier(4, 3, 32, init_weights=True)
    ckpt = _original_style(src)
    path = tmp_path / "orig.pth"
    torch.save(ckpt, path)
    net = openSetClassifier(4, 3, 32)
    load_checkpoint(str(path), net)
    assert torch.equal(net.anchors, ckpt["net"]["means"])
    assert torch.equal(net.encoder.conv5.weight, src.encoder.conv5.weight)
    ce = closedSetClassifier(4, 3, 32)
    torch.save(_original_style(closedSetClassifier(4, 3, 32)), tmp_path / "ce.pth")
    load_checkpoint(str(tmp_path / "ce.pth"), ce)


@pytest.mark.parametrize("other,fragment", [
    (lambda: openSetClassifier(4, 1, 16), "known classes"),
    (lambda: openSetClassifier(6, 3, 16), "input channels"),
    (lambda: openSetClassifier(6, 1, 32), "image size"),
    (lambda: closedSetClassifier(6, 1, 16), "CAC checkpoint"),
])
def test_mismatched_network_is_one_clear_error(tmp_path, other, fragment):
    path = str(tmp_path / "c.pth")
    save_checkpoint({"net": openSetClassifier(6, 1, 16).state_dict(), "acc": 0, "epoch": 0}, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path, other())
    assert fragment in str(info.value) and path in str(info.value) and "\n" not in str(info.value)


def test_backbone_mismatch_names_both(tmp_path):
    path = str(tmp_path / "w.pth")
    net = openSetClassifier(6, 3, 32, backbone="wrn-10-1")
    save_checkpoint({"net": net.state_dict(), "acc": 0, "epoch": 0, "backbone": "wrn-10-1"}, path)
    with pytest.raises(UserError, match="wrn-10-1.*'cnn'"):
        load_checkpoint(path, openSetClassifier(6, 3, 32))
    load_checkpoint(path, openSetClassifier(6, 3, 32, backbone="wrn-10-1"))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(str(tmp_path / "nope.pth"), openSetClassifier(6, 1, 16))
    good = tmp_path / "good.pth"
    save_checkpoint({"net": openSetClassifier(6, 1, 16).state_dict(), "acc": 0, "epoch": 0}, str(good))
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(str(truncated), openSetClassifier(6, 1, 16))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(str(tmp_path / "junk.pth"), openSetClassifier(6, 1, 16))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"net": {}, "acc": 0, "epoch": 0, "payload": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(str(path), openSetClassifier(6, 1, 16))
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    with pytest.raises(UserError):
        load_checkpoint(str(tmp_path / "evil.pkl"), openSetClassifier(6, 1, 16))
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "rb") as f:  # the payload is real: plain pickle runs it
        pickle.load(f)
    assert marker.exists()


def test_loads_onto_the_networks_device(tmp_path):
    path = str(tmp_path / "d.pth")
    save_checkpoint({"net": openSetClassifier(6, 1, 16).state_dict(), "acc": 0, "epoch": 0}, path)
    net = openSetClassifier(6, 1, 16).to("cpu")
    load_checkpoint(path, net)
    assert net.anchors.device.type == "cpu"


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "keep.pth")
    save_checkpoint({"net": {}, "acc": 1, "epoch": 1}, path)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(UserError, match="cannot write checkpoint .*keep.pth"):  # one line, not a traceback
        save_checkpoint({"net": {}, "acc": 2, "epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert os.listdir(tmp_path) == ["keep.pth"]


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1536 vs 1472"),  # torch, disk full
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
], ids=["torch_unexpected_pos", "enospc"])
def test_a_failed_checkpoint_save_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, failure):
    import networks.checkpoint as ckpt_module

    path = str(tmp_path / "Digits_0_xCACclassifierLast.pth")
    ckpt_module.save_checkpoint({"net": {"w": torch.ones(3)}, "epoch": 1}, path)

    def save(state, f):
        f.write(b"PK\x03\x04 half a file")
        raise failure

    monkeypatch.setattr(ckpt_module.torch, "save", save)
    with pytest.raises(UserError, match=f"cannot write checkpoint {path} .*the disk is full: free space; the "
                                        f"previous file is intact"):
        ckpt_module.save_checkpoint({"net": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert ckpt_module.read_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["Digits_0_xCACclassifierLast.pth"]  # no temporary left


def test_a_folder_at_the_checkpoints_path_is_refused_by_the_save(tmp_path):
    from networks.checkpoint import save_checkpoint

    path = tmp_path / "x.pth"
    path.mkdir()
    with pytest.raises(UserError, match="cannot write checkpoint .*x.pth"):
        save_checkpoint({"net": {}}, str(path))
    assert path.is_dir() and os.listdir(tmp_path) == ["x.pth"]


def test_nan_weights_are_refused_at_load(tmp_path):
    net = openSetClassifier(6, 1, 16)
    state = net.state_dict()
    state["encoder.bn2.running_var"][1] = float("inf")
    path = str(tmp_path / "inf.pth")
    save_checkpoint({"net": state, "acc": 0, "epoch": 0}, path)
    with pytest.raises(UserError, match=r"inf\.pth holds non-finite weights .*1 of \d+ values of "
                                        r"encoder\.bn2\.running_var"):
        load_checkpoint(path, openSetClassifier(6, 1, 16))


def test_a_named_pipe_for_a_checkpoint_is_not_called_missing(tmp_path):
    from networks.checkpoint import read_checkpoint

    os.mkfifo(tmp_path / "x.pth")
    with pytest.raises(UserError, match=r"^checkpoint .*x.pth is not a regular file \(a folder, a named pipe"):
        read_checkpoint(str(tmp_path / "x.pth"))
    with pytest.raises(UserError, match=r"^checkpoint not found: .*y.pth$"):
        read_checkpoint(str(tmp_path / "y.pth"))
