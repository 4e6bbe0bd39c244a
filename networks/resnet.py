"""torchvision's ResNet-18/50 as an encoder (`--backbone resnet18|resnet50`), its fc replaced by this
repo's head. Grey images are repeated to 3 channels, so ImageNet files load unchanged. Images under
SMALL_STEM_BELOW px get a small-input stem (conv1 at stride 1, no max pool, 7x7 weights kept): the
ImageNet stem would leave a 32 px image 1x1 at layer4, this one 4x4, as CIFAR ResNets. No dropout:
torchvision's ResNets have none."""
import torch.nn as nn
from torchvision import models

RESNETS = {"resnet18": 512, "resnet50": 2048}  # name -> features after the global average pool
SMALL_STEM_BELOW = 128  # px: below this, conv1 at stride 1 and no max pool


class ResNetEncoder(nn.Module):
    """The torchvision modules keep their names under `resnet.`, where a torchvision state dict loads."""

    def __init__(self, name, num_channels, im_size):
        super().__init__()
        self.resnet = getattr(models, name)(weights=None)  # randomly initialized: no download
        del self.resnet.fc
        self.repeat_grey = num_channels == 1
        if im_size < SMALL_STEM_BELOW:
            self.resnet.conv1.stride = (1, 1)
            self.resnet.maxpool = nn.Identity()
        self.out_features = RESNETS[name]

    def forward(self, x):
        if self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return r.avgpool(x).flatten(1)
