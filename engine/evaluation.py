"""Running an evaluation, for both evaluation scripts (which own the loop over trials):
`Evaluation` checks everything before any work; `TrialRun` is one trial: its data, the
network its checkpoint holds and the calibration kept beside it (engine/calibration.py), the
CAC scorer's setup (anchor means reused from that calibration), then `evaluate_network`'s typed
TrialResult and the calibration written again. The report of all trials is engine/report.py."""
import os
import sys
import time

import numpy as np
import torch

from core.errors import UserError
from core.files import check_file_writable, ensure_writable
from datasets.trial import OpenSetData
from datasets.pipeline import build_loader
from engine.accel import default_channels_last
from engine.calibration import SCORERS, cached_anchor_means, calibration_record, read_calibration, write_calibration
from engine.commands import train_command
from engine.cli import check_common_args, print_header, resolve_device, seed_everything
from engine.trial_choice import chosen_trials, trials_label
from engine.recipe import use_normalization
from engine.report import ScorerOutput, TrialResult, report, result_targets
from metrics import ACCEPT_RATE, all_metrics
from networks.build import build_network
from networks.config import NetworkConfig
from networks.checkpoint import load_checkpoint, read_checkpoint
from networks.weights import CAC, CLOSED_SET, weights_path

RESULTS_DIR = "results"  # relative to the working directory
EVAL_SCRIPTS = {CAC: "eval_cacOpenset.py", CLOSED_SET: "eval_closedSet.py"}


class Evaluation:
    """One run of an evaluation script, checked before any work: its arguments, device, trials
    and results files. Each trial evaluates the `method`'s checkpoint
    <dataset>_<trial>_<name><checkpoint_suffix>.pth, which `train_script` writes, with the
    method's scorers (engine.calibration.SCORERS)."""

    def __init__(self, args, method, checkpoint_suffix, train_script):
        check_common_args(args)
        self.args, self.method, self.scorers = args, method, SCORERS[method]
        self.checkpoint_suffix, self.train_script = checkpoint_suffix, train_script
        self.trials, why = chosen_trials(args, checkpoint_suffix, train_script, EVAL_SCRIPTS[method])
        self.device = resolve_device(args.device)
        self.commit = print_header(args, self.device)
        print(f"evaluating trials {self.trials} of {args.dataset} --name {args.name!r} ({why})", flush=True)
        ensure_writable(RESULTS_DIR)
        self.stem = os.path.join(RESULTS_DIR, f"{args.dataset}_{args.name}{self.method}_trials"
                                              f"{trials_label(self.trials)}")
        for path in result_targets(self.stem, self.trials, self.method, args.plots):
            check_file_writable(path, "evaluate under another --name", what="results file ")  # renames must not fail

    def report(self, results):
        """The four lines, the table and the results files of all trials (engine.report.report)."""
        return report(self, results)


