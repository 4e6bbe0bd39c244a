"""Networks of CAC: the paper's CNN or a WideResNet, with a CAC or a cross-entropy head;
what builds them (config.py), their files' names (weights.py) and format (checkpoint.py)."""
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from networks.closedSetClassifier import closedSetClassifier
from networks.config import NetworkConfig
from networks.openSetClassifier import openSetClassifier
from networks.weights import CAC, CLOSED_SET

NETWORK_CLASSES = {CAC: openSetClassifier, CLOSED_SET: closedSetClassifier}


def build_network(config, method, init_weights=False):
    """The network of `method` ("CAC" or "ClosedSet") that `config` (a NetworkConfig) describes."""
    c = config
    return NETWORK_CLASSES[method](c.num_classes, c.num_channels, c.im_size, init_weights=init_weights,
                                   dropout=c.dropout, backbone=c.backbone)


__all__ = ["openSetClassifier", "closedSetClassifier", "NetworkConfig", "build_network", "load_checkpoint",
           "read_checkpoint", "save_checkpoint"]
