"""Evaluate cross-entropy networks: accuracy and AUROC of the maximum softmax probability.

    python eval_closedSet.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest
"""
import argparse
import sys

import torch

from engine.cli import run_cli, runtime_parser, evaluation_parser
from engine.evaluation import evaluate_trials, load_trial_network
from networks import closedSetClassifier
from utils import accuracy, auroc, gather_outputs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of cross-entropy networks",
                                parents=[evaluation_parser(), runtime_parser()])
    return p.parse_args(argv)


def evaluate_trial(args, data, loader, device):
    net = load_trial_network(closedSetClassifier, args, data, "closedSetClassifier", "train_closedSet.py", device)
    print(f"==> Evaluating closed set network accuracy and AUROC for trial {data.trial}..")
    known_logits, known_labels = gather_outputs(net, loader(data.known_test_dataset()), device)
    unknown_logits, _ = gather_outputs(net, loader(data.unknown_test_dataset()), device)
    known_probs, unknown_probs = torch.softmax(known_logits, 1), torch.softmax(unknown_logits, 1)
    acc = accuracy(known_probs.argmax(1), known_labels)
    # known-ness = max softmax probability, so the unknown score is its negative
    return acc, auroc(-known_probs.max(1).values, -unknown_probs.max(1).values)


def main(argv=None):
    args = parse_args(argv)
    return evaluate_trials(args, "ClosedSet", lambda *a: evaluate_trial(args, *a))


if __name__ == "__main__":
    sys.exit(run_cli(main))