class TrialRun:
    """One trial of an evaluation: its data (seeded first), loaders, and the network of its
    checkpoint in eval mode with the calibration kept beside it (a damaged one: warned, made
    again). The result's `seconds` count from the network's loading."""

    def __init__(self, evaluation, trial):
        args, self.evaluation, self.trial = evaluation.args, evaluation, trial
        seed_everything(args.seed)
        self.data = data = OpenSetData.from_args(args, trial)
        self.workers = data.cfg["num_workers"] if args.workers is None else args.workers
        self.start = time.perf_counter()
        self.net, self.path, self.config, self.digest = load_trial_network(evaluation, data)
        self.calibration, problem = read_calibration(self.path, self.digest, evaluation.method, data.num_known)
        if problem:
            print(f"warning: {problem}; this evaluation makes it again", file=sys.stderr)
        self.anchors = None

    def loader(self, dataset):
        args, device = self.evaluation.args, self.evaluation.device
        return build_loader(dataset, self.data.cfg["batch_size"], False, pipeline=args.pipeline, workers=self.workers,
                            seed=args.seed, device=device, channels_last=default_channels_last(device))

    def place_anchors(self, recompute=False):
        """The CAC scorer's setup: the anchor means of the checkpoint's calibration when made
        from this data (unless `recompute`), else the anchor pass."""
        data = self.data
        means = None if recompute else cached_anchor_means(self.calibration, data)
        if means is not None:
            print(f"trial {data.trial}: anchor means read from the calibration (--recompute_anchors to redo them)")
            self.net.set_anchors(means)
        else:
            start = time.perf_counter()
            means, fallback = anchor_pass(self.net, data, self.loader, self.evaluation.device, self.path)
            if fallback:
                print(f"warning: trial {data.trial}: classes {data.describe_labels(fallback)} have no correctly "
                      f"classified training image; their anchors are the mean of all their images", file=sys.stderr)
            print(f"trial {data.trial}: anchor means computed from {len(data.train_idx)} training images "
                  f"in {time.perf_counter() - start:.2f} s")
        self.anchors = means

    def evaluate(self):
        """Every scorer on the trial's test and validation images and every metric
        (evaluate_network); then the calibration written beside the checkpoint (a failure there
        is a warning). Returns the TrialResult."""
        evaluation, data = self.evaluation, self.data
        anchors = None if self.anchors is None else self.anchors.cpu().numpy()
        result = evaluate_network(self.net, data, self.loader, evaluation.device, evaluation.scorers,
                                  source=self.path, start=self.start, anchors=anchors)
        thresholds = {name: m["threshold"] for name, m in result.metrics.items()}
        write_calibration(self.path, calibration_record(self.digest, evaluation.method, data, self.config.as_dict(),
                                                        evaluation.scorers.paper, thresholds, ACCEPT_RATE, anchors))
        return result


def load_trial_network(evaluation, data):
    """The network of a trial's checkpoint (load_network); a missing file names the command that
    trains it. Returns (network, path, NetworkConfig, SHA-256 of the checkpoint's bytes)."""
    args, device = evaluation.args, evaluation.device
    path = weights_path(args.dataset, data.trial, args.name, evaluation.checkpoint_suffix)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}; train it with "
                        f"`{train_command(evaluation.train_script, vars(args), data.trial)}` (evaluation's "
                        f"--name defaults to '' for the paper's released weights, training's to myTest)")
    ckpt, digest = read_checkpoint(path, map_location=device, with_digest=True)
    net, config = load_network(path, ckpt, data, evaluation.method, device)
    if default_channels_last(device):
        net = net.to(memory_format=torch.channels_last)
    return net, path, config, digest


def load_network(path, ckpt, data, method, device):
    """(network of checkpoint `path`, read as `ckpt`, loaded in eval mode; its NetworkConfig), built
    for `data`, which must have the shape and known classes it was trained on."""
    use_normalization(data, (ckpt.get("args") or {}).get("recipe"))  # as it trained (engine/recipe.py)
    trained = ckpt.get("network") or {}
    for key, flag in (("im_size", "--im_size"), ("num_channels", "--im_channels")):
        here = data.cfg["im_size" if key == "im_size" else "im_channels"]
        if key in trained and trained[key] != here:
            raise UserError(f"checkpoint {path} was trained with {key} {trained[key]} but the data here has "
                            f"{here}: pass {flag} {trained[key]}, as in training")
    saved_known = ckpt.get("known_classes")
    if saved_known is not None and sorted(saved_known) != sorted(data.known):
        raise UserError(f"checkpoint {path} was trained on known classes {saved_known} but the split here has "
                        f"{list(data.known)}: use the split file training used (--split_file)")
    config = NetworkConfig.for_data(data.cfg, ckpt.get("backbone", "cnn"), trained.get("pretrained"))
    net = build_network(config, method).to(device)
    load_checkpoint(path, net, ckpt)
    return net.eval(), config


