"""CACLoss against the formula of SPEC section 1 written out with plain Python loops."""
import math

import pytest
import torch

from utils import CACLoss


def loss_by_formula(distances, targets, lbda):
    """L = lbda * d_y + log(1 + sum_{j != y} exp(d_y - d_j)), averaged; loops, no tricks."""
    anchors, tuplets = [], []
    for d, y in zip(distances.tolist(), targets.tolist()):
        anchors.append(d[y])
        tuplets.append(math.log(1 + sum(math.exp(d[y] - d[j]) for j in range(len(d)) if j != y)))
    anchor = sum(anchors) / len(anchors)
    tuplet = sum(tuplets) / len(tuplets)
    return lbda * anchor + tuplet, anchor, tuplet


@pytest.mark.parametrize("num_classes", [2, 4, 6, 20])
@pytest.mark.parametrize("lbda", [0.1, 0.0, 1.5])
def test_loss_matches_formula(num_classes, lbda):
    g = torch.Generator().manual_seed(num_classes)
    distances = torch.rand(33, num_classes, generator=g, dtype=torch.float64) * 15
    targets = torch.randint(0, num_classes, (33,), generator=g)
    total, anchor, tuplet = CACLoss(lbda)(distances, targets)
    want = loss_by_formula(distances, targets, lbda)
    for got, expected in zip((total, anchor, tuplet), want):
        assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_loss_gradient_matches_formula_gradient():
    distances = torch.rand(8, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    CACLoss(0.1)(distances, targets)[0].backward()
    ours = distances.grad.clone()
    d = distances.detach().clone().requires_grad_(True)
    # the same formula as autograd sees it, with an explicit mask over j != y
    true = d[torch.arange(8), targets].unsqueeze(1)
    mask = torch.ones_like(d, dtype=torch.bool)
    mask[torch.arange(8), targets] = False
    tuplet = torch.log(1 + (torch.exp(true - d) * mask).sum(1)).mean()
    (0.1 * true.mean() + tuplet).backward()
    assert torch.allclose(ours, d.grad, atol=1e-12)


def test_large_distances_stay_finite():
    """The original's exp(d_y - d_j) overflows for d_y - d_j > 709 in float64; ours must not."""
    distances = torch.tensor([[1000.0, 0.0, 5.0]], dtype=torch.float64)
    total, _, tuplet = CACLoss()(distances, torch.tensor([0]))
    assert math.isfinite(float(total))
    # log(1 + e^1000 + e^995) = 1000 + log(1 + e^-5) + (e^-1000 ~ 0)
    assert float(tuplet) == pytest.approx(1000 + math.log1p(math.exp(-5)), rel=1e-12)


def test_perfect_clustering_has_small_loss_and_wrong_has_large():
    near = torch.tensor([[0.0, 10.0, 10.0]], dtype=torch.float64)
    far = torch.tensor([[10.0, 0.0, 10.0]], dtype=torch.float64)
    target = torch.tensor([0])
    assert CACLoss()(near, target)[0] < CACLoss()(far, target)[0]
    assert float(CACLoss()(near, target)[2]) == pytest.approx(math.log(1 + 2 * math.exp(-10)))


def test_loss_is_an_nn_module():
    assert isinstance(CACLoss(), torch.nn.Module)
