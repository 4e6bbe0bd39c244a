"""CAC network: encoder + linear layer to N logits + distances to N fixed class anchors.

forward(x) returns (logits, distances): Euclidean (not squared) distances, in float64 as
in the original, from each logit vector to each anchor. The anchors are a buffer (saved
in the state dict under `anchors`, never trained): alpha * one-hot while training, the
per-class mean logits (`set_anchors`) at evaluation.
"""
import torch

from networks.classifier import EncoderClassifier


class openSetClassifier(EncoderClassifier):
    def __init__(self, num_classes, num_channels, im_size, init_weights=False, dropout=0.3,
                 backbone="cnn"):
        super().__init__(num_classes, num_channels, im_size, init_weights, dropout, backbone)
        self.register_buffer("anchors", torch.zeros(num_classes, num_classes, dtype=torch.float64))

    def forward(self, x):
        logits = super().forward(x)
        return logits, self.distance_classifier(logits)

    def distance_classifier(self, logits):
        """(batch, N) Euclidean distances from each logit vector to each anchor, in float64."""
        diff = logits.double().unsqueeze(1) - self.anchors.unsqueeze(0)
        return torch.linalg.vector_norm(diff, ord=2, dim=2)

    def set_anchors(self, means):
        """Replace the anchors (N x N), keeping them on the network's device as float64."""
        means = torch.as_tensor(means)
        if means.shape != self.anchors.shape:
            raise ValueError(f"anchors of shape {tuple(means.shape)} do not fit a network with "
                             f"{self.num_classes} classes")
        self.anchors.copy_(means.to(self.anchors))

