"""networks/pretrained.py offline: a --pretrained FILE is loaded (parameters equal) only into a
fresh network; wrong files and a missing ImageNet file are one line naming the fix."""
import os
import urllib.error

import pytest
import torch
from torchvision import models

from conftest import one_line
from core.errors import UserError
from networks.build import build_network
from networks.config import NetworkConfig
from networks.pretrained import IMAGENET, IMAGENET_FILES, imagenet_path, pretrained_file


def _save(state, path):
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A random torchvision resnet18's state_dict (fc included), as torch.save writes it."""
    torch.manual_seed(123)
    model = models.resnet18(weights=None)
    return _save(model.state_dict(), tmp_path_factory.mktemp("weights") / "resnet18.pth"), model.state_dict()


def test_a_pretrained_file_is_loaded_into_a_fresh_network_only(resnet18_file):
    path, state = resnet18_file
    config = NetworkConfig(6, 1, 32, backbone="resnet18", pretrained=path)
    fresh = build_network(config, "CAC", init_weights=True).encoder.resnet.state_dict()
    assert set(fresh) == {k for k in state if not k.startswith("fc.")}
    for name, tensor in fresh.items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    rebuilt = build_network(config, "CAC").encoder.resnet.state_dict()  # a checkpoint will be loaded: file unread
    assert not torch.equal(rebuilt["conv1.weight"], state["conv1.weight"])


@pytest.mark.parametrize("case, fragment", [
    ("resnet50", "does not fit torchvision's resnet18: missing"),
    ("shape", "layer1.0.conv1.weight is (64, 64, 1, 1) in the file"),
    ("nan", "non-finite weights (NaN or inf): 64 of 64 values of bn1.weight"),
    ("not a dict", "is not a state_dict"),
    ("garbage", "cannot be read as tensors"),
])
def test_a_wrong_file_is_one_line(tmp_path, resnet18_file, case, fragment):
    state = dict(resnet18_file[1])
    if case == "resnet50":
        state = models.resnet50(weights=None).state_dict()
    elif case == "shape":
        state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    elif case == "nan":
        state["bn1.weight"] = torch.full((64,), float("nan"))
    path = tmp_path / "bad.pth"
    if case == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        _save([1, 2] if case == "not a dict" else state, path)
    with pytest.raises(UserError) as e:
        build_network(NetworkConfig(6, 3, 32, backbone="resnet18", pretrained=str(path)), "CAC", init_weights=True)
    assert fragment in one_line(e.value)


def test_no_imagenet_file_offline_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    where = os.path.join(str(tmp_path / "torch"), "hub", "checkpoints", "resnet18-f37072fd.pth")
    assert imagenet_path("resnet18") == where and IMAGENET_FILES["resnet18"] == "resnet18-f37072fd.pth"

    def no_network(url, dst, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    for download in (True, False):  # an attempt that fails, and --no_download
        with pytest.raises(UserError) as e:
            pretrained_file("resnet18", IMAGENET, download=download)
        message = one_line(e.value)
        assert where in message and "--pretrained FILE" in message and "resnet18-f37072fd.pth (from https://" in message
    assert not os.path.exists(where)


def test_the_imagenet_file_in_torch_hubs_cache_is_used_without_a_download(tmp_path, monkeypatch, resnet18_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    os.makedirs(os.path.dirname(imagenet_path("resnet18")))
    _save(resnet18_file[1], imagenet_path("resnet18"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    net = build_network(NetworkConfig(6, 3, 32, backbone="resnet18", pretrained=IMAGENET), "CAC", init_weights=True)
    torch.testing.assert_close(net.encoder.resnet.conv1.weight, resnet18_file[1]["conv1.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("backbone, pretrained, fragment", [
    ("cnn", IMAGENET, "applies to --backbone resnet18 or resnet50, not 'cnn'"),
    ("resnet18", "no/such/file.pth", "no/such/file.pth: no such file"),
])
def test_bad_pretrained_arguments_are_one_line(backbone, pretrained, fragment):
    with pytest.raises(UserError) as e:
        pretrained_file(backbone, pretrained)
    assert fragment in one_line(e.value)
