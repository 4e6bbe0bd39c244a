"""Train a CAC open-set classifier (Miller et al., WACV 2021) on one trial of a data set.

    python train_cacOpenset.py --dataset MNIST --trial 0            # first run
    python train_cacOpenset.py --dataset MNIST --trial 0 -r         # resumed run, lower lr
    python train_cacOpenset.py --dataset MNIST --trial 0 --continue # after Ctrl-C (add -r in that phase)

Saves networks/weights/<dataset>/<dataset>_<trial>_<name>CACclassifier{AnchorLoss,CACLoss,
Accuracy}.pth: the best validation anchor loss (used by evaluation), CAC loss and accuracy,
and ...CACclassifierLast.pth, the state --continue picks up (engine/state.py, engine/resume.py).
"""
import argparse
import math
import sys

from engine.cli import accel_parser, run_cli, runtime_parser, training_parser
from core.errors import UserError
from engine.lazy import no_grad
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


def train_epoch(model, loader, criterion, optimizer, accel, epoch, state):
    import torch  # here and below: after parsing, so that --help answers at once

    model.train()
    sums = state.epoch_sums(4)  # total, anchor, tuplet, correct
    for step, (images, targets) in state.iterate(loader, epoch, sums):
        images, targets = accel.inputs(images, targets)
        optimizer.zero_grad(set_to_none=True)
        with accel.autocast():
            _, distances = model(images)
            total, anchor, tuplet = criterion(distances, targets)
        total.backward()
        optimizer.step()
        correct = (distances.argmin(1) == targets).sum()
        sums += torch.stack([total.detach(), anchor.detach(), tuplet.detach(), correct.double()])
    (total, anchor, tuplet), accuracy = state.epoch_means(sums, len(loader))
    return {"train/CAC_Loss": total, "train/anchor_Loss": anchor, "train/tuplet_Loss": tuplet,
            "train/accuracy": accuracy}


@no_grad
def validate(net, loader, criterion, accel):
    import torch

    net.eval()
    accel.sync_buffers(net)
    means, counts = [], []  # per batch: (total, anchor) over this rank's images, its image count
    correct = torch.zeros((), device=accel.device, dtype=torch.float64)
    for images, targets in loader:
        images, targets = accel.inputs(images, targets)
        with accel.autocast():
            _, distances = net(images)
            total, anchor, _ = criterion(distances, targets)
        means.append(torch.stack([total, anchor]))
        counts.append(torch.full((), len(targets), device=accel.device, dtype=torch.float64))
        correct += (distances.argmin(1) == targets).sum()
    total, anchor = accel.batch_means(torch.stack(means), torch.stack(counts)).tolist()
    correct, seen = accel.sum(torch.stack([correct, sum(counts)])).tolist()
    return {"val/accuracy": 100.0 * correct / seen, "val/anchorLoss": anchor, "val/CACLoss": total}


def main(argv=None):
    args = parse_args(argv)
    from engine.training import TrainingRun

    with TrainingRun(args, method=CAC, phase_key="openset_training") as run:  # holds the run's lock
        train(args, run)


def train(args, run):
    """A first run, a -r run or a --continue of either, in `run` (locked, checked)."""
    import torch

    from engine.state import TrainState
    from networks.build import build_network
    from utils import CACLoss

    config = run.network_config()
    net = build_network(config, CAC, init_weights=not args.resume).to(run.device)
    net.set_anchors(torch.diag(torch.full((config.num_classes,), float(args.alpha))))
    start_epoch = run.start_epoch(net, CAC_ANCHOR_LOSS, "train_cacOpenset.py")
    net, model = run.accel.prepare(net)  # model: what the training step calls (DDP, compiled)
    optimizer = run.optimizer(net)
    criterion = CACLoss(args.lbda)
    # --continue: loads the interrupted run (if its --alpha and --lbda are these) and its best values
    state = TrainState(run, net, optimizer, run.epochs(start_epoch),
                       best={"anchor": float("inf"), "cac": float("inf"), "acc": 0.0}, must_match=("alpha", "lbda"))
    run.save_config(keep_log_bytes=state.continued_log_size)
    with state.stop_signals():  # SIGINT/SIGTERM: finish the step, save ...Last.pth, exit
        for epoch in state.epochs:
            stats = train_epoch(model, run.train_loader, criterion, optimizer, run.accel, epoch, state)
            stats.update(validate(net, run.val_loader, criterion, run.accel))
            acc = stats["val/accuracy"]
            checkpoint = None  # made once, saved under each name whose value improved (ties count)
            for key, value, lower, suffix in (("anchor", stats["val/anchorLoss"], True, CAC_ANCHOR_LOSS),
                                              ("cac", stats["val/CACLoss"], True, CAC_CAC_LOSS),
                                              ("acc", acc, False, CAC_ACCURACY)):
                if state.improved(key, value, lower=lower):
                    checkpoint = checkpoint or run.checkpoint(net, acc, epoch)
                    run.save(checkpoint, suffix)
            run.log(epoch, stats)
            state.end_epoch(epoch)
    run.close()
    best = state.best
    if run.is_main:
        print(f"best validation: accuracy {best['acc']:.2f}%, anchor loss {best['anchor']:.4f}, "
              f"CAC loss {best['cac']:.4f}; checkpoints in {run.weights(CAC_ANCHOR_LOSS)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
