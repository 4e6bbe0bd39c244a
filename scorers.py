"""Open-set scorers as objects (as OpenOOD's postprocessors): `score(outputs)` -> {scorer name:
(predicted known class, unknown score)} per image, after a `setup` once per network where needed
(CAC: the anchor pass over the training images). Unknown score: larger = more likely no known class
(metrics.py's convention). Each kind of network has `names` (in the order of tables, files and
plots): the paper's scorer (`paper`) and the strongest simple alternative, side by side."""
import torch

from utils import cac_scores, compute_anchor_means

SCORER_LABELS = {"cac": "CAC score (paper)", "min_distance": "min distance",
                 "max_softmax": "max softmax (paper baseline)", "max_logit": "max logit (MLS)"}


class CACScorers:
    """A CAC network, on its distances d to the class anchors: `cac`, the paper's (s = d * (1 - softmin(d)),
    class argmin s, score min s), and `min_distance` (the plain nearest anchor)."""
    names, paper = ("cac", "min_distance"), "cac"

    def setup(self, net, train_loader, num_classes, device, with_flipped):
        """The anchor pass: the network's anchors become the class means of the logits of the correctly
        classified training images; returns (means, classes with no correctly classified image)."""
        means, fallback = compute_anchor_means(net, train_loader, num_classes, device, with_flipped=with_flipped)
        net.set_anchors(means)
        return means, fallback

    def score(self, outputs):
        distances = outputs[1]
        s = cac_scores(distances)
        return {"cac": (s.argmin(1), s.min(1).values), "min_distance": (distances.argmin(1), distances.min(1).values)}


class CrossEntropyScorers:
    """The cross-entropy baseline's network, on its logits: max_softmax (the paper's) and max_logit
    (MLS, Vaze et al. 2022); both predict argmax; the unknown score is minus the maximum."""
    names, paper = ("max_softmax", "max_logit"), "max_softmax"

    def score(self, outputs):
        probs = torch.softmax(outputs, 1)
        return {"max_softmax": (probs.argmax(1), -probs.max(1).values),
                "max_logit": (outputs.argmax(1), -outputs.max(1).values)}
