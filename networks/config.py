"""NetworkConfig: what builds a network, made once from the data set's config and saved in
every checkpoint under `network`; and the image-size rule every backbone shares."""
from dataclasses import asdict, dataclass

DOWNSAMPLE_FACTOR = 8  # the paper's CNN halves the image three times


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

    @classmethod
    def for_data(cls, cfg, backbone="cnn"):
        """From a data set's config (datasets/config.json entry, overrides applied)."""
        return cls(cfg["num_known_classes"], cfg["im_channels"], cfg["im_size"], cfg["dropout"], backbone)

    def as_dict(self):
        """The checkpoint's `network` entry (key order as saved since the first version)."""
        return asdict(self)
