"""NetworkConfig: what builds a network, made once from the data set's config and saved in
every checkpoint under `network`; the image-size rule every backbone shares; the backbone
names (BACKBONE_HELP). Imports nothing heavy: the scripts' parsers read it before torch."""
from dataclasses import asdict, dataclass

DOWNSAMPLE_FACTOR = 8  # the paper's CNN halves the image three times
BACKBONE_HELP = ("'cnn' (the paper's 9-layer CNN), 'wrn-DEPTH-WIDTH', e.g. wrn-16-4, wrn-28-10, or torchvision's "
                 "'resnet18' / 'resnet50' (see --pretrained)")


def im_size_problem(size):
    """Why `size` cannot be an image side for these networks, or None."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % DOWNSAMPLE_FACTOR:
        return f"is not a positive multiple of {DOWNSAMPLE_FACTOR} (the CNN halves images three times)"
    return None


@dataclass(frozen=True)
class NetworkConfig:
    num_classes: int
    num_channels: int
    im_size: int
    dropout: float = 0.3
    backbone: str = "cnn"
    pretrained: str = None  # ResNets: None (from scratch), "imagenet" or the --pretrained file used

    @classmethod
    def for_data(cls, cfg, backbone="cnn", pretrained=None):
        """From a data set's config (datasets/config.json entry, overrides applied)."""
        return cls(cfg["num_known_classes"], cfg["im_channels"], cfg["im_size"], cfg["dropout"], backbone, pretrained)

    def as_dict(self):
        """The checkpoint's `network` entry (key order as saved since the first version; `pretrained` last)."""
        return asdict(self)
