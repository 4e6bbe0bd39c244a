"""benchmarks/launch.py, sweep.py and cells.py without training: submitit's debug executor runs
the cells in this process (the scripts replaced by a fake that writes results files), the table
records each cell from its job, a failed cell is named with its log while the others go on; the
Slurm job description is what submitit would submit to a fake `sbatch` (Slurm itself cannot run
here): the command, resources, USR2 before the limit, --requeue, and a job whose checkpoint
requeues the same cell; the launcher flags' one-line refusals."""
import json
import os
import stat

import pytest

import benchmarks.cells as cells_module
from benchmarks import launch
from benchmarks.cells import Cell, CellJob
from benchmarks.protocol import REPO, write_table
from benchmarks.reproduce import parse_args, plan
from benchmarks.sweep import MAX_REQUEUES
from core.errors import UserError

submitit = pytest.importorskip("submitit")


def fake_scripts(monkeypatch, fail=()):
    """The scripts as a fake: training returns at once, evaluation writes a results file whose
    AUROC encodes the trial; a cell of `fail` fails in its -r phase with one line."""
    calls = []

    def fake_run(script, argv, workdir, log=None, **popen):
        argv = [str(a) for a in argv]
        trial = int(argv[argv.index("--trial" if "--trial" in argv else "--start_trial") + 1])
        calls.append((script, trial, "-r" in argv))
        if log is not None:
            log.write(f"$ {script} {' '.join(argv)}\n")
        if "-r" in argv and trial in fail:
            if log is not None:
                log.write(f"error: trial {trial} broke\n")
            raise UserError(f"{script} failed (exit 2): trial {trial} broke")
        if script.startswith("eval"):
            name = argv[argv.index("--name") + 1]
            metrics = {s: {m: [0.5 + trial / 100] for m in ("accuracy", "auroc", "oscr")}
                       for s in ("max_softmax", "max_logit")}
            os.makedirs(os.path.join(workdir, "results"), exist_ok=True)
            with open(os.path.join(workdir, "results", f"Digits_{name}ClosedSet_trials{trial}-{trial}.json"), "w") as f:
                json.dump({"scorers": list(metrics), "metrics": metrics, "raw_top1_accuracy": [0.5],
                           "raw_auroc": [0.5], "dataset": "Digits", "method": "CE", "trials": [trial]}, f)
        return 1.0, ""

    monkeypatch.setattr(cells_module, "run", fake_run)
    return calls


def sweep_args(tmp_path, *extra):
    return parse_args(["--datasets", "Digits", "--trials", "0-2", "--methods", "ce", "--epochs", "1", "1",
                       "--workdir", str(tmp_path), "--out", str(tmp_path / "tbl"), *map(str, extra)])


def new_table(args):
    return {"cells": {}, "datasets": args.datasets, "trials": args.trials, "methods": args.methods, "recipe": "paper",
            "budget": 1.0, "epochs": {"Digits": [1, 1]}, "planned": 3, "machine": "m", "git": "g", "command": "c"}


def test_debug_executor_records_each_cell_and_names_a_failed_one(tmp_path, monkeypatch):
    calls = fake_scripts(monkeypatch, fail=(1,))
    args = sweep_args(tmp_path, "--launcher", "debug")
    table = new_table(args)
    with pytest.raises(UserError) as e:
        launch.run_cells(args, table, plan(args), lambda: write_table(table, args.out))
    log = os.path.join(str(tmp_path / "tbl_jobs"), "Digits_1_CE.log")
    assert str(e.value).startswith("1 of 3 cells failed: Digits/1/CE (log ") and log in str(e.value)
    assert "\n" not in str(e.value) and "trial 1 broke" in open(log).read()
    saved = json.loads((tmp_path / "tbl.json").read_text())
    assert saved["done"] == 2 and set(saved["jobs"]) == {"Digits/0/CE", "Digits/1/CE", "Digits/2/CE"}
    assert saved["cells"]["Digits/1/CE"] == {"phase0": {"epochs": 1, "train_s": 1.0}}  # what it finished is kept
    for trial in (0, 2):
        assert saved["summary"]["Digits"]["CE"]["max_logit"]["auroc"]["n"] == 2
        assert saved["cells"][f"Digits/{trial}/CE"]["result"]["max_logit"]["auroc"] == 0.5 + trial / 100
    assert calls.count(("train_closedSet.py", 2, True)) == 1  # the cell after the failed one ran
    # the same command again: only the failed cell runs, from its -r phase
    calls = fake_scripts(monkeypatch)
    table = json.loads((tmp_path / "tbl.json").read_text())
    launch.run_cells(args, table, plan(args), lambda: write_table(table, args.out))
    assert calls == [("train_closedSet.py", 1, True), ("eval_closedSet.py", 1, False)] and table["done"] == 3


