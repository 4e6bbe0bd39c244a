"""Train the cross-entropy baseline ("closed set") on the known classes of one trial.

    python train_closedSet.py --dataset MNIST --trial 0            # first run
    python train_closedSet.py --dataset MNIST --trial 0 -r         # second phase, lower lr
    python train_closedSet.py --dataset MNIST --trial 0 --continue # after Ctrl-C (add -r in that phase)

Saves networks/weights/<dataset>/<dataset>_<trial>_<name>closedSetClassifier.pth, the network of best
validation accuracy, and every epoch ...closedSetClassifierLast.pth for --continue."""
import argparse
import math
import sys

from engine.cli import accel_parser, run_cli, runtime_parser, training_parser
from networks.weights import CROSS_ENTROPY, CROSS_ENTROPY_BEST


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Closed-set training with cross-entropy (the baseline)",
                                parents=[training_parser(), runtime_parser(), accel_parser()])
    return p.parse_args(argv)


def train_epoch(model, loader, optimizer, sums, smoothing=0.0):
    """One epoch of SGD; `sums` adds up the losses and correct predictions (on the device)."""
    import torch.nn.functional as F

    model.train()
    for images, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)  # smoothing: --recipe modern
        loss.backward()
        optimizer.step()
        sums.add(loss, predicted=logits.argmax(1), targets=targets)


def validate(net, loader, means):
    """The validation images' cross-entropy and accuracy."""
    import torch.nn.functional as F

    net.eval()
    for images, targets in loader:
        logits = net(images)
        means.add(F.cross_entropy(logits, targets), predicted=logits.argmax(1), targets=targets)


def starting_best(loaded):
    """The validation accuracy to beat: -r keeps the loaded first run's (the original's rule)."""
    return {"acc": float(loaded.get("acc", -math.inf)) if loaded else -math.inf}


def save_best(run, net, stats, epoch):
    """Save `net` when its validation accuracy is strictly better than the best so far (the original's
    >); under --recipe vaze (no validation part) every epoch, so that the last one is evaluated."""
    if run.recipe.whole_train or stats["val/accuracy"] > run.best["acc"]:
        run.best["acc"] = stats["val/accuracy"]
        run.save(run.checkpoint(net, stats["val/accuracy"], epoch), CROSS_ENTROPY_BEST)


def main(argv=None):
    args = parse_args(argv)
    import torch  # after parsing: --help answers at once

    from engine.loop import BatchMeans, TrainSums
    from engine.training import TrainingRun
    from networks.build import build_network

    with TrainingRun(args, CROSS_ENTROPY, argv) as run:  # the run's lock; Ctrl-C says how to continue
        net = build_network(run.network_config(), CROSS_ENTROPY, init_weights=not args.resume).to(run.device)
        loaded = run.load_first_run(net)  # -r: the first run's best checkpoint
        model, optimizer = run.prepare(net, starting_best(loaded))  # --continue: the interrupted run's state
        for epoch in run.epoch_loop():
            sums, means = TrainSums(run.accel, 1), BatchMeans(run.accel)
            train_epoch(model, run.batches(epoch, sums), optimizer, sums, run.recipe.label_smoothing)
            with torch.no_grad():
                validate(run.evaluator, run.validation_batches(), means)
            (loss,), accuracy = sums.means(epoch)
            (val_loss,), val_accuracy = means.means()
            stats = {"train/CE_Loss": loss, "train/accuracy": accuracy, "val/accuracy": val_accuracy,
                     "val/CE_Loss": val_loss}
            save_best(run, run.net, stats, epoch)
            run.end_epoch(epoch, stats)  # the log line, ...Last.pth
    if run.is_main:
        print(f"best validation accuracy {run.best['acc']:.2f}%; checkpoint {run.weights(CROSS_ENTROPY_BEST)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
