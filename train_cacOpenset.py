"""Train a CAC open-set classifier (Miller et al., WACV 2021) on one trial of a data set.

    python train_cacOpenset.py --dataset MNIST --trial 0            # first run
    python train_cacOpenset.py --dataset MNIST --trial 0 -r         # second phase, lower lr
    python train_cacOpenset.py --dataset MNIST --trial 0 --continue # after Ctrl-C (add -r in that phase)

The CAC loss pulls the N logits to fixed class anchors alpha * e_i (utils.py). Saves
networks/weights/<dataset>/<dataset>_<trial>_<name>CACclassifier{AnchorLoss,CACLoss,Accuracy}.pth, the best
validation anchor loss (the one evaluation uses), CAC loss and accuracy, and every epoch ...Last.pth for --continue."""
import argparse
import math
import sys

from core.errors import UserError
from engine.cli import accel_parser, run_cli, runtime_parser, training_parser
from networks.weights import CAC, CAC_ACCURACY, CAC_ANCHOR_LOSS, CAC_CAC_LOSS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set training with Class Anchor Clustering",
                                parents=[training_parser(), runtime_parser(), accel_parser()])
    g = p.add_argument_group("CAC")
    g.add_argument("--alpha", default=10, type=float, help="magnitude of the anchor points (default: 10)")
    g.add_argument("--lbda", default=0.1, type=float, help="weighting of the anchor loss component (default: 0.1)")
    args = p.parse_args(argv)
    if not args.alpha > 0 or math.isinf(args.alpha):  # `not >` also refuses NaN
        raise UserError(f"--alpha {args.alpha}: the anchor magnitude must be a positive, finite number")
    if not args.lbda >= 0 or math.isinf(args.lbda):
        raise UserError(f"--lbda {args.lbda}: the anchor loss weight must be 0 or more, and finite")
    return args


def train_epoch(model, loader, criterion, optimizer, sums):
    """One epoch of SGD; `sums` adds up the losses and correct predictions (on the device)."""
    model.train()
    for images, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        _, distances = model(images)
        total, anchor, tuplet = criterion(distances, targets)
        total.backward()
        optimizer.step()
        sums.add(total, anchor, tuplet, predicted=distances.argmin(1), targets=targets)


def validate(net, loader, criterion, means):
    """The validation images' CAC and anchor losses and accuracy (the class of the nearest anchor)."""
    net.eval()
    for images, targets in loader:
        _, distances = net(images)
        total, anchor, _ = criterion(distances, targets)
        means.add(total, anchor, predicted=distances.argmin(1), targets=targets)


BEST = {"anchor": math.inf, "cac": math.inf, "acc": 0.0}  # the best validation values before any epoch


def save_best(run, net, stats, epoch):
    """Save `net` under each name whose validation value is at least as good as the best so far (a tie
    counts, as in the original); under --recipe vaze (no validation part) every epoch: the last is evaluated."""
    checkpoint = None  # made once, saved under each name that improved
    for key, value, lower, suffix in (("anchor", stats["val/anchorLoss"], True, CAC_ANCHOR_LOSS),
                                      ("cac", stats["val/CACLoss"], True, CAC_CAC_LOSS),
                                      ("acc", stats["val/accuracy"], False, CAC_ACCURACY)):
        if run.recipe.whole_train or ((value <= run.best[key]) if lower else (value >= run.best[key])):
            run.best[key] = value
            checkpoint = checkpoint or run.checkpoint(net, stats["val/accuracy"], epoch)
            run.save(checkpoint, suffix)


def main(argv=None):
    args = parse_args(argv)
    import torch  # after parsing: --help answers at once

    from engine.loop import BatchMeans, TrainSums
    from engine.training import TrainingRun
    from networks.build import build_network
    from utils import CACLoss

    with TrainingRun(args, CAC, argv) as run:  # the run's lock; Ctrl-C says how to continue
        net = build_network(run.network_config(), CAC, init_weights=not args.resume).to(run.device)
        net.set_anchors(torch.diag(torch.full((net.num_classes,), float(args.alpha))))  # c_i = alpha * e_i
        run.load_first_run(net)  # -r: the first run's best checkpoint
        model, optimizer = run.prepare(net, BEST)  # --continue: the interrupted run's state
        criterion = CACLoss(args.lbda)
        for epoch in run.epoch_loop():
            sums, means = TrainSums(run.accel, 3), BatchMeans(run.accel)
            train_epoch(model, run.batches(epoch, sums), criterion, optimizer, sums)
            with torch.no_grad():
                validate(run.evaluator, run.validation_batches(), criterion, means)
            (total, anchor, tuplet), accuracy = sums.means(epoch)
            (val_total, val_anchor), val_accuracy = means.means()
            stats = {"train/CAC_Loss": total, "train/anchor_Loss": anchor, "train/tuplet_Loss": tuplet,
                     "train/accuracy": accuracy, "val/accuracy": val_accuracy, "val/anchorLoss": val_anchor,
                     "val/CACLoss": val_total}
            save_best(run, run.net, stats, epoch)
            run.end_epoch(epoch, stats)  # the log line, ...Last.pth
    if run.is_main:
        print(f"best validation: accuracy {run.best['acc']:.2f}%, anchor loss {run.best['anchor']:.4f}, "
              f"CAC loss {run.best['cac']:.4f}; checkpoints in {run.weights(CAC_ANCHOR_LOSS)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
