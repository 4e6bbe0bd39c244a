"""The commands that fix-it lines print, runnable as printed, with every flag of the invocation (`args`:
vars() of the parsed arguments, or a checkpoint's) that decides which run and data it means."""
import shlex

from networks.weights import CAC, CROSS_ENTROPY

TRAIN_SCRIPTS = {CAC: "train_cacOpenset.py", CROSS_ENTROPY: "train_closedSet.py"}  # each method's scripts
EVAL_SCRIPTS = {CAC: "eval_cacOpenset.py", CROSS_ENTROPY: "eval_closedSet.py"}
# flag name -> its default: given only when the invocation's value differs (None: given when set)
DATA_FLAGS = {"data_root": "datasets/data", "split_file": None, "im_size": None, "im_channels": None}
TRAINING_FLAGS = {"backbone": "cnn", "hflip": None, "rotation": None, "crop_scale": None, "batch_size": None}


def command(script, pairs, args, *flags):
    """`python SCRIPT` with the (flag, value) `pairs` and the `flags` ({name: default}) `args` gives, quoted."""
    pairs += [(f"--{key}", args[key]) for given in flags for key, default in given.items()
              if args.get(key) is not None and args[key] != default]
    return " ".join(shlex.quote(str(word)) for word in ["python", script, *(w for pair in pairs for w in pair)])


def train_command(script, args, trial=None):
    trial = args.get("trial", 0) if trial is None else trial
    pairs = [("--dataset", args["dataset"]), ("--trial", trial), ("--name", args.get("name", ""))]
    return command(script, pairs, args, DATA_FLAGS, TRAINING_FLAGS)


def evaluate_command(script, args, trial=None, num=1):
    """The command that evaluates (so calibrates) the run `args` names: `num` trials, or (None) the trained ones."""
    trial = args.get("trial", 0) if trial is None else trial
    count = [] if num is None else [("--num_trials", num)]
    pairs = [("-dataset", args["dataset"]), ("--start_trial", trial), *count, ("--name", args.get("name", ""))]
    return command(script, pairs, args, DATA_FLAGS)
