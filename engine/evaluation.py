"""What both evaluation scripts share: the loop over trials, metrics of every scorer, the
printed lines and table, the results files, calibration stored in each checkpoint."""
import os
import time

import numpy as np
import torch

from datasets.trial import OpenSetData
from datasets.pipeline import build_loader
from engine.accel import default_channels_last
from engine.calibration import calibration_record, store_calibration
from engine.cli import check_common_args, print_header, resolve_device, seed_everything
from core.errors import UserError
from core.files import FileSet, check_file_writable, ensure_writable
from engine.report import print_table, summarize, write_results, write_scores
from metrics import ACCEPT_RATE, all_metrics
from networks import NetworkConfig, build_network
from networks.checkpoint import load_checkpoint, read_checkpoint
from networks.weights import weights_path
from utils import gather_outputs

RESULTS_DIR = "results"  # relative to the working directory


def check_evaluation_args(args):
    check_common_args(args)
    if args.num_trials < 1:
        raise UserError(f"--num_trials {args.num_trials}: evaluate at least one trial")


def load_trial_network(method, args, data, suffix, train_script, device):
    """Build the network a trial's checkpoint was trained with (its backbone, the data set's
    shape) and load it, in eval mode; a missing file names the command that trains it.
    Returns (network, checkpoint dict, path, NetworkConfig)."""
    path = weights_path(args.dataset, data.trial, args.name, suffix)
    if not os.path.isfile(path):
        name = f" --name {args.name}" if args.name else " --name ''"
        raise UserError(f"checkpoint not found: {path}; train it with `python {train_script} "
                        f"--dataset {args.dataset} --trial {data.trial}{name}` (evaluation's --name "
                        f"defaults to '' for the paper's released weights, training's to myTest)")
    ckpt = read_checkpoint(path, map_location=device)
    cfg = data.cfg
    trained = ckpt.get("network") or {}
    for key, flag in (("im_size", "--im_size"), ("num_channels", "--im_channels")):
        here = cfg["im_size" if key == "im_size" else "im_channels"]
        if key in trained and trained[key] != here:
            raise UserError(f"checkpoint {path} was trained with {key} {trained[key]} but this evaluation "
                            f"uses {here}: pass {flag} {trained[key]}, as in training")
    saved_known = ckpt.get("known_classes")
    if saved_known is not None and sorted(saved_known) != sorted(data.known):
        raise UserError(f"checkpoint {path} was trained on known classes {saved_known} but the split of this "
                        f"evaluation has {list(data.known)}: use the split file training used")
    config = NetworkConfig.for_data(cfg, ckpt.get("backbone", "cnn"))
    net = build_network(config, method).to(device)
    load_checkpoint(path, net, ckpt)
    if default_channels_last(device):
        net = net.to(memory_format=torch.channels_last)
    return net.eval(), ckpt, path, config


def gather_splits(net, data, loader, device):
    """Network outputs and labels on the known test, unknown test and (known) validation images."""
    val = data.val_dataset()
    if len(val) == 0:
        raise UserError(f"{data.name} trial {data.trial} has no validation image to calibrate the open-set "
                        f"threshold on; give each known class at least 2 training images")
    return {part: gather_outputs(net, loader(ds), device) for part, ds in
            (("known", data.known_test_dataset()), ("unknown", data.unknown_test_dataset()), ("val", val))}


def scorer_outputs(scorers, outputs):
    """{scorer: {known_pred, known_score, unknown_pred, unknown_score, val_score}} as numpy arrays."""
    per_part = {part: scorers(out) for part, (out, _) in outputs.items()}
    result = {}
    for name in per_part["known"]:
        (known_pred, known_score), (unknown_pred, unknown_score), (_, val_score) = (
            per_part[part][name] for part in ("known", "unknown", "val"))
        result[name] = {"known_pred": known_pred.numpy(), "known_score": known_score.numpy(),
                        "unknown_pred": unknown_pred.numpy(), "unknown_score": unknown_score.numpy(),
                        "val_score": val_score.numpy()}
    return result


def overflow_error(path, what, trial):
    return UserError(f"checkpoint {path} gives non-finite {what} (NaN or inf) on trial {trial}: its weights "
                     f"overflow and cannot be evaluated; train it again (a lower learning rate) or use another "
                     f"checkpoint")


def check_finite_outputs(record):
    """Scores and logits must be finite before any metric or calibration is computed from them:
    finite weights can still overflow (a NaN score would give NaN metrics and thresholds)."""
    arrays = {"known test logits": record["known_logits"], "unknown test logits": record["unknown_logits"]}
    for scorer, outputs in record["scorers"].items():
        arrays.update({f"{scorer} scores ({key.split('_')[0]} images)": value for key, value in outputs.items()
                       if key.endswith("score")})
    for what, values in arrays.items():
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        bad = int(np.count_nonzero(~np.isfinite(values).all(axis=1)))
        if bad:
            raise overflow_error(record["checkpoint"], f"{what} for {bad} of {len(values)} images", record["trial"])


