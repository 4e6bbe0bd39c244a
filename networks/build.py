"""build_network: the network of a method ("CAC" or "ClosedSet") that a NetworkConfig describes,
with its starting weights (the original's init; `--pretrained` ResNet weights on top)."""
from networks.closedSetClassifier import closedSetClassifier
from networks.openSetClassifier import openSetClassifier
from networks.pretrained import load_pretrained
from networks.weights import CAC, CROSS_ENTROPY

NETWORK_CLASSES = {CAC: openSetClassifier, CROSS_ENTROPY: closedSetClassifier}


def build_network(config, method, init_weights=False):
    """`init_weights` False: a checkpoint will be loaded, so nothing is initialized or read."""
    c = config
    net = NETWORK_CLASSES[method](c.num_classes, c.num_channels, c.im_size, init_weights=init_weights,
                                  dropout=c.dropout, backbone=c.backbone)
    if init_weights and c.pretrained:
        load_pretrained(net.encoder, c.backbone, c.pretrained)
    return net
