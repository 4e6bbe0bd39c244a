"""Which trials an evaluation evaluates: with --num_trials those asked (the original's); without, those
of --start_trial and the 4 after it that have a checkpoint, else one line saying what to do."""
import os
import re

from core.errors import UserError
from engine.commands import EVAL_SCRIPTS, TRAIN_SCRIPTS, evaluate_command, train_command
from networks.weights import EVALUATED, weights_path

WINDOW = 5  # the original's default --num_trials


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
    """(trials to evaluate, why: a phrase for the line that names them)."""
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
