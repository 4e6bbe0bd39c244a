"""Evaluate CAC networks: closed-set accuracy and open-set AUROC, averaged over trials,
then every open-set metric for the paper's CAC score and the plain minimum distance.

    python eval_cacOpenset.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest

Per trial, the anchors of ...CACclassifierAnchorLoss.pth are replaced by the mean logits of correctly
classified training images (+ flipped copies for non-digit data), read from the calibration beside the
checkpoint (X.calibration.json) when the same data made them (--recompute_anchors: made again)."""
import argparse
import sys

from engine.cli import evaluation_parser, run_cli, runtime_parser
from networks.weights import CAC


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of CAC networks",
                                parents=[evaluation_parser(), runtime_parser(training=False)])
    p.add_argument("--recompute_anchors", action="store_true",
                   help="compute the class-mean anchors from the training images even when the checkpoint's "
                        "calibration holds them for this data (default: reuse them)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from engine.evaluation import Evaluation  # after parsing: --help answers at once

    evaluation = Evaluation(args, CAC)
    results = []
    for trial in evaluation.trials:
        run = evaluation.trial_run(trial)  # the trial's data and network, the calibration beside its checkpoint
        how = run.place_anchors(recompute=args.recompute_anchors)  # the CAC scorer's setup
        print(f"trial {trial}: anchor means {how}")
        results.append(run.evaluate())  # every scorer and metric; the calibration written beside the checkpoint
    return evaluation.report(results)  # the original's four lines, the table, the results files


if __name__ == "__main__":
    sys.exit(run_cli(main))
