"""Backbone names (`--backbone`) -> encoders, and the from-scratch weight init."""
import re

import torch.nn as nn

from core.errors import UserError

from networks.config import BACKBONE_HELP, im_size_problem
from networks.cnn import CNNEncoder
from networks.resnet import RESNETS, ResNetEncoder
from networks.wideresnet import WideResNetEncoder


def build_encoder(backbone, num_channels, im_size, dropout):
    """Return an encoder with an `out_features` attribute; forward gives (batch, out_features)."""
    if im_size_problem(im_size):
        raise UserError(f"image size {im_size} {im_size_problem(im_size)}: resize images to e.g. 32 or 64")
    if backbone == "cnn":
        return CNNEncoder(num_channels, im_size, dropout)
    if backbone in RESNETS:
        return ResNetEncoder(backbone, num_channels, im_size)
    match = re.fullmatch(r"wrn-(\d+)-(\d+)", backbone)
    if match:
        return WideResNetEncoder(int(match[1]), int(match[2]), num_channels, dropout)
    raise UserError(f"unknown backbone {backbone!r}: use {BACKBONE_HELP}")


def init_weights(module):
    """The original's init for training from scratch: Kaiming-normal (fan_out) convolutions,
    BatchNorm weight 1 / bias 0, Linear weights N(0, 0.01) with zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