def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", 'echo "Submitted batch job 4242"'), ("srun", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_job_description_is_what_submitit_submits(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch)
    args = sweep_args(tmp_path, "--launcher", "slurm", "--slurm_partition", "gpu", "--timeout_min", "90",
                      "--slurm_args", "account=lab", "cpus_per_task=8")
    from benchmarks.sweep import Sweep

    table = new_table(args)
    sweep = Sweep(args, table, lambda: write_table(table, args.out))
    cell = plan(args)[1]
    sweep.free = [0]
    sweep.start(cell, 0)
    job = sweep.running[cell.key][0]
    script = job.paths.submission_file.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "#SBATCH --nodes=1",
                 "#SBATCH --signal=USR2@180", "#SBATCH --requeue", "#SBATCH --account=lab", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --job-name=cac_Digits_1_CE", f"export PYTHONPATH={REPO}"):
        assert line in script, line
    command = script.strip().splitlines()[-1]
    assert command.startswith("srun --unbuffered") and "-u -m submitit.core._submit" in command
    assert str(job.paths.folder) in command
    saved = json.loads((tmp_path / "tbl.json").read_text())
    assert saved["jobs"][cell.key] == {"launcher": "slurm", "job_id": "4242", "folder": str(sweep.executor.folder)}
    # the pickled job: this cell's CellJob; on USR2 its checkpoint asks submitit to requeue the same
    delayed = submitit.core.utils.DelayedSubmission.load(job.paths.submitted_pickle)
    assert isinstance(delayed.function, CellJob) and delayed.function.cell == cell
    assert delayed._timeout_countdown == MAX_REQUEUES
    again = delayed.function.checkpoint()
    assert isinstance(again, submitit.core.utils.DelayedSubmission) and again.function is delayed.function


def test_launcher_flags_refuse_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    for extra, fragment in ((["--launcher", "slurm"], "--launcher slurm needs Slurm, and sbatch and srun are not on PATH"),
                            (["--launcher", "pool"], "--launcher pool needs --jobs N"),
                            (["--jobs", "2"], "add --launcher pool"),
                            (["--slurm_partition", "gpu"], "--slurm_partition: options of --launcher slurm"),
                            (["--launcher", "pool", "--jobs", "0"], "--jobs 0: give 1 or more"),
                            (["--launcher", "slurm", "--slurm_args", "account"], "give KEY=VALUE pairs"),
                            (["--recipe", "vaze"], "give 1 epoch count, one per training phase")):
        with pytest.raises(UserError, match=None) as e:
            sweep_args(tmp_path, *extra)
        assert fragment in str(e.value) and "\n" not in str(e.value), (extra, str(e.value))


