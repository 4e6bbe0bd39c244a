"""Train the cross-entropy ("closed set") baseline on the known classes of one trial.

    python train_closedSet.py --dataset MNIST --trial 0            # first run
    python train_closedSet.py --dataset MNIST --trial 0 -r         # resumed run, lower lr
    python train_closedSet.py --dataset MNIST --trial 0 --continue # after Ctrl-C (add -r in that phase)

Saves networks/weights/<dataset>/<dataset>_<trial>_<name>closedSetClassifier.pth, the
network of best validation accuracy, and ...closedSetClassifierLast.pth, the state
--continue picks up (engine/state.py, engine/resume.py).
"""
import argparse
import math
import sys

from engine.cli import accel_parser, run_cli, runtime_parser, training_parser
from engine.lazy import no_grad
from networks.weights import CLOSED_SET, CLOSED_SET_BEST


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Closed-set training with cross-entropy (the baseline)",
                                parents=[training_parser(), runtime_parser(), accel_parser()])
    return p.parse_args(argv)


def train_epoch(model, loader, optimizer, accel, epoch, state, smoothing=0.0):
    import torch  # here and below: after parsing, so that --help answers at once
    import torch.nn.functional as F

    model.train()
    sums = state.epoch_sums(2)  # loss, correct
    for step, (images, targets) in state.iterate(loader, epoch, sums):
        images, targets = accel.inputs(images, targets)
        optimizer.zero_grad(set_to_none=True)
        with accel.autocast():
            logits = model(images)
            loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)  # smoothing: --recipe modern
        loss.backward()
        optimizer.step()
        sums += torch.stack([loss.detach().double(), (logits.argmax(1) == targets).sum().double()])
    (loss,), accuracy = state.epoch_means(sums, len(loader))
    return {"train/CE_Loss": loss, "train/accuracy": accuracy}


@no_grad
def validate(net, loader, accel):
    import torch
    import torch.nn.functional as F

    net.eval()
    accel.sync_buffers(net)
    means, counts = [], []  # per batch: loss over this rank's images, its image count
    correct = torch.zeros((), device=accel.device, dtype=torch.float64)
    for images, targets in loader:
        images, targets = accel.inputs(images, targets)
        with accel.autocast():
            logits = net(images)
            means.append(F.cross_entropy(logits, targets).double().view(1))
        counts.append(torch.full((), len(targets), device=accel.device, dtype=torch.float64))
        correct += (logits.argmax(1) == targets).sum()
    loss = accel.batch_means(torch.stack(means), torch.stack(counts)).item()
    correct, seen = accel.sum(torch.stack([correct, sum(counts)])).tolist()
    return {"val/accuracy": 100.0 * correct / seen, "val/CE_Loss": loss}


def main(argv=None):
    args = parse_args(argv)
    from engine.training import TrainingRun

    with TrainingRun(args, method=CLOSED_SET, phase_key="closedset_training") as run:  # holds the run's lock
        train(args, run)


def train(args, run):
    """A first run, a -r run or a --continue of either, in `run` (locked, checked)."""
    from engine.state import TrainState
    from networks.build import build_network

    net = build_network(run.network_config(), CLOSED_SET, init_weights=not args.resume).to(run.device)
    start_epoch = run.start_epoch(net, CLOSED_SET_BEST, "train_closedSet.py")
    net, model = run.accel.prepare(net)  # model: what the training step calls (DDP, compiled)
    optimizer = run.optimizer(net)
    # as the original: -r keeps the loaded checkpoint's accuracy as the one to beat, and the file
    # is replaced only by a strictly better one; a first run always saves its first epoch
    best = float(run.resumed_from.get("acc", -math.inf)) if args.resume else -math.inf
    state = TrainState(run, net, optimizer, run.epochs(start_epoch), best={"acc": best})  # --continue: loads
    run.save_config(keep_log_bytes=state.continued_log_size)
    with state.stop_signals():  # SIGINT/SIGTERM: finish the step, save ...Last.pth, exit
        for epoch in state.epochs:
            stats = train_epoch(model, run.train_loader, optimizer, run.accel, epoch, state,
                                run.recipe.label_smoothing)
            stats.update(validate(net, run.val_loader, run.accel))
            if state.improved("acc", stats["val/accuracy"], ties=False):
                run.save(run.checkpoint(net, stats["val/accuracy"], epoch), CLOSED_SET_BEST)
            run.log(epoch, stats)
            state.end_epoch(epoch)
    run.close()
    if run.is_main:
        print(f"best validation accuracy {state.best['acc']:.2f}%; checkpoint {run.weights(CLOSED_SET_BEST)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
