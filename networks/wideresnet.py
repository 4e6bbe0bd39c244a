"""WideResNet encoder (Zagoruyko & Komodakis 2016), an alternative backbone: `wrn-D-K`, depth
D = 6n + 4 (n pre-activation basic blocks per group), widen factor K. Global average pooling makes
the feature size independent of the image size."""
import torch.nn as nn
import torch.nn.functional as F

from core.errors import UserError


class _BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = (nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)
                         if stride != 1 or in_planes != out_planes else None)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = F.dropout(F.relu(self.bn2(self.conv1(pre))), p=self.dropout, training=self.training)
        return self.conv2(out) + (x if self.shortcut is None else self.shortcut(pre))


class WideResNetEncoder(nn.Module):
    def __init__(self, depth, widen_factor, num_channels, dropout=0.3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise UserError(f"WideResNet depth {depth} is not 6n+4 (e.g. 16, 22, 28, 40)")
        if widen_factor < 1:
            raise UserError(f"WideResNet widen factor {widen_factor} must be >= 1")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(num_channels, widths[0], 3, 1, 1, bias=False)
        layers, in_planes = [], widths[0]
        for group, stride in zip(range(1, 4), (1, 2, 2)):
            for b in range(n):
                layers.append(_BasicBlock(in_planes, widths[group], stride if b == 0 else 1, dropout))
                in_planes = widths[group]
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.out_features = in_planes

    def forward(self, x):
        x = self.blocks(self.conv1(x))
        x = F.relu(self.bn(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