def test_pool_slots_gpus_and_threads(monkeypatch):
    assert launch.pool_gpus(2, 1, None) == [(0,), (1,)]
    assert launch.pool_gpus(2, 2, "3,5,6,7") == [(3, 5), (6, 7)]
    assert launch.pool_gpus(3, 0, "") == [(), (), ()]
    with pytest.raises(UserError, match="need 4 GPUs, and CUDA_VISIBLE_DEVICES lists 2"):
        launch.pool_gpus(2, 2, "0,1")
    env = launch.threads_env(3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3" and launch.threads_env(None) is None


def test_a_job_waits_for_an_earlier_job_of_its_cell(tmp_path, monkeypatch):
    """The cell's lock: a second CellJob of the same cell starts only once the first let go."""
    import fcntl
    import threading

    fake_scripts(monkeypatch)
    cell = Cell("Digits", 0, "CE", (1, 1), "n", "paper", str(tmp_path), ("--name", "n"))
    job = CellJob(cell, {}, str(tmp_path / "jobs"))
    os.makedirs(job.folder)
    held = open(job.path(".lock"), "a")
    fcntl.flock(held.fileno(), fcntl.LOCK_EX)
    out = {}
    worker = threading.Thread(target=lambda: out.update(job()))
    worker.start()
    worker.join(1.0)
    assert worker.is_alive() and not out  # waiting
    held.close()
    worker.join(30)
    assert "result" in out["cell"] and "error" not in out


def test_download_sets_up_tinyimagenet_and_fetches_once_before_parallel_jobs(tmp_path, monkeypatch):
    """--download: TinyImageNet's own setup script first (torchvision does not fetch it); with jobs
    at once, each other source's two splits fetched here, once; without --download, nothing."""
    import datasets.sources

    ran, opened = [], []
    monkeypatch.setattr(launch, "run", lambda script, argv, workdir, log=None, **kw: ran.append((script, argv)))
    monkeypatch.setattr(datasets.sources, "open_source", lambda source, root, train, download: opened.append(
        (source, root, train, download)))
    fake_slurm(tmp_path, monkeypatch)
    root = os.path.join(str(tmp_path), "datasets/data")
    for extra, want_ran, want_opened in (
            ([], [], []),
            (["--download"], [("scripts/setup_tinyimagenet.py", ["--data_root", root])], []),
            (["--download", "--launcher", "slurm"], [("scripts/setup_tinyimagenet.py", ["--data_root", root])],
             [(s, root, t, True) for s in ("CIFAR10", "CIFAR100") for t in (True, False)])):
        ran.clear(), opened.clear()
        args = parse_args(["--datasets", "TinyImageNet", "CIFAR+10", "CIFAR+50", "--workdir", str(tmp_path),
                           "--out", str(tmp_path / "tbl"), *extra])
        launch.fetch_data(args)
        assert (ran, opened) == (want_ran, want_opened), extra


def test_the_readmes_protocol_commands_parse_and_download(tmp_path, monkeypatch):
    """The README's commands for the whole table: every paper data set, --download (so they run as
    printed where there is internet), and the pool and Slurm variants parse as they stand."""
    import shlex

    fake_slurm(tmp_path, monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    text = open(os.path.join(REPO, "README.md")).read()
    lines = [line for line in text.splitlines() if line.startswith("python benchmarks/reproduce.py --datasets MNIST")]
    assert len(lines) == 3
    for line in lines:
        argv = shlex.split(line)[2:]
        args = parse_args(argv)
        assert args.datasets == ["MNIST", "SVHN", "CIFAR10", "CIFAR+10", "CIFAR+50", "TinyImageNet"]
        assert args.download and args.trials == [0, 1, 2, 3, 4] and args.methods == ["CAC", "CE"]
    assert [parse_args(shlex.split(line)[2:]).launcher for line in lines] == ["local", "pool", "slurm"]


def test_a_rerun_follows_slurm_jobs_instead_of_submitting_them_again(tmp_path, monkeypatch):
    """The table records each cell's job: on the same command again, a job Slurm still runs is
    followed (not submitted twice), one that ended is recorded from its result."""
    from submitit.core.utils import cloudpickle_dump

    from benchmarks.sweep import Sweep

    fake_slurm(tmp_path, monkeypatch)
    (tmp_path / "bin" / "sacct").write_text('#!/bin/sh\necho "JobID|State|NodeList"\necho "4243|RUNNING|node1"\n')
    (tmp_path / "bin" / "sacct").chmod(stat.S_IRWXU)
    args = sweep_args(tmp_path, "--launcher", "slurm")
    folder = tmp_path / "tbl_jobs" / "submitit" / "earlier"
    folder.mkdir(parents=True)
    finished = {"phase0": {"epochs": 1, "train_s": 3.0}, "phase1": {"epochs": 1, "train_s": 2.0}, "eval_s": 1.0,
                "result": {"max_logit": {"auroc": 0.7, "accuracy": 0.8, "oscr": 0.6}}}
    cloudpickle_dump(("success", {"cell": finished}), folder / "4242_0_result.pkl")
    table = new_table(args)
    table["jobs"] = {f"Digits/{t}/CE": {"launcher": "slurm", "job_id": str(4242 + t), "folder": str(folder)}
                     for t in (0, 1)}
    sweep = Sweep(args, table, lambda: None)
    zero, one, two = plan(args)
    assert sweep.follow(zero) and table["cells"]["Digits/0/CE"] == finished and zero.key not in sweep.running
    assert sweep.follow(one) and one.key in sweep.running and "Digits/1/CE" not in table["cells"]
    assert not sweep.follow(two)  # no job yet: a new one is submitted
