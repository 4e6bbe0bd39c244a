"""torchvision's ResNet-18/50 as an encoder (`--backbone resnet18|resnet50`), its fc layer
replaced by this repo's head (networks/classifier.py: `classify`, and CAC's anchors).

Decisions, for every image size and channel count the data sets use:
- grey images (1 channel) are repeated to 3 channels in `forward`: conv1 keeps torchvision's
  shape, so ImageNet files load unchanged; this equals summing conv1's RGB filters.
- images under SMALL_STEM_BELOW px (28-64 px data sets) get the small-input stem: conv1 at
  stride 1 and no max pool (its 7x7 weights kept, so pretrained files still load). The
  ImageNet stem downsamples 4x before the first block and 32x in all: a 32 px image would be
  8x8 at layer1 and 1x1 at layer4; with the small stem it is 32x32 and 4x4, as CIFAR ResNets.
  Larger images keep torchvision's stem. The rule depends on im_size only, which every
  checkpoint records, so evaluation and predict rebuild the same network.
- no dropout (torchvision's ResNets have none); `--backbone cnn`'s dropout does not apply.
"""
import torch.nn as nn

RESNETS = {"resnet18": 512, "resnet50": 2048}  # name -> features after the global average pool
SMALL_STEM_BELOW = 128  # px: below this, conv1 at stride 1 and no max pool


def torchvision_resnet(name):
    """torchvision's ResNet `name`, randomly initialized (no download)."""
    from torchvision import models

    return getattr(models, name)(weights=None)


class ResNetEncoder(nn.Module):
    """ResNet `name` without its fc; forward gives (batch, out_features). The torchvision modules
    keep their names under `resnet.` (a torchvision state dict loads with `load_resnet_state`)."""

    def __init__(self, name, num_channels, im_size):
        super().__init__()
        self.resnet = torchvision_resnet(name)
        del self.resnet.fc
        self.repeat_grey = num_channels == 1
        if im_size < SMALL_STEM_BELOW:
            self.resnet.conv1.stride = (1, 1)
            self.resnet.maxpool = nn.Identity()
        self.out_features = RESNETS[name]

    def load_resnet_state(self, state):
        """Load a torchvision state dict (without fc: checked by networks/pretrained.py)."""
        self.resnet.load_state_dict(state, strict=True)

    def forward(self, x):
        if self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return r.avgpool(x).flatten(1)
