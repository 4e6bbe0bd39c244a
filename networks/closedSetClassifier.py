"""Cross-entropy baseline: encoder + linear layer; forward(x) returns logits."""
from networks.classifier import EncoderClassifier


class closedSetClassifier(EncoderClassifier):
    """closedSetClassifier(num_classes, num_channels, im_size, init_weights=False, dropout=0.3,
    backbone="cnn"): the encoder and the linear layer, trained with cross-entropy."""
