"""The method's math: the CAC loss, the CAC scores and the class-mean anchors evaluation uses (the
metrics computed from scores: metrics.py; the scorers built on these: scorers.py)."""
import torch
import torch.nn as nn


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
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        for view in ((images, images.flip(3)) if with_flipped else (images,)):
            logits.append(net(view)[0])  # kept on the device: one copy to the host at the end
            labels.append(targets)
    return anchor_means(torch.cat(logits).cpu(), torch.cat(labels).cpu(), num_classes)
