"""The cross-entropy baseline's network: an encoder (`--backbone`) and a linear layer to N logits,
under the original's layer names `encoder` and `classify`. The CAC network (openSetClassifier.py)
is this one plus its anchors."""
import torch.nn as nn

from networks.backbones import build_encoder, init_weights as initialize_weights


class closedSetClassifier(nn.Module):
    def __init__(self, num_classes, num_channels, im_size, init_weights=False, dropout=0.3, backbone="cnn"):
        super().__init__()
        self.num_classes, self.backbone = num_classes, backbone
        self.encoder = build_encoder(backbone, num_channels, im_size, dropout)
        self.classify = nn.Linear(self.encoder.out_features, num_classes)
        if init_weights:
            initialize_weights(self)

    def state_dict_with_aliases(self):
        """state_dict() plus, for the paper's CNN, the original's alias keys holding the very same tensors (the
        file does not grow): the original's strict load_state_dict accepts it; this project's drops them."""
        state = self.state_dict()
        for alias, name in getattr(self.encoder, "alias_names", dict)().items():
            for key in [k for k in state if k.startswith(f"encoder.{name}.")]:
                state[f"encoder.{alias}." + key[len(f"encoder.{name}."):]] = state[key]
        return state

    def forward(self, x):
        return self.classify(self.encoder(x))
