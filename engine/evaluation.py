"""A checkpoint's network scored on one trial, for both evaluation scripts and predict.py's first calibration:
`Evaluation` chooses the trials and checks everything before any work; `TrialRun` places the CAC anchors,
then computes every scorer and metric (`evaluate`) or the thresholds alone (`calibrate`)."""
import os
import re
import sys
import time

import numpy as np
import torch

from core.errors import UserError
from core.files import PREVIOUS, check_file_writable, check_name_length, ensure_writable
from datasets.pipeline import build_loader
from datasets.trial import OpenSetData
from engine.accel import default_channels_last
from engine.calibration import SCORERS, cached_anchor_means, calibration_record, read_calibration, write_calibration
from engine.cli import check_common_args, print_header, resolve_device, seed_everything, with_trained_shape
from engine.commands import EVAL_SCRIPTS, TRAIN_SCRIPTS, evaluate_command, train_command
from engine.recipe import use_normalization
from engine.report import ScorerOutput, TrialResult, report
from metrics import ACCEPT_RATE, acceptance_threshold, all_metrics
from networks.build import build_network
from networks.checkpoint import load_checkpoint, read_checkpoint
from networks.config import NetworkConfig
from networks.weights import CAC, EVALUATED, weights_path

RESULTS_DIR = "results"  # relative to the working directory
WINDOW = 5  # the original's default --num_trials


class Evaluation:
    """One run of an evaluation script: arguments, device, trials and every results file, checked before any work."""

    def __init__(self, args, method):
        check_common_args(args)
        self.args, self.method, self.scorers = args, method, SCORERS[method]
        self.trials, why = chosen_trials(args, method)
        self.device = resolve_device(args.device)
        self.commit = print_header(args, self.device)
        print(f"evaluating trials {self.trials} of {args.dataset} --name {args.name!r} ({why})", flush=True)
        ensure_writable(RESULTS_DIR)
        self.stem = os.path.join(RESULTS_DIR, f"{args.dataset}_{args.name}{method}_trials{trials_label(self.trials)}")
        targets = [self.stem + ".npz", self.stem + ".json"]
        if args.plots:
            from engine.figures import planned_plots  # matplotlib is needed only here

            targets += planned_plots(self.stem, self.trials, cac=method == CAC)
        check_name_length(args.name, [os.path.join(RESULTS_DIR, PREVIOUS + os.path.basename(p)) for p in targets])
        for path in targets:
            check_file_writable(path, "evaluate under another --name", what="results file ")  # renames must not fail

    def report(self, results):
        """The original's four lines, the table, the results files (engine/report.py)."""
        return report(self, results)

    def trial_run(self, trial):
        """Trial `trial`'s TrialRun, with the calibration beside its checkpoint."""
        args = self.args
        seed_everything(args.seed)
        path = weights_path(args.dataset, trial, args.name, EVALUATED[self.method])
        checkpoint = read_checkpoint(path, map_location=self.device, with_digest=True) if os.path.isfile(path) else None
        data = OpenSetData.from_args(with_trained_shape(args, checkpoint[0], path) if checkpoint else args, trial)
        if checkpoint is None:  # after the data's own checks, as before
            raise UserError(f"checkpoint not found: {path}; train it with "
                            f"`{train_command(TRAIN_SCRIPTS[self.method], vars(args), trial)}` (evaluation's --name "
                            f"defaults to '' for the paper's released weights, training's to myTest)")
        run = TrialRun(args, data, self.method, path, self.device, checkpoint)
        if default_channels_last(self.device):  # faster; predict.py's calibration leaves its network as loaded but
            # gets channels_last images from TrialRun.loader too: its layers keep that layout (the same outputs)
            run.net = run.net.to(memory_format=torch.channels_last)
        run.calibration, problem = read_calibration(path, run.digest, self.method, data.num_known)
        if problem:
            print(f"warning: {problem}; this evaluation makes it again", file=sys.stderr)
        return run


