"""Evaluate the cross-entropy baseline: accuracy and AUROC of the maximum softmax probability,
then every open-set metric for the maximum softmax and the maximum logit (MLS).

    python eval_closedSet.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest
"""
import argparse
import sys

from engine.cli import evaluation_parser, run_cli, runtime_parser
from networks.weights import CROSS_ENTROPY


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of the cross-entropy baseline",
                                parents=[evaluation_parser(), runtime_parser(training=False)])
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from engine.evaluation import Evaluation  # after parsing: --help answers at once

    evaluation = Evaluation(args, CROSS_ENTROPY)
    # per trial: its data and network, every scorer and metric, the calibration written beside its checkpoint
    results = [evaluation.trial_run(trial).evaluate() for trial in evaluation.trials]
    return evaluation.report(results)  # the original's four lines, the table, the results files


if __name__ == "__main__":
    sys.exit(run_cli(main))