def result_targets(args, method, stem, trials):
    """Every file this evaluation may write, to check before any work."""
    paths = [stem + ".npz", stem + ".json"]
    if args.plots:
        from plots import planned_plots  # matplotlib is needed only here

        paths += planned_plots(stem, trials, cac=method == "CAC")
    return paths


def write_result_set(result, records, stem, method, args):
    """The .npz, the plots and the JSON, as one set: each written to a temporary beside it,
    then all renamed, the JSON last; any failure (a full disk) leaves the previous set whole
    and is one line naming the file."""
    files = FileSet()
    try:
        result["scores_file"] = stem + ".npz"
        write_scores(records, files.stage(stem + ".npz"))
        if args.plots:
            from plots import draw_evaluation

            result["plots"] = draw_evaluation(records, stem, method, args, files.stage)
        write_results(result, files.stage(stem + ".json"))
        files.commit()
    except OSError as e:
        raise UserError(f"cannot write {files.current} ({e.strerror or e}); the previous results are unchanged: "
                        f"free space or fix the folder's permissions, then evaluate again") from None
    finally:
        files.discard()


def evaluate_trials(args, method, evaluate_trial):
    """Run `evaluate_trial(data, loader_factory, device) -> trial record` for each trial
    (record: scorers -> per-sample outputs (the paper's scorer first), labels, logits,
    anchors, checkpoint path, network arguments); print the original's four lines for the
    paper's scorer, then a table of every metric of every scorer; write results/*.json and
    *.npz and optional plots as one set (checked before any work), and the calibration into
    each checkpoint (a failure there is a warning)."""
    check_evaluation_args(args)
    device = resolve_device(args.device)
    commit = print_header(args, device)
    ensure_writable(RESULTS_DIR)
    trials = list(range(args.start_trial, args.start_trial + args.num_trials))
    stem = os.path.join(RESULTS_DIR, f"{args.dataset}_{args.name}{method}_trials{trials[0]}-{trials[-1]}")
    for path in result_targets(args, method, stem, trials):  # before any work: the final renames must not fail
        check_file_writable(path, "evaluate under another --name", what="results file ")
    records = []
    for trial in trials:
        seed_everything(args.seed)
        data = OpenSetData.from_args(args, trial)
        workers = data.cfg["num_workers"] if args.workers is None else args.workers

        def loader(dataset):
            return build_loader(dataset, data.cfg["batch_size"], False, pipeline=args.pipeline, workers=workers,
                                seed=args.seed, device=device, channels_last=default_channels_last(device))

        start = time.perf_counter()
        record = evaluate_trial(data, loader, device)
        record["seconds"] = time.perf_counter() - start
        record.update(trial=trial, num_known=data.num_known, class_names=data.class_names)
        check_finite_outputs(record)
        record["metrics"] = {name: all_metrics(s["known_pred"], s["known_score"], record["known_labels"],
                                               s["unknown_pred"], s["unknown_score"], s["val_score"],
                                               data.num_known, ACCEPT_RATE)
                             for name, s in record["scorers"].items()}
        paper = next(iter(record["scorers"]))
        thresholds = {name: m["threshold"] for name, m in record["metrics"].items()}
        store_calibration(record["checkpoint"], calibration_record(
            method, data, record["network"], paper, thresholds, ACCEPT_RATE, record.get("anchors"),
            record.get("anchor_key")), record.get("calibration"))
        records.append(record)
    paper = next(iter(records[0]["scorers"]))
    all_accuracy = [r["metrics"][paper]["accuracy"] for r in records]
    all_auroc = [r["metrics"][paper]["auroc"] for r in records]
    mean_acc, mean_auroc = float(np.mean(all_accuracy)), float(np.mean(all_auroc))
    print(f"Raw Top-1 Accuracy: {all_accuracy}")
    print(f"Raw AUROC: {all_auroc}")
    print(f"Average Top-1 Accuracy: {mean_acc}")
    print(f"Average AUROC: {mean_auroc}")
    summary = summarize(records)
    print_table(summary, paper, trials)
    result = {"dataset": args.dataset, "method": method, "name": args.name, "trials": trials,
              "raw_top1_accuracy": all_accuracy, "raw_auroc": all_auroc,
              "average_top1_accuracy": mean_acc, "average_auroc": mean_auroc,
              "args": vars(args), "git": commit, **summary, "paper_scorer": paper, "accept_rate": ACCEPT_RATE,
              "seconds_per_trial": [round(r["seconds"], 3) for r in records]}
    write_result_set(result, records, stem, method, args)
    for path in result.get("plots", []):
        print(f"plot written to {path}")
    print(f"scores written to {result['scores_file']}")
    print(f"results written to {stem}.json")
    return result
