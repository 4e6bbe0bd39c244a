"""The paper's CNN encoder (SPEC section 2). Each layer is registered once (`conv1..9`, `bn1..9`); the
original registered them again in `encoder1..3` Sequentials, names `alias_names` gives back for files
the original's strict loader accepts (networks/checkpoint.py drops them on load)."""
import torch.nn as nn

from networks.config import DOWNSAMPLE_FACTOR

# Output channels of conv1..conv9; the third convolution of each block halves the size.
CHANNELS = (64, 64, 128, 128, 128, 128, 128, 128, 128)


class CNNEncoder(nn.Module):
    def __init__(self, num_channels, im_size, dropout=0.3):
        super().__init__()
        in_channels = num_channels
        for i, out_channels in enumerate(CHANNELS, start=1):
            stride = 2 if i % 3 == 0 else 1
            setattr(self, f"conv{i}", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(out_channels))
            in_channels = out_channels
        self.relu = nn.LeakyReLU(0.2)
        self.dropout = nn.Dropout2d(dropout)
        self.out_features = CHANNELS[-1] * (im_size // DOWNSAMPLE_FACTOR) ** 2

    @staticmethod
    def alias_names():
        """{the original's second name: this module's name} of each layer: block b's Sequential
        `encoder<b>` held conv, bn, relu three times, then dropout (positions 0, 1, 3, 4, 6, 7)."""
        names = {}
        for i in range(1, len(CHANNELS) + 1):
            block, position = divmod(i - 1, 3)
            names[f"encoder{block + 1}.{3 * position}"] = f"conv{i}"
            names[f"encoder{block + 1}.{3 * position + 1}"] = f"bn{i}"
        return names

    def forward(self, x):
        for i in range(1, len(CHANNELS) + 1):
            x = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i % 3 == 0:
                x = self.dropout(x)
        return x.flatten(1)