def anchor_pass(net, data, loader, device, path):
    """CACScorers.setup on `data`'s training split: (means, now `net`'s anchors; fallback classes)."""
    means, fallback = SCORERS[CAC].setup(net, loader(data.anchor_dataset()), data.num_known, device,
                                         with_flipped=data.cfg["anchor_flip"])
    if not bool(torch.isfinite(means).all()):  # before any other line: the means say nothing here
        raise overflow_error(path, "logits on its training images (anchor means)", data.trial)
    return means, fallback


@torch.no_grad()
def gather_outputs(net, loader, device):
    """Run `net` (in eval mode) over `loader`; return (outputs, labels) concatenated on the CPU.

    `outputs` is the logits for a cross-entropy network and (logits, distances) for a CAC network.
    """
    net.eval()
    outputs, labels = [], []
    for images, targets in loader:
        out = net(images.to(device, non_blocking=True))
        outputs.append(tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu())
        labels.append(targets.cpu())  # device-resident batches carry their labels on the device
    labels = torch.cat(labels)
    if outputs and isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs)), labels
    return torch.cat(outputs), labels


def evaluate_network(net, data, loader, device, scorers, source, start, anchors=None):
    """One evaluation trial of a network ready to score (a CAC one with its anchors placed):
    its outputs on the known test, unknown test and (known) validation images of `data`
    (an OpenSetData; `loader(dataset)` makes their loaders), every scorer of `scorers` on
    them, every metric at the threshold accepting ACCEPT_RATE of the validation images.
    `source` names the network in errors (a checkpoint path); `seconds` count from `start`
    (a time.perf_counter()); `anchors` go into the result as they are. Returns a TrialResult."""
    val = data.val_dataset()
    if len(val) == 0:
        raise UserError(f"{data.name} trial {data.trial} has no validation image to calibrate the open-set "
                        f"threshold on; give each known class at least 2 training images")
    known_test, unknown_test = data.known_test_dataset(), data.unknown_test_dataset()
    outputs = {part: gather_outputs(net, loader(ds), device) for part, ds in
               (("known", known_test), ("unknown", unknown_test), ("val", val))}
    per_part = {part: scorers.score(out) for part, (out, _) in outputs.items()}
    scores = {name: ScorerOutput(*(t.numpy() for t in (*per_part["known"][name], *per_part["unknown"][name],
                                                       per_part["val"][name][1])))
              for name in scorers.names}
    logits = {part: (out[0] if isinstance(out, tuple) else out).numpy() for part, (out, _) in outputs.items()}
    result = TrialResult(trial=data.trial, num_known=data.num_known, class_names=data.class_names,
                         known_labels=outputs["known"][1].numpy(), known_logits=logits["known"],
                         unknown_logits=logits["unknown"], scores=scores, metrics={},
                         seconds=time.perf_counter() - start, anchors=anchors,
                         classes=data.trial_classes(known_test, unknown_test))
    check_finite_outputs(result, source)
    result.metrics = {name: all_metrics(s.known_pred, s.known_score, result.known_labels, s.unknown_pred,
                                        s.unknown_score, s.val_score, data.num_known, ACCEPT_RATE)
                      for name, s in scores.items()}
    return result


def overflow_error(path, what, trial):
    return UserError(f"checkpoint {path} gives non-finite {what} (NaN or inf) on trial {trial}: its weights "
                     f"overflow and cannot be evaluated; train it again (a lower learning rate) or use another "
                     f"checkpoint")


def check_finite_outputs(result, source):
    """Scores and logits must be finite before any metric or calibration is computed from them:
    finite weights can still overflow (a NaN score would give NaN metrics and thresholds)."""
    arrays = {"known test logits": result.known_logits, "unknown test logits": result.unknown_logits}
    for scorer, output in result.scores.items():
        arrays.update({f"{scorer} scores ({key.split('_')[0]} images)": value
                       for key, value in output.arrays().items() if key.endswith("score")})
    for what, values in arrays.items():
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        bad = int(np.count_nonzero(~np.isfinite(values).all(axis=1)))
        if bad:
            raise overflow_error(source, f"{what} for {bad} of {len(values)} images", result.trial)
