"""CAC loss, CAC scores, anchor means, and the paper's two metrics (accuracy, AUROC).

AUROC lives in metrics.py with the other open-set metrics; it is importable from here too.
"""
import torch
import torch.nn as nn

from metrics import auroc  # noqa: F401 - the paper's metric, where the original kept it


class CACLoss(nn.Module):
    """CAC loss (SPEC section 1) on distances to the anchors, averaged over the batch.

    anchor = mean of d_y (Euclidean distance to the true class anchor);
    tuplet = mean of log(1 + sum_{j != y} exp(d_y - d_j));
    total  = lbda * anchor + tuplet.  forward returns (total, anchor, tuplet).
    """

    def __init__(self, lbda=0.1):
        super().__init__()
        self.lbda = lbda

    def forward(self, distances, targets):
        true = distances.gather(1, targets.view(-1, 1))  # (batch, 1)
        anchor = true.mean()
        # 1 + sum_{j != y} exp(d_y - d_j) == sum_j exp(d_y - d_j): the j = y term is exp(0) = 1,
        # so the tuplet term is a logsumexp over all classes (stable for large distances).
        tuplet = torch.logsumexp(true - distances, dim=1).mean()
        return self.lbda * anchor + tuplet, anchor, tuplet


def cac_scores(distances):
    """Per-class CAC score d_i * (1 - softmin(d)_i); the open-set score is its minimum."""
    return distances * (1 - torch.softmax(-distances, dim=1))


@torch.no_grad()
def gather_outputs(net, loader, device):
    """Run `net` (in eval mode) over `loader`; return (outputs, labels) concatenated on the CPU.

    `outputs` is the logits for a cross-entropy network and (logits, distances) for a CAC network.
    """
    net.eval()
    outputs, labels = [], []
    for images, targets in loader:
        out = net(images.to(device, non_blocking=True))
        outputs.append(tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu())
        labels.append(targets.cpu())  # device-resident batches carry their labels on the device
    labels = torch.cat(labels)
    if outputs and isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs)), labels
    return torch.cat(outputs), labels


def anchor_means(logits, labels, num_classes):
    """Mean logit vector per class over the images classified correctly (argmax of logits).

    A class with no correctly classified image (a barely trained network) falls back to
    the mean of all its images, so no anchor is NaN; returns (means, fallback_classes).
    """
    logits = logits.double()
    correct = logits.argmax(1) == labels
    means = torch.zeros(num_classes, logits.shape[1], dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    means.index_add_(0, labels[correct], logits[correct])
    counts.index_add_(0, labels[correct], torch.ones(int(correct.sum()), dtype=torch.float64))
    fallback = (counts == 0).nonzero().flatten().tolist()
    for c in fallback:
        members = logits[labels == c]
        if len(members) == 0:
            raise ValueError(f"class {c} has no training image: cannot place its anchor")
        means[c], counts[c] = members.mean(0), 1
    return means / counts.unsqueeze(1), fallback


@torch.no_grad()
def compute_anchor_means(net, loader, num_classes, device, with_flipped):
    """The paper's evaluation anchors: class means of the logits of correctly classified
    training images, plus their horizontally flipped copies when `with_flipped` (one pass
    over the data: each batch is also mirrored on the device)."""
    net.eval()
    logits, labels = [], []
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        for view in ((images, images.flip(3)) if with_flipped else (images,)):
            logits.append(net(view)[0].cpu())
            labels.append(targets.cpu())
    return anchor_means(torch.cat(logits), torch.cat(labels), num_classes)


def accuracy(predicted, labels):
    """Top-1 accuracy: share of predictions equal to the labels."""
    return float((torch.as_tensor(predicted) == torch.as_tensor(labels)).double().mean())
