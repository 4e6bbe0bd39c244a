"""CAC scores, anchor means, accuracy and AUROC against independent computations."""
import numpy as np
import pytest
import torch
from sklearn.metrics import auc, roc_curve

from utils import accuracy, anchor_means, auroc, cac_scores, compute_anchor_means, gather_outputs


def test_cac_scores_formula():
    d = torch.tensor([[1.0, 2.0, 4.0], [3.0, 3.0, 0.5]], dtype=torch.float64)
    softmin = np.exp(-d.numpy()) / np.exp(-d.numpy()).sum(1, keepdims=True)
    assert np.allclose(cac_scores(d).numpy(), d.numpy() * (1 - softmin))


def test_auroc_matches_sklearn_roc_curve_and_hand_cases():
    rng = np.random.default_rng(0)
    known, unknown = rng.normal(0, 1, 200), rng.normal(1, 1, 70)
    labels = np.r_[np.zeros(200), np.ones(70)]
    fpr, tpr, _ = roc_curve(labels, np.r_[known, unknown])  # the original's computation
    assert auroc(known, unknown) == pytest.approx(auc(fpr, tpr), abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0  # every unknown scores higher
    assert auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5  # ties count half
    # pairs (known, unknown): (0,1)>,(0,0)=,(2,1)<,(2,0)< -> (1 + 0.5) / 4
    assert auroc([0, 2], [1, 0]) == pytest.approx(0.375)


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75


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


def test_gather_outputs_keeps_order_and_tuple():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(10)), batch_size=4)
    net = torch.nn.Flatten()
    out, labels = gather_outputs(net, loader, "cpu")
    assert torch.equal(out.flatten(), torch.arange(10.0)) and torch.equal(labels, torch.arange(10))
