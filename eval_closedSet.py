"""Evaluate cross-entropy networks: accuracy and AUROC of the maximum softmax probability,
then every open-set metric for the maximum softmax and the maximum logit (MLS).

    python eval_closedSet.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest
"""
import argparse
import sys

from engine.calibration import stored_calibration
from engine.cli import run_cli, runtime_parser, evaluation_parser
from engine.evaluation import evaluate_trials, gather_splits, load_trial_network, scorer_outputs
from networks.weights import CLOSED_SET, CLOSED_SET_BEST
from scorers import ce_scorers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of cross-entropy networks",
                                parents=[evaluation_parser(), runtime_parser()])
    return p.parse_args(argv)


def evaluate_trial(args, data, loader, device):
    net, ckpt, path, config = load_trial_network(CLOSED_SET, args, data, CLOSED_SET_BEST,
                                         "train_closedSet.py", device)
    calibration = stored_calibration(ckpt, path, CLOSED_SET, data.num_known)  # an invalid one: warned, made again
    print(f"==> Evaluating closed set network accuracy and AUROC for trial {data.trial}..")
    outputs = gather_splits(net, data, loader, device)
    return {"scorers": scorer_outputs(ce_scorers, outputs), "known_labels": outputs["known"][1].numpy(),
            "known_logits": outputs["known"][0].numpy(), "unknown_logits": outputs["unknown"][0].numpy(),
            "checkpoint": path, "network": config.as_dict(), "calibration": calibration}


def main(argv=None):
    args = parse_args(argv)
    return evaluate_trials(args, CLOSED_SET, lambda *a: evaluate_trial(args, *a))


if __name__ == "__main__":
    sys.exit(run_cli(main))
