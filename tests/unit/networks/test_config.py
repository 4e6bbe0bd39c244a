"""networks/config.py: NetworkConfig from a data set's config, as saved in checkpoints; the size rule."""
import pytest
import torch

from networks.build import build_network

from networks.closedSetClassifier import closedSetClassifier

from networks.openSetClassifier import openSetClassifier
from networks.config import NetworkConfig, im_size_problem


def test_built_once_from_the_data_config_and_saved_as_before():
    cfg = {"num_known_classes": 6, "im_channels": 1, "im_size": 32, "dropout": 0.2}
    config = NetworkConfig.for_data(cfg, "wrn-16-1")
    # the checkpoint's `network` entry: these keys, in this order, since the first version; `pretrained` last
    assert list(config.as_dict().items()) == [("num_classes", 6), ("num_channels", 1), ("im_size", 32),
                                              ("dropout", 0.2), ("backbone", "wrn-16-1"), ("pretrained", None)]
    assert NetworkConfig(**config.as_dict()) == config
    old = {k: v for k, v in config.as_dict().items() if k != "pretrained"}  # a checkpoint of an earlier version
    assert NetworkConfig(**old) == config


@pytest.mark.parametrize("method, cls, out", [("CAC", openSetClassifier, 2), ("ClosedSet", closedSetClassifier, 1)])
def test_build_network_gives_the_method_head(method, cls, out):
    net = build_network(NetworkConfig(3, 1, 16, 0.0), method)
    assert type(net) is cls and net.classify.out_features == 3 and net.backbone == "cnn"
    result = net.eval()(torch.zeros(2, 1, 16, 16))
    assert len(result) == out if isinstance(result, tuple) else out == 1


@pytest.mark.parametrize("size, ok", [(8, True), (32, True), (64, True), (0, False), (-8, False), (12, False),
                                      (True, False), ("32", False), (32.0, False)])
def test_im_size_rule(size, ok):
    assert (im_size_problem(size) is None) == ok
