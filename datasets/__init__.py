"""Data sets of CAC: config, class splits, train/val splits, loaders."""
from datasets.loaders import DATASET_NAMES, OpenSetData, load_config, make_loader

__all__ = ["DATASET_NAMES", "OpenSetData", "load_config", "make_loader"]
