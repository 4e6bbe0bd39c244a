"""Cross-entropy baseline: encoder + linear layer; forward(x) returns logits."""
import torch.nn as nn

from networks.backbones import build_encoder, init_weights as initialize_weights


class closedSetClassifier(nn.Module):
    def __init__(self, num_classes, num_channels, im_size, init_weights=False, dropout=0.3,
                 backbone="cnn"):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.encoder = build_encoder(backbone, num_channels, im_size, dropout)
        self.classify = nn.Linear(self.encoder.out_features, num_classes)
        if init_weights:
            initialize_weights(self)

    def forward(self, x):
        return self.classify(self.encoder(x))

