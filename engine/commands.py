"""The commands that fix-it lines print, complete with every data flag the run needs, so that
they run as printed: training and evaluation commands for a data set, trial and name, with
--data_root, --split_file, --im_size and --im_channels where the run used other than the
defaults (read from the arguments given now, or from a checkpoint's saved training args)."""
import shlex

DEFAULT_DATA_ROOT = "datasets/data"  # engine.cli.runtime_parser's default
DATA_FLAGS = ("data_root", "split_file", "im_size", "im_channels")


def data_flags(args):
    """['--data_root', X, ...] for each data flag of `args` (a dict or Namespace) set to other
    than its default."""
    values = args if isinstance(args, dict) else vars(args)
    flags = []
    for key in DATA_FLAGS:
        value = values.get(key)
        if value is None or (key == "data_root" and value == DEFAULT_DATA_ROOT):
            continue
        flags += [f"--{key}", str(value)]
    return flags


def command(script, *parts):
    """`python script part...`, each part quoted for a POSIX shell where it needs it."""
    return " ".join(["python", script, *(shlex.quote(str(p)) for p in parts)])


def train_command(script, dataset, trial, name, args):
    """The command that trains `dataset` trial `trial` under `name` on the data `args` name."""
    return command(script, "--dataset", dataset, "--trial", trial, "--name", name, *data_flags(args))


def eval_command(script, dataset, start, name, args, num=None):
    """The command that evaluates `dataset` under `name` from trial `start` (`num` trials; None:
    those trained)."""
    count = [] if num is None else ["--num_trials", num]
    return command(script, "-dataset", dataset, "--start_trial", start, *count, "--name", name, *data_flags(args))
