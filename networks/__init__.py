"""Networks of CAC: the paper's CNN or a WideResNet, with a CAC or a cross-entropy head."""
from networks.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from networks.closedSetClassifier import closedSetClassifier
from networks.openSetClassifier import openSetClassifier

__all__ = ["openSetClassifier", "closedSetClassifier", "load_checkpoint", "read_checkpoint",
           "save_checkpoint"]
