"""The commands that fix-it lines print, each runnable as printed: `python SCRIPT --flag value ...`
with every flag of the invocation (`args`: vars() of the parsed arguments, or the args a checkpoint
records) that decides which run and which data it means; flags absent or at their default are
left out, so that a line stays as short as the situation allows."""
import shlex

from networks.weights import CAC, CROSS_ENTROPY

TRAIN_SCRIPTS = {CAC: "train_cacOpenset.py", CROSS_ENTROPY: "train_closedSet.py"}  # each method's scripts
EVAL_SCRIPTS = {CAC: "eval_cacOpenset.py", CROSS_ENTROPY: "eval_closedSet.py"}
DEFAULT_DATA_ROOT = "datasets/data"
# flag name -> its default: given only when the invocation's value differs (None: given when set)
DATA_FLAGS = {"data_root": DEFAULT_DATA_ROOT, "split_file": None, "im_size": None, "im_channels": None}
TRAINING_FLAGS = {"backbone": "cnn", "hflip": None, "rotation": None, "crop_scale": None, "batch_size": None}


def command(script, pairs, args, *flags):
    """`python SCRIPT` with the (flag, value) `pairs` and the `flags` ({name: default}) `args` gives,
    every word quoted for the shell."""
    pairs += [(f"--{key}", args[key]) for given in flags for key, default in given.items()
              if args.get(key) is not None and args[key] != default]
    return " ".join(shlex.quote(str(word)) for word in ["python", script, *(w for pair in pairs for w in pair)])


def train_command(script, args, trial=None):
    """The command that trains the run `args` names (trial `trial`, default args['trial']) with
    `script` (train_cacOpenset.py or train_closedSet.py)."""
    trial = args.get("trial", 0) if trial is None else trial
    pairs = [("--dataset", args["dataset"]), ("--trial", trial), ("--name", args.get("name", ""))]
    return command(script, pairs, args, DATA_FLAGS, TRAINING_FLAGS)


def evaluate_command(script, args, trial=None, num=1):
    """The command that evaluates (and so calibrates) the run `args` names with `script`
    (eval_cacOpenset.py or eval_closedSet.py) from trial `trial` (default args['trial']): `num`
    trials, or (None) those that were trained; `args` may be a training run's."""
    trial = args.get("trial", 0) if trial is None else trial
    count = [] if num is None else [("--num_trials", num)]
    pairs = [("-dataset", args["dataset"]), ("--start_trial", trial), *count, ("--name", args.get("name", ""))]
    return command(script, pairs, args, DATA_FLAGS)