class TrialRun:
    """The network of checkpoint `path` (`checkpoint`: its (dict, SHA-256), as read) for the trial's `data`."""

    def __init__(self, args, data, method, path, device, checkpoint):
        self.args, self.data, self.method, self.path, self.device = args, data, method, path, device
        self.scorers, self.start, self.calibration, self.anchors = SCORERS[method], time.perf_counter(), None, None
        ckpt, self.digest = checkpoint
        self.net, self.config = load_network(path, ckpt, data, method, device)

    def loader(self, dataset):
        args, cfg = self.args, self.data.cfg
        return build_loader(dataset, cfg["batch_size"], False, pipeline=args.pipeline, seed=args.seed,
                            workers=cfg["num_workers"] if args.workers is None else args.workers,
                            device=self.device, channels_last=default_channels_last(self.device))

    def place_anchors(self, recompute=False):
        """The CAC scorer's setup: the calibration's anchor means if made from this data, else computed; says how."""
        data, start = self.data, time.perf_counter()
        means = None if recompute else cached_anchor_means(self.calibration, data)
        if means is not None:
            self.net.set_anchors(means)
            how = "read from the calibration (--recompute_anchors to redo them)"
        else:
            means, fallback = self.scorers.setup(self.net, self.loader(data.anchor_dataset()), data.num_known,
                                                 self.device, with_flipped=data.cfg["anchor_flip"])
            if not bool(torch.isfinite(means).all()):  # before any other line: the means say nothing here
                raise overflow_error(self.path, "logits on its training images (anchor means)", data.trial)
            if fallback:
                print(f"warning: trial {data.trial}: classes {data.describe_labels(fallback)} have no correctly "
                      f"classified training image; their anchors are the mean of all their images", file=sys.stderr)
            how = f"computed from {len(data.train_idx)} training images in {time.perf_counter() - start:.2f} s"
        self.anchors = means.cpu().numpy()
        return how

    def evaluate(self):
        """The TrialResult (evaluate_network), after the original's line; the calibration written beside the checkpoint."""
        kind = "open" if self.method == CAC else "closed"  # each original script's own words
        print(f"==> Evaluating {kind} set network accuracy and AUROC for trial {self.data.trial}..")
        result = evaluate_network(self.net, self.data, self.loader, self.device, self.scorers, self.path,
                                  self.start, self.anchors)
        thresholds = {name: m["threshold"] for name, m in result.metrics.items()}
        write_calibration(self.path, calibration_record(self.digest, self.method, self.data, self.config.as_dict(),
                                                        thresholds, self.anchors))
        return result

    def calibrate(self):
        """The calibration from the validation images alone (no test images: predict.py's first use)."""
        outputs, _ = gather_outputs(self.net, self.loader(self.data.val_dataset()), self.device)
        scores = {name: s.numpy() for name, (_, s) in self.scorers.score(outputs).items()}
        check_finite(self.path, self.data.trial, {f"{name} scores (val images)": s for name, s in scores.items()})
        thresholds = {name: acceptance_threshold(s, ACCEPT_RATE) for name, s in scores.items()}
        return calibration_record(self.digest, self.method, self.data, self.config.as_dict(), thresholds, self.anchors)


def load_network(path, ckpt, data, method, device):
    """(network of checkpoint `path`, read as `ckpt`, in eval mode; its NetworkConfig) for the trial's `data`."""
    use_normalization(data, (ckpt.get("args") or {}).get("recipe"))  # as it trained (engine/recipe.py)
    trained = ckpt.get("network") or {}  # its image shape: the data's already (cli.with_trained_shape)
    saved_known = ckpt.get("known_classes")
    if saved_known is not None and sorted(saved_known) != sorted(data.known):
        raise UserError(f"checkpoint {path} was trained on known classes {saved_known} but the class split here has "
                        f"{list(data.known)}: use the split file training used (--split_file)")
    config = NetworkConfig.for_data(data.cfg, ckpt.get("backbone", "cnn"), trained.get("pretrained"))
    return loaded_network(config, method, path, ckpt, device), config


def loaded_network(config, method, path, ckpt, device):
    """The network `config` describes, holding checkpoint `path`'s weights, in eval mode."""
    net = build_network(config, method).to(device)
    load_checkpoint(path, net, ckpt)
    return net.eval()


@torch.no_grad()
def gather_outputs(net, loader, device):
    """(outputs, labels) of `net` over `loader` on the CPU; outputs: logits, or (logits, distances) for CAC.
    The batches' outputs stay on the device, joined there and copied to the host once (no wait per batch)."""
    net.eval()
    outputs, labels = [], []
    for images, targets in loader:
        out = net(images.to(device, non_blocking=True))
        outputs.append(out if isinstance(out, tuple) else (out,))
        labels.append(targets.to(device, non_blocking=True))  # resident batches carry their labels on the device
    if not outputs:
        raise ValueError("gather_outputs: the loader gave no batch")
    joined = [torch.cat(parts).cpu() for parts in zip(*outputs)]
    return (tuple(joined) if len(joined) > 1 else joined[0]), torch.cat(labels).cpu()


