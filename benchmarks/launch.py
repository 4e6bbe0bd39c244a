"""How benchmarks/reproduce.py runs its cells (--launcher): `local`, one after another in this
process (the default, as before); `pool`, submitit's local executor: --jobs cells at once on this
machine, each job with its share of the CPU threads and --gpus_per_job GPUs of its own; `slurm`,
submitit's Slurm executor: one job per cell, requeued after a time-out or preemption (and then
continued); `debug`, submitit's in-process executor (tests, debugging).

A job runs benchmarks/cells.CellJob and hands back its cell's record to this process, the
table's only writer (benchmarks/sweep.py). Files under <out>_jobs/: each cell's script output
(<dataset>_<trial>_<method>.log), and submitit's own files of each launch (submitit/<launch>/).
Here: the launcher flags and their checks, and the data fetched once before jobs run at once;
the executors and what they get are in benchmarks/sweep.py.
"""
import os
import shutil

from benchmarks.cells import run_cell, threads_env
from benchmarks.protocol import run
from benchmarks.sweep import TIMEOUT_MIN, Sweep
from core.errors import UserError

LAUNCHERS = ("local", "pool", "slurm", "debug")
SLURM_ONLY = ("slurm_partition", "timeout_min", "slurm_args")


def add_arguments(parser):
    g = parser.add_argument_group("launcher (benchmarks/launch.py)")
    g.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: the cells one after another in this process (default); pool: --jobs cells at once "
                        "on this machine; slurm: one Slurm job per cell; debug: in this process, through submitit")
    g.add_argument("--jobs", type=int, default=None,
                   help="cells at once (pool: required, e.g. the GPU count; slurm: default all of them)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads of every script (pool default: CPU cores / --jobs; slurm default: the "
                        "job's cpus_per_task; local default: unchanged)")
    g.add_argument("--gpus_per_job", type=int, default=None,
                   help="GPUs of each pool or Slurm job (default: 1, or 0 with --device cpu)")
    g.add_argument("--slurm_partition", default=None, help="Slurm partition (default: the cluster's)")
    g.add_argument("--timeout_min", type=int, default=None,
                   help=f"Slurm time limit of each job in minutes (default: {TIMEOUT_MIN}); a job that reaches it "
                        f"saves, is requeued and continues")
    g.add_argument("--slurm_args", nargs="+", default=None, metavar="KEY=VALUE",
                   help="more sbatch options, e.g. account=lab qos=high cpus_per_task=8 mem=32G")


def check_arguments(args):
    """One UserError line for launcher flags that do not fit, before anything is written; fills in
    the defaults (gpus_per_job, the Slurm options as a dict)."""
    kind = args.launcher
    given = [f"--{flag}" for flag in SLURM_ONLY if getattr(args, flag) is not None]
    if given and kind != "slurm":
        raise UserError(f"{', '.join(given)}: options of --launcher slurm; add it, or leave them out")
    for flag, low in (("jobs", 1), ("threads", 1), ("gpus_per_job", 0), ("timeout_min", 1)):
        if getattr(args, flag) is not None and getattr(args, flag) < low:
            raise UserError(f"--{flag} {getattr(args, flag)}: give {low} or more")
    if kind == "local" and args.jobs is not None:
        raise UserError(f"--jobs {args.jobs} runs cells at once: add --launcher pool (this machine) "
                        f"or --launcher slurm (a cluster)")
    if kind == "pool" and args.jobs is None:
        raise UserError("--launcher pool needs --jobs N, the cells to run at once (on a GPU machine: its GPU count)")
    args.slurm_options = {}
    for item in args.slurm_args or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip("-") or not value:
            raise UserError(f"--slurm_args {item!r}: give KEY=VALUE pairs, as sbatch's --KEY=VALUE "
                            f"(e.g. account=lab cpus_per_task=8)")
        args.slurm_options[key.strip("-")] = value
    if kind == "slurm":
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise UserError(f"--launcher slurm needs Slurm, and {' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} not on PATH here: run the "
                            f"command on the cluster's login node, or use --launcher pool --jobs N on this machine")
    if kind != "local":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError(f"--launcher {kind} runs cells through submitit, which is not installed: "
                            f"pip install submitit (it is in requirements.txt)") from None
    if args.gpus_per_job is None:
        args.gpus_per_job = 0 if args.device == "cpu" else 1
    if kind == "pool":
        args.pool_gpus = pool_gpus(args.jobs, args.gpus_per_job, os.environ.get("CUDA_VISIBLE_DEVICES"))


