"""`--pretrained`: the starting weights of a ResNet backbone. Alone, torchvision's ImageNet file, read
from torch hub's cache (TORCH_HOME) and downloaded there when missing; `--pretrained FILE`, a local
torchvision state dict. Either is checked before use; its fc layer is ignored (this repo's head replaces it)."""
import os

import torch

from core.errors import UserError
from networks.checkpoint import check_fits
from networks.resnet import RESNETS

IMAGENET = "imagenet"  # the value of `--pretrained` given without a file
# torchvision's ImageNet weights (IMAGENET1K_V1, what torchvision's `pretrained=True` loaded)
IMAGENET_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}
DOWNLOAD_URL = "https://download.pytorch.org/models/"


def imagenet_path(backbone):
    """Where torch hub keeps torchvision's ImageNet file of `backbone`."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", IMAGENET_FILES[backbone])


def pretrained_file(backbone, pretrained, download=True):
    """The local file `--pretrained` names (ImageNet's downloaded when missing and allowed), else UserError."""
    if backbone not in RESNETS:
        raise UserError(f"--pretrained applies to --backbone {' or '.join(RESNETS)}, not {backbone!r}: "
                        f"drop --pretrained or choose a ResNet backbone")
    if pretrained != IMAGENET:
        if not os.path.isfile(pretrained):
            raise UserError(f"--pretrained {pretrained}: no such file; give a state_dict file of torchvision's "
                            f"{backbone} (torch.save(model.state_dict(), FILE)) or --pretrained alone for ImageNet")
        return pretrained
    path = imagenet_path(backbone)
    if os.path.isfile(path):
        return path
    url = DOWNLOAD_URL + IMAGENET_FILES[backbone]
    fix = f"put torchvision's file {IMAGENET_FILES[backbone]} (from {url}) at {path}, or pass --pretrained FILE"
    if not download:
        raise UserError(f"ImageNet weights of {backbone} are not at {path} and --no_download is set: {fix}")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, hash_prefix=IMAGENET_FILES[backbone].split("-")[1][:8],
                                       progress=False)
    except Exception as e:  # URLError, timeouts, a hash mismatch, an unwritable cache: all one line
        reason = " ".join(str(getattr(e, "reason", e)).split())[:100] or type(e).__name__
        raise UserError(f"ImageNet weights of {backbone} are not at {path} and cannot be downloaded "
                        f"({reason}): {fix}") from None
    return path


def read_state_dict(path, backbone, expected):
    """The tensors of `path` but fc's, checked against `expected` ({name: shape} of the backbone without fc)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch.save file, damaged, or holding code: weights_only refuses
        raise UserError(f"--pretrained {path} cannot be read as tensors ({type(e).__name__}): give a state_dict "
                        f"saved with torch.save(model.state_dict(), FILE)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"--pretrained {path} is not a state_dict (a dict of tensors): save one with "
                        f"torch.save(model.state_dict(), FILE)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_fits(state, expected, f"--pretrained {path}", f"torchvision's {backbone}", keys_fix=f"give a {backbone} state_dict",
               shape_fix=f"give a {backbone} state_dict", values_fix="use another file")
    return state


def load_pretrained(encoder, backbone, pretrained, download=True):
    """Load `--pretrained` (IMAGENET or a file) into a ResNetEncoder."""
    path = pretrained_file(backbone, pretrained, download)
    expected = {k: v.shape for k, v in encoder.resnet.state_dict().items()}
    encoder.resnet.load_state_dict(read_state_dict(path, backbone, expected))
