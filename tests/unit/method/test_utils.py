"""utils.py, the method's math: CACLoss against the formula of SPEC section 1 written out with
plain Python loops, the CAC scores, and the anchor means against numpy."""
import math

import numpy as np
import pytest
import torch

from utils import CACLoss, anchor_means, cac_scores, compute_anchor_means


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
    loss = CACLoss(0.3)
    assert isinstance(loss, torch.nn.Module)
    # called as a module (nn.Module.__call__ -> forward), it gives the formula's value
    distances, targets = torch.tensor([[0.5, 2.0, 3.0], [4.0, 1.0, 0.25]], dtype=torch.float64), torch.tensor([0, 2])
    want = loss_by_formula(distances, targets, 0.3)
    assert [float(v) for v in loss(distances, targets)] == pytest.approx(want, rel=1e-12)


def test_cac_scores_formula():
    d = torch.tensor([[1.0, 2.0, 4.0], [3.0, 3.0, 0.5]], dtype=torch.float64)
    softmin = np.exp(-d.numpy()) / np.exp(-d.numpy()).sum(1, keepdims=True)
    assert np.allclose(cac_scores(d).numpy(), d.numpy() * (1 - softmin))


def test_anchor_means_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 4))
    labels = rng.integers(0, 4, 300)
    means, fallback = anchor_means(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels), 4)
    logits32 = logits.astype(np.float32).astype(np.float64)
    correct = logits32.argmax(1) == labels
    want = np.stack([logits32[correct & (labels == c)].mean(0) for c in range(4)])
    assert fallback == []
    assert means.dtype == torch.float64
    assert np.allclose(means.numpy(), want, atol=1e-12)


def test_anchor_means_fall_back_when_a_class_is_never_right():
    logits = torch.tensor([[5.0, 0.0], [4.0, 1.0], [3.0, 0.0]])  # everything predicted as class 0
    labels = torch.tensor([0, 1, 1])
    means, fallback = anchor_means(logits, labels, 2)
    assert fallback == [1]
    assert torch.allclose(means[1], torch.tensor([3.5, 0.5], dtype=torch.float64))
    assert torch.allclose(means[0], torch.tensor([5.0, 0.0], dtype=torch.float64))


class _LeftHalf(torch.nn.Module):
    """A stand-in CAC network whose logits are the mean of each image half: flips swap them."""
    backbone = "test"

    def forward(self, x):
        left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2:].mean((1, 2, 3))
        logits = torch.stack([left, right], 1)
        return logits, logits.double()


def test_compute_anchor_means_adds_flipped_copies():
    images = torch.zeros(4, 1, 2, 4)
    images[:, :, :, :2] = 1.0  # bright left half: logits (1, 0) -> class 0; flipped (0, 1) -> class 1
    labels = torch.tensor([0, 0, 1, 1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=3)
    plain, _ = compute_anchor_means(_LeftHalf(), loader, 2, "cpu", with_flipped=False)
    assert torch.allclose(plain[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(plain[1], torch.tensor([1.0, 0.0], dtype=torch.float64))  # fallback: none right
    flipped, fallback = compute_anchor_means(_LeftHalf(), loader, 2, "cpu", with_flipped=True)
    # flipped copies of class-1 images give logits (0, 1): correct, so they make class 1's anchor
    assert fallback == []
    assert torch.allclose(flipped[1], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(flipped[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
