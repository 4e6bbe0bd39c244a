"""scorers.py: each scorer's (predicted class, unknown score) against its formula written out
with numpy, the paper's scorer named, and the CAC scorers' setup (the anchor pass)."""
import numpy as np
import torch

from scorers import CACScorers, CrossEntropyScorers, SCORER_LABELS


def test_cac_scorers_follow_the_formula():
    d = torch.tensor([[1.0, 2.0, 4.0], [3.0, 3.0, 0.5], [0.2, 0.1, 9.0]], dtype=torch.float64)
    logits = torch.zeros(3, 3)
    scores = CACScorers().score((logits, d))
    assert list(scores) == ["cac", "min_distance"]
    x = d.numpy()
    s = x * (1 - np.exp(-x) / np.exp(-x).sum(1, keepdims=True))  # SPEC 1, written out
    pred, score = scores["cac"]
    assert pred.tolist() == s.argmin(1).tolist() and np.allclose(score.numpy(), s.min(1), rtol=1e-12)
    pred, score = scores["min_distance"]
    assert pred.tolist() == [0, 2, 1] and score.tolist() == [1.0, 0.5, 0.1]


def test_cross_entropy_scorers_follow_the_formula():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 3.5]], dtype=torch.float64)
    scores = CrossEntropyScorers().score(logits)
    assert list(scores) == ["max_softmax", "max_logit"]
    x = logits.numpy()
    probs = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    pred, score = scores["max_softmax"]
    assert pred.tolist() == [0, 2] and np.allclose(score.numpy(), -probs.max(1), rtol=1e-12)
    pred, score = scores["max_logit"]
    assert pred.tolist() == [0, 2] and score.tolist() == [-2.0, -3.5]


def test_the_papers_scorer_is_named():
    for scorers, paper in ((CACScorers(), "cac"), (CrossEntropyScorers(), "max_softmax")):
        assert scorers.paper == paper and scorers.paper in scorers.names
        assert all(name in SCORER_LABELS for name in scorers.names)


class _AnchorNet(torch.nn.Module):
    """A stand-in CAC network: logits are the images' two pixels; distances to its anchors."""

    def __init__(self):
        super().__init__()
        self.anchors = torch.zeros(2, 2, dtype=torch.float64)

    def set_anchors(self, means):
        self.anchors = torch.as_tensor(means, dtype=torch.float64).clone()

    def forward(self, x):
        logits = x.flatten(1)
        return logits, torch.cdist(logits.double(), self.anchors)


def test_cac_setup_places_the_class_means_of_correct_training_logits():
    images = torch.tensor([[3.0, 0.0], [5.0, 1.0], [0.0, 2.0], [4.0, 1.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 0, 1, 1])  # the last image is classified as 0: not in class 1's mean
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=3)
    net = _AnchorNet()
    means, fallback = CACScorers().setup(net, loader, 2, "cpu", with_flipped=False)
    assert fallback == [] and means.tolist() == [[4.0, 0.5], [0.0, 2.0]]
    assert torch.equal(net.anchors, means)
    pred, score = CACScorers().score(net(torch.tensor([[4.0, 0.5]]).view(1, 1, 1, 2)))["min_distance"]
    assert pred.tolist() == [0] and score.tolist() == [0.0]