def pool_gpus(jobs, per_job, visible):
    """The GPU ids of each pool slot: ids 0.., or those CUDA_VISIBLE_DEVICES (`visible`) lists."""
    if visible is None:
        ids = list(range(jobs * per_job))
    else:
        try:
            ids = [int(v) for v in visible.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"CUDA_VISIBLE_DEVICES={visible}: the pool hands out GPUs by number; list them "
                            f"by number (e.g. 0,1,2,3)") from None
        if len(ids) < jobs * per_job:
            raise UserError(f"--jobs {jobs} x --gpus_per_job {per_job} need {jobs * per_job} GPUs, and "
                            f"CUDA_VISIBLE_DEVICES lists {len(ids)}: lower --jobs, or --gpus_per_job 0 on CPUs")
    return [tuple(ids[k * per_job:(k + 1) * per_job]) for k in range(jobs)]


def check_inputs(args):
    """What the cells' scripts would refuse, refused here before anything is written: a missing work folder, a
    trial without a class split file, a --name too long for the file system, and (without --download) data files
    that are not there."""
    import argparse

    from benchmarks.protocol import METHODS, check_workdir
    from core.files import check_name_length
    from datasets.config import load_config
    from datasets.names import FOLDER_DATASET, SOURCES
    from datasets.sources import NUM_CLASSES, expected_files, system_fashion_mnist
    from datasets.splits import load_class_split
    from engine.run_files import longest_names

    check_workdir(args.workdir)
    root = os.path.join(args.workdir, args.data_root)
    for ds in args.datasets:
        if ds == FOLDER_DATASET:
            raise UserError(f"--datasets {ds}: reproduce.py runs the paper's data sets; train and evaluate an image "
                            f"folder with the scripts (README, \"Your own images\")")
        known, unknown = SOURCES[ds]
        for trial in args.trials:
            load_class_split(ds, trial, load_config(ds)["num_known_classes"], NUM_CLASSES[known],
                             num_unknown_source_classes=NUM_CLASSES[unknown] if unknown != known else None)
            for method in args.methods:
                run = argparse.Namespace(dataset=ds, trial=trial, name=args.name)
                check_name_length(args.name, [os.path.join(args.workdir, p) for p in longest_names(run, METHODS[method][2])])
        for source, train in dict.fromkeys([] if args.download else [(known, True), (known, False), (unknown, False)]):
            def present(path):  # idx files may be there gzipped, or in Debian's Fashion-MNIST package (sources.py)
                gz = [path + ".gz"] if source in ("MNIST", "FashionMNIST") else []
                gz += [os.path.join(system_fashion_mnist(), os.path.basename(path) + ".gz")] * (source == "FashionMNIST")
                return any(map(os.path.exists, [path, *gz]))

            missing = [p for p in expected_files(source, root, train) if not present(p)]
            if missing:
                raise UserError(f"{source} not found under {root} (expected {missing[0]}, for --datasets {ds}): put "
                                f"the files there, or add --download to reproduce.py to fetch them")


def fetch_data(args):
    """With --download: TinyImageNet set up (its own script; torchvision does not fetch it); for
    jobs running at once, every other source fetched here first, so that no two download it."""
    if not args.download:
        return
    root = os.path.join(args.workdir, args.data_root)
    if "TinyImageNet" in args.datasets:
        with open(args.out + ".log", "a") as log:
            run("scripts/setup_tinyimagenet.py", ["--data_root", root], ".", log)
    if args.launcher in ("pool", "slurm"):
        from datasets.names import SOURCES
        from datasets.sources import open_source

        for source in sorted({s for ds in args.datasets for s in SOURCES.get(ds, ())} - {"TinyImageNet"}):
            for train in (True, False):
                open_source(source, root, train=train, download=True)


def run_cells(args, table, cells, save):
    """Every cell of `cells` that `table` does not record as finished, through args.launcher;
    `save()` writes the table. Ends with one UserError line when cells failed."""
    if args.launcher == "local":
        with open(args.out + ".log", "a") as log:
            for cell in cells:
                run_cell(cell, table["cells"].setdefault(cell.key, {}), save, log, env=threads_env(args.threads))
        return
    Sweep(args, table, save).run(cells)
