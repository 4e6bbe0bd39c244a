"""Networks of CAC: the paper's CNN, a WideResNet or torchvision's ResNet, with a CAC or a
cross-entropy head; what builds them (config.py, build.py), their files' names (weights.py)
and format (checkpoint.py).

This package file imports nothing, so that `networks.config` and `networks.weights` (what the
scripts' parsers read) load without torch: import each name from its module."""
