"""Open-set scorers: network outputs -> (predicted known class, unknown score) per image.

Unknown score: larger = more likely an image of no known class (the convention of
metrics.py). The first scorer of each method is the paper's; the others are the strongest
simple alternatives evaluated side by side.
"""
import torch

from utils import cac_scores


def cac_scorers(distances):
    """CAC network, distances to the class-mean anchors (N per image):
    cac: s = d * (1 - softmin(d)), class argmin s, score min s (the paper);
    min_distance: class argmin d, score min d (plain nearest anchor)."""
    s = cac_scores(distances)
    return {"cac": (s.argmin(1), s.min(1).values), "min_distance": (distances.argmin(1), distances.min(1).values)}


def ce_scorers(logits):
    """Cross-entropy network: max_softmax (the paper's baseline) and max_logit (MLS, Vaze et al.
    2022); both predict argmax; the unknown score is minus the maximum."""
    probs = torch.softmax(logits, 1)
    return {"max_softmax": (probs.argmax(1), -probs.max(1).values),
            "max_logit": (logits.argmax(1), -logits.max(1).values)}


SCORER_LABELS = {"cac": "CAC score (paper)", "min_distance": "min distance",
                 "max_softmax": "max softmax (paper baseline)", "max_logit": "max logit (MLS)"}
