"""Evaluate CAC networks: closed-set accuracy and open-set AUROC, averaged over trials.

    python eval_cacOpenset.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest

Per trial: load ...CACclassifierAnchorLoss.pth, replace the anchors by the mean logits of
correctly classified training images (+ flipped copies for non-digit data), then score
test images by d * (1 - softmin(d)): predicted class = argmin, unknown score = min.
"""
import argparse
import sys

from engine.cli import run_cli, runtime_parser, evaluation_parser
from engine.evaluation import evaluate_trials, load_trial_network
from networks import openSetClassifier
from utils import accuracy, auroc, cac_scores, compute_anchor_means, gather_outputs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of CAC networks",
                                parents=[evaluation_parser(), runtime_parser()])
    return p.parse_args(argv)


def evaluate_trial(args, data, loader, device):
    net = load_trial_network(openSetClassifier, args, data, "CACclassifierAnchorLoss", "train_cacOpenset.py", device)
    return evaluate_network(net, data, loader, device)


def evaluate_network(net, data, loader, device):
    """Anchor pass, then accuracy and AUROC on the trial's test images (benchmarks time this)."""
    means, fallback = compute_anchor_means(net, loader(data.anchor_dataset()), data.num_known, device,
                                           with_flipped=data.cfg["anchor_flip"])
    if fallback:
        print(f"warning: trial {data.trial}: classes {fallback} have no correctly classified training "
              f"image; their anchors are the mean of all their images", file=sys.stderr)
    net.set_anchors(means)
    print(f"==> Evaluating open set network accuracy and AUROC for trial {data.trial}..")
    (_, known_distances), known_labels = gather_outputs(net, loader(data.known_test_dataset()), device)
    (_, unknown_distances), _ = gather_outputs(net, loader(data.unknown_test_dataset()), device)
    known_scores, unknown_scores = cac_scores(known_distances), cac_scores(unknown_distances)
    acc = accuracy(known_scores.argmin(1), known_labels)
    return acc, auroc(known_scores.min(1).values, unknown_scores.min(1).values)


def main(argv=None):
    args = parse_args(argv)
    return evaluate_trials(args, "CAC", lambda *a: evaluate_trial(args, *a))


if __name__ == "__main__":
    sys.exit(run_cli(main))