def evaluate_network(net, data, loader, device, scorers, source, start, anchors=None):
    """The TrialResult of a network ready to score: every scorer and metric on the test and validation images."""
    val = data.val_dataset()
    if len(val) == 0:
        raise UserError(f"{data.name} trial {data.trial} has no validation image to calibrate the open-set "
                        f"threshold on; give each known class at least 2 training images")
    known_test, unknown_test = data.known_test_dataset(), data.unknown_test_dataset()
    outputs = {part: gather_outputs(net, loader(ds), device) for part, ds in
               (("known", known_test), ("unknown", unknown_test), ("val", val))}
    scored = {part: scorers.score(out) for part, (out, _) in outputs.items()}
    logits = {part: (out[0] if isinstance(out, tuple) else out).numpy() for part, (out, _) in outputs.items()}
    check_finite(source, data.trial, {"known test logits": logits["known"], "unknown test logits": logits["unknown"],
                                      **{f"{name} scores ({part} images)": scored[part][name][1]
                                         for name in scorers.names for part in scored}})
    scores = {name: ScorerOutput(*(t.numpy() for t in (*scored["known"][name], *scored["unknown"][name],
                                                       scored["val"][name][1]))) for name in scorers.names}
    known_labels = outputs["known"][1].numpy()
    return TrialResult(trial=data.trial, num_known=data.num_known, class_names=data.class_names,
                       known_labels=known_labels, known_logits=logits["known"], unknown_logits=logits["unknown"],
                       scores=scores, seconds=time.perf_counter() - start, anchors=anchors,
                       classes=data.trial_classes(known_test, unknown_test),
                       metrics={name: all_metrics(s.known_pred, s.known_score, known_labels, s.unknown_pred,
                                                  s.unknown_score, s.val_score, data.num_known, ACCEPT_RATE)
                                for name, s in scores.items()})


def overflow_error(path, what, trial):
    return UserError(f"checkpoint {path} gives non-finite {what} (NaN or inf) on trial {trial}: its weights "
                     f"overflow and cannot be evaluated; train it again (a lower learning rate) or use another "
                     f"checkpoint")


def check_finite(path, trial, arrays):
    """Refuse NaN or inf outputs ({what: per-image values}) before any metric: finite weights can overflow."""
    for what, values in arrays.items():
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(values, dtype=np.float64).reshape(len(values), -1)).all(1)))
        if bad:
            raise overflow_error(path, f"{what} for {bad} of {len(values)} images", trial)


def trained_trials(dataset, name, suffix):
    """The trials whose checkpoint <dataset>_<T>_<name><suffix>.pth exists, ascending."""
    folder = os.path.dirname(weights_path(dataset, 0, name, suffix))
    pattern = re.compile(re.escape(f"{dataset}_") + r"(\d+)" + re.escape(f"_{name}{suffix}.pth") + "$")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(m[1]) for m in map(pattern.match, names) if m and os.path.isfile(os.path.join(folder, m[0])))


def chosen_trials(args, method):
    """(trials to evaluate, why): as --num_trials asks, else those of the original's window with a checkpoint."""
    if args.num_trials is not None:
        if args.num_trials < 1:
            raise UserError(f"--num_trials {args.num_trials}: evaluate at least one trial")
        return list(range(args.start_trial, args.start_trial + args.num_trials)), "as --num_trials asks"
    window = range(args.start_trial, args.start_trial + WINDOW)
    found = trained_trials(args.dataset, args.name, EVALUATED[method])
    trials = [t for t in found if t in window]
    if trials:
        return trials, (f"those of trials {window[0]}-{window[-1]} with a checkpoint; --num_trials and "
                        f"--start_trial choose others")
    where = weights_path(args.dataset, args.start_trial, args.name, EVALUATED[method])
    if found:
        raise UserError(f"no checkpoint of trials {window[0]}-{window[-1]} for {args.dataset} --name "
                        f"{args.name!r} (such as {where}); trained trials: {found}: evaluate them with "
                        f"`{evaluate_command(EVAL_SCRIPTS[method], vars(args), found[0], num=None)}`")
    raise UserError(f"no trained checkpoint for {args.dataset} --name {args.name!r} (such as {where}); "
                    f"train one with `{train_command(TRAIN_SCRIPTS[method], vars(args), args.start_trial)}`"
                    f" (evaluation's --name defaults to '' for the paper's released weights)")


def trials_label(trials):
    """The trials in a results file's name: 0-4 when consecutive, else 0_2_3."""
    consecutive = trials == list(range(trials[0], trials[-1] + 1))
    return f"{trials[0]}-{trials[-1]}" if consecutive else "_".join(map(str, trials))
