"""What both evaluation scripts share: arguments, the loop over trials, printing, results JSON."""
import json
import os

import numpy as np
import torch

from datasets.loaders import OpenSetData
from datasets.pipeline import build_loader
from engine.accel import CHANNELS_LAST
from engine.cli import check_common_args, print_header, resolve_device, seed_everything
from engine.errors import UserError
from engine.files import atomic_write, ensure_writable
from engine.training import weights_path
from networks.checkpoint import load_checkpoint, read_checkpoint

RESULTS_DIR = "results"  # relative to the working directory


def check_evaluation_args(args):
    check_common_args(args)
    if args.num_trials < 1:
        raise UserError(f"--num_trials {args.num_trials}: evaluate at least one trial")


def load_trial_network(network_class, args, data, suffix, train_script, device):
    """Build the network a trial's checkpoint was trained with (its backbone, the data set's
    shape) and load it, in eval mode; a missing file names the command that trains it."""
    path = weights_path(args.dataset, data.trial, args.name, suffix)
    if not os.path.isfile(path):
        name = f" --name {args.name}" if args.name else " --name ''"
        raise UserError(f"checkpoint not found: {path}; train it with `python {train_script} "
                        f"--dataset {args.dataset} --trial {data.trial}{name}` (evaluation's --name "
                        f"defaults to '' for the paper's released weights, training's to myTest)")
    ckpt = read_checkpoint(path, map_location=device)
    cfg = data.cfg
    net = network_class(cfg["num_known_classes"], cfg["im_channels"], cfg["im_size"], dropout=cfg["dropout"],
                        backbone=ckpt.get("backbone", "cnn")).to(device)
    load_checkpoint(path, net, ckpt)
    if CHANNELS_LAST[device.type]:
        net = net.to(memory_format=torch.channels_last)
    return net.eval()


def evaluate_trials(args, method, evaluate_trial):
    """Run `evaluate_trial(data, loader_factory, device) -> (accuracy, auroc)` for each
    trial, print the original's four lines, and write them as JSON under results/."""
    check_evaluation_args(args)
    device = resolve_device(args.device)
    commit = print_header(args, device)
    ensure_writable(RESULTS_DIR)
    all_accuracy, all_auroc = [], []
    trials = list(range(args.start_trial, args.start_trial + args.num_trials))
    for trial in trials:
        seed_everything(args.seed)
        data = OpenSetData(args.dataset, trial, args.data_root, download=not args.no_download)
        workers = data.cfg["num_workers"] if args.workers is None else args.workers

        def loader(dataset):
            return build_loader(dataset, data.cfg["batch_size"], False, pipeline=args.pipeline, workers=workers,
                                seed=args.seed, device=device, channels_last=CHANNELS_LAST[device.type])

        accuracy, auroc = evaluate_trial(data, loader, device)
        all_accuracy.append(float(accuracy))
        all_auroc.append(float(auroc))
    mean_acc, mean_auroc = float(np.mean(all_accuracy)), float(np.mean(all_auroc))
    print(f"Raw Top-1 Accuracy: {all_accuracy}")
    print(f"Raw AUROC: {all_auroc}")
    print(f"Average Top-1 Accuracy: {mean_acc}")
    print(f"Average AUROC: {mean_auroc}")
    result = {"dataset": args.dataset, "method": method, "name": args.name, "trials": trials,
              "raw_top1_accuracy": all_accuracy, "raw_auroc": all_auroc,
              "average_top1_accuracy": mean_acc, "average_auroc": mean_auroc,
              "args": vars(args), "git": commit}
    path = os.path.join(RESULTS_DIR, f"{args.dataset}_{args.name}{method}_trials{trials[0]}-{trials[-1]}.json")
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"results written to {path}")
    return result

