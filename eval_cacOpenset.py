"""Evaluate CAC networks: closed-set accuracy and open-set AUROC, averaged over trials,
then every open-set metric for the paper's CAC score and the plain minimum distance.

    python eval_cacOpenset.py -dataset MNIST --num_trials 5 --start_trial 0 --name myTest

Per trial: load ...CACclassifierAnchorLoss.pth, replace the anchors by the mean logits of
correctly classified training images (+ flipped copies for non-digit data), then score
test images by d * (1 - softmin(d)): predicted class = argmin, unknown score = min.
The anchor means are stored in the checkpoint and reused by the next evaluation of the
same weights and data (--recompute_anchors forces the pass over the training split).
"""
import argparse
import sys
import time

import torch

from engine.calibration import anchor_key, cached_anchor_means, stored_calibration
from engine.cli import run_cli, runtime_parser, evaluation_parser
from engine.evaluation import evaluate_trials, gather_splits, load_trial_network, overflow_error, scorer_outputs
from networks.weights import CAC, CAC_ANCHOR_LOSS
from scorers import cac_scorers
from utils import compute_anchor_means


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set evaluation of CAC networks",
                                parents=[evaluation_parser(), runtime_parser()])
    p.add_argument("--recompute_anchors", action="store_true",
                   help="compute the class-mean anchors from the training split even when the checkpoint "
                        "stores them for these weights and data (default: reuse them)")
    return p.parse_args(argv)


def anchor_means(args, net, ckpt, calibration, data, loader, device, path):
    key = anchor_key(data, ckpt)
    means = None if args.recompute_anchors else cached_anchor_means(calibration, key, data.num_known, path)
    if means is not None:
        print(f"trial {data.trial}: anchor means read from the checkpoint (--recompute_anchors to redo them)")
        return means, key
    start = time.perf_counter()
    means, fallback = compute_anchor_means(net, loader(data.anchor_dataset()), data.num_known, device,
                                           with_flipped=data.cfg["anchor_flip"])
    if not bool(torch.isfinite(means).all()):  # before any other line: the means say nothing here
        raise overflow_error(path, "logits on its training images (anchor means)", data.trial)
    if fallback:
        print(f"warning: trial {data.trial}: classes {fallback} have no correctly classified training "
              f"image; their anchors are the mean of all their images", file=sys.stderr)
    print(f"trial {data.trial}: anchor means computed from {len(data.train_idx)} training images "
          f"in {time.perf_counter() - start:.2f} s")
    return means, key


def evaluate_trial(args, data, loader, device):
    net, ckpt, path, config = load_trial_network(CAC, args, data, CAC_ANCHOR_LOSS,
                                         "train_cacOpenset.py", device)
    calibration = stored_calibration(ckpt, path, CAC, data.num_known)  # an invalid one: warned, made again
    means, key = anchor_means(args, net, ckpt, calibration, data, loader, device, path)
    net.set_anchors(means)
    print(f"==> Evaluating open set network accuracy and AUROC for trial {data.trial}..")
    outputs = gather_splits(net, data, loader, device)
    return {"scorers": scorer_outputs(lambda out: cac_scorers(out[1]), outputs),
            "known_labels": outputs["known"][1].numpy(), "known_logits": outputs["known"][0][0].numpy(),
            "unknown_logits": outputs["unknown"][0][0].numpy(), "anchors": means.cpu().numpy(), "anchor_key": key,
            "checkpoint": path, "network": config.as_dict(), "calibration": calibration}


def main(argv=None):
    args = parse_args(argv)
    return evaluate_trials(args, CAC, lambda *a: evaluate_trial(args, *a))


if __name__ == "__main__":
    sys.exit(run_cli(main))
