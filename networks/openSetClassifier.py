"""CAC network: encoder + linear layer to N logits, and their Euclidean (not squared) distances, in
float64 as in the original, to N fixed class anchors; forward(x) returns (logits, distances). The
anchors are a buffer (`anchors` in the state dict, never trained): alpha * one-hot while training,
the per-class mean logits (`set_anchors`) at evaluation."""
import torch

from networks.closedSetClassifier import closedSetClassifier


class openSetClassifier(closedSetClassifier):
    def __init__(self, num_classes, num_channels, im_size, init_weights=False, dropout=0.3, backbone="cnn"):
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
        self.anchors.copy_(torch.as_tensor(means).to(self.anchors))
