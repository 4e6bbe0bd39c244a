"""Where a run's .pth files live and what they are called (SPEC section 3):
networks/weights/<dataset>/<dataset>_<trial>_<name><suffix>.pth, relative to the working
directory as in the original. CIFAR+10's files also serve CIFAR+50 (same known classes)."""
import os

WEIGHTS_DIR = os.path.join("networks", "weights")

CAC = "CAC"  # the two methods, as run folders and results files name them
CROSS_ENTROPY = "ClosedSet"  # the cross-entropy baseline: "closedSet"/"ClosedSet" in the original's file names

CAC_ANCHOR_LOSS = "CACclassifierAnchorLoss"  # the CAC checkpoint evaluation uses
CAC_CAC_LOSS = "CACclassifierCACLoss"
CAC_ACCURACY = "CACclassifierAccuracy"
CROSS_ENTROPY_BEST = "closedSetClassifier"

# every file a training run of each method writes, by suffix; the last one, ...Last.pth, the state --continue reads
RUN_FILES = {CAC: (CAC_ANCHOR_LOSS, CAC_CAC_LOSS, CAC_ACCURACY, "CACclassifierLast"),
             CROSS_ENTROPY: (CROSS_ENTROPY_BEST, "closedSetClassifierLast")}
EVALUATED = {CAC: CAC_ANCHOR_LOSS, CROSS_ENTROPY: CROSS_ENTROPY_BEST}  # the file each evaluation reads
LAST = {method: files[-1] for method, files in RUN_FILES.items()}

# a data set whose run also writes its files under another data set's name
COPIES = {"CIFAR+10": ("CIFAR+50",)}


def weights_path(dataset, trial, name, suffix):
    return os.path.join(WEIGHTS_DIR, dataset, f"{dataset}_{trial}_{name}{suffix}.pth")


def calibration_path(checkpoint):
    return os.path.splitext(checkpoint)[0] + ".calibration.json"  # beside X.pth: X.calibration.json


def saved_under(dataset):
    """Every data set name a run on `dataset` saves its checkpoints under (itself first)."""
    return [dataset, *COPIES.get(dataset, ())]


def trained_on(dataset):
    """The data set whose run made the files `dataset` is evaluated from (CIFAR+50: CIFAR+10)."""
    return next((source for source, copies in COPIES.items() if dataset in copies), dataset)


def lock_path(dataset, trial, name, method):
    """A run's lock file, beside its checkpoints (hidden: not a checkpoint)."""
    return os.path.join(WEIGHTS_DIR, dataset, f".{dataset}_{trial}_{name}{method}.lock")
