"""The commands that fix-it lines print: each one runs as printed, with every flag of the
current invocation that decides which run and which data it means (data set, trial, name,
data root, split file, image shape, backbone, the augmentation and schedule overrides).

    train_command("train_cacOpenset.py", vars(args), trial=0)
    -> "python train_cacOpenset.py --dataset ImageFolder --trial 0 --name mine --data_root ../pets ..."

`args` is a mapping (vars() of a parsed Namespace, or the `args` dict a checkpoint records):
keys absent or at their default are left out, so a line stays as short as the situation allows.
"""
import shlex

DEFAULT_DATA_ROOT = "datasets/data"
# flag name -> its default: given only when the invocation's value differs (None: given when set)
DATA_FLAGS = {"data_root": DEFAULT_DATA_ROOT, "split_file": None, "im_size": None, "im_channels": None}
TRAINING_FLAGS = {"backbone": "cnn", "hflip": None, "rotation": None, "crop_scale": None, "batch_size": None}


def command(script, pairs):
    """`python SCRIPT --flag value ...` with every value quoted for the shell; `pairs` is a list of
    (flag, value) in order."""
    words = ["python", script]
    for flag, value in pairs:
        words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _given(args, flags):
    return [(f"--{key}", args[key]) for key, default in flags.items()
            if args.get(key) is not None and args[key] != default]


def train_command(script, args, trial=None):
    """The command that trains the run `args` names (trial `trial`, default args['trial']) with
    `script` (train_cacOpenset.py or train_closedSet.py)."""
    trial = args.get("trial", 0) if trial is None else trial
    pairs = [("--dataset", args["dataset"]), ("--trial", trial), ("--name", args.get("name", ""))]
    return command(script, pairs + _given(args, DATA_FLAGS) + _given(args, TRAINING_FLAGS))


def evaluate_command(script, args, trial=None, num=1):
    """The command that evaluates (and so calibrates) the run `args` names with `script`
    (eval_cacOpenset.py or eval_closedSet.py) from trial `trial` (default args['trial']): `num`
    trials, or (None) those that were trained; `args` may be a training run's."""
    trial = args.get("trial", 0) if trial is None else trial
    count = [] if num is None else [("--num_trials", num)]
    pairs = [("-dataset", args["dataset"]), ("--start_trial", trial), *count, ("--name", args.get("name", ""))]
    return command(script, pairs + _given(args, DATA_FLAGS))
