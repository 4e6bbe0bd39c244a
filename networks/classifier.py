"""The part both heads share: an encoder (`--backbone`) followed by a linear layer to N logits."""
import torch.nn as nn

from networks.backbones import build_encoder, init_weights as initialize_weights


class EncoderClassifier(nn.Module):
    """`encoder` then `classify` (the original's layer names); `forward` returns the logits."""

    def __init__(self, num_classes, num_channels, im_size, init_weights=False, dropout=0.3, backbone="cnn"):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.encoder = build_encoder(backbone, num_channels, im_size, dropout)
        self.classify = nn.Linear(self.encoder.out_features, num_classes)
        if init_weights:
            initialize_weights(self)

    def forward(self, x):
        return self.classify(self.encoder(x))
