"""Train a CAC open-set classifier (Miller et al., WACV 2021) on one trial of a data set.

    python train_cacOpenset.py --dataset MNIST --trial 0            # first run
    python train_cacOpenset.py --dataset MNIST --trial 0 -r         # resumed run, lower lr
    python train_cacOpenset.py --dataset MNIST --trial 0 --continue # after Ctrl-C (add -r in that phase)

Saves networks/weights/<dataset>/<dataset>_<trial>_<name>CACclassifier{AnchorLoss,CACLoss,
Accuracy}.pth: the best validation anchor loss (used by evaluation), CAC loss and accuracy,
and ...CACclassifierLast.pth, the state --continue picks up (engine/resume.py).
"""
import argparse
import sys

import torch
from tqdm import tqdm

from engine.cli import run_cli, runtime_parser, training_parser
from engine.errors import UserError
from engine.resume import Progress
from engine.training import LOG_EVERY, TrainingRun, check_finite
from networks import openSetClassifier
from utils import CACLoss


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open-set training with Class Anchor Clustering",
                                parents=[training_parser(), runtime_parser()])
    g = p.add_argument_group("CAC")
    g.add_argument("--alpha", default=10, type=float, help="magnitude of the anchor points (default: 10)")
    g.add_argument("--lbda", default=0.1, type=float, help="weighting of the anchor loss component (default: 0.1)")
    args = p.parse_args(argv)
    if args.alpha <= 0:
        raise UserError(f"--alpha {args.alpha}: the anchor magnitude must be positive")
    if args.lbda < 0:
        raise UserError(f"--lbda {args.lbda}: the anchor loss weight must be 0 or more")
    return args


def train_epoch(net, loader, criterion, optimizer, device, epoch, progress):
    net.train()
    # total, anchor, tuplet, correct: zeros, or the sums of an interrupted epoch's first batches
    sums, seen, start = progress.begin_epoch(torch.zeros(4, device=device, dtype=torch.float64))
    bar = tqdm(progress.batches(loader), desc=f"epoch {epoch}", total=len(loader), initial=start, leave=False,
               disable=None)
    for step, (images, targets) in enumerate(bar, start=start + 1):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        _, distances = net(images)
        total, anchor, tuplet = criterion(distances, targets)
        total.backward()
        optimizer.step()
        correct = (distances.argmin(1) == targets).sum()
        sums += torch.stack([total.detach(), anchor.detach(), tuplet.detach(), correct.double()])
        seen += len(targets)
        if step % LOG_EVERY == 0 or step == len(loader):
            values = sums.tolist()  # the one host sync every LOG_EVERY steps
            check_finite(values[:3], epoch, start + 1, step)
            start = step
            bar.set_postfix(loss=f"{values[0] / step:.3f}", acc=f"{100 * values[3] / seen:.1f}")
        progress.after_step(epoch, step, len(loader), sums, seen)  # saves and stops after SIGINT/SIGTERM
    total, anchor, tuplet, correct = sums.tolist()
    n = len(loader)
    return {"train/CAC_Loss": total / n, "train/anchor_Loss": anchor / n, "train/tuplet_Loss": tuplet / n,
            "train/accuracy": 100.0 * correct / seen}


@torch.no_grad()
def validate(net, loader, criterion, device):
    net.eval()
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # total, anchor, correct
    seen = 0
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        _, distances = net(images)
        total, anchor, _ = criterion(distances, targets)
        sums += torch.stack([total, anchor, (distances.argmin(1) == targets).sum().double()])
        seen += len(targets)
    total, anchor, correct = sums.tolist()
    n = len(loader)
    return {"val/accuracy": 100.0 * correct / seen, "val/anchorLoss": anchor / n, "val/CACLoss": total / n}


def main(argv=None):
    args = parse_args(argv)
    run = TrainingRun(args, method="CAC", phase_key="openset_training")
    kwargs = run.network_kwargs()
    net = openSetClassifier(**kwargs, init_weights=not args.resume).to(run.device)
    net.set_anchors(torch.diag(torch.full((kwargs["num_classes"],), float(args.alpha))))
    start_epoch = run.start_epoch(net, "CACclassifierAnchorLoss", "train_cacOpenset.py")
    optimizer = run.optimizer(net)
    criterion = CACLoss(args.lbda)
    best = {"anchor": float("inf"), "cac": float("inf"), "acc": 0.0}
    progress = Progress(run, net, optimizer, best, run.generators(), "CACclassifierLast")
    epochs = progress.epochs(run.epochs(start_epoch))  # --continue: the interrupted run's remaining epochs
    run.save_config()
    with progress.stop_signals():  # SIGINT/SIGTERM: finish the step, save ...Last.pth, exit
        for epoch in epochs:
            stats = train_epoch(net, run.train_loader, criterion, optimizer, run.device, epoch, progress)
            stats.update(validate(net, run.val_loader, criterion, run.device))
            acc = stats["val/accuracy"]
            state = None
            for key, value, better, suffix in (
                    ("anchor", stats["val/anchorLoss"], lambda v, b: v <= b, "CACclassifierAnchorLoss"),
                    ("cac", stats["val/CACLoss"], lambda v, b: v <= b, "CACclassifierCACLoss"),
                    ("acc", acc, lambda v, b: v >= b, "CACclassifierAccuracy")):
                if better(value, best[key]):
                    best[key] = value
                    state = state or run.checkpoint(net, acc, epoch)
                    run.save(state, suffix)
            run.log(epoch, stats)
            progress.end_epoch(epoch)
    run.close()
    print(f"best validation: accuracy {best['acc']:.2f}%, anchor loss {best['anchor']:.4f}, "
          f"CAC loss {best['cac']:.4f}; checkpoints in {run.weights('CACclassifierAnchorLoss')}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
