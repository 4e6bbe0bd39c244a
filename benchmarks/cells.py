"""One cell of benchmarks/reproduce.py (a data set, trial and method): its training phases (the
first run, then -r at the lower learning rate; one run under --recipe vaze) and its evaluation,
run as a user runs the scripts, each skipped when the cell's record says it is done. The
sequential loop calls run_cell; a submitit job (benchmarks/launch.py) runs a CellJob, which
hands the record back to the parent, the only writer of the table.

A job holds its cell's lock file while it runs, and passes it to the script it runs, so a
second job of the same cell (a rerun while an old job or its script is still ending) waits.
Stopping: in the local pool, SIGTERM (the parent stops its jobs) or the parent's death (checked
every WATCH_S seconds) stops the running script with one SIGINT: it saves its state and ends;
on Slurm, the USR2 that submitit asks for before the time limit or on preemption calls
`checkpoint`, which does the same, and submitit requeues the job: its next start continues the
phase (--continue) from the saved state.
"""
import dataclasses
import fcntl
import os
import signal
import threading
import time

from benchmarks.protocol import (METHODS, Stopped, phase_state, raise_stopped, read_scorers, results_file, run,
                                 stop_running)
from core.errors import UserError

WATCH_S = 2.0


@dataclasses.dataclass(frozen=True)
class Cell:
    """What a cell's scripts need: the cell, its epochs per phase, and the flags of the sweep
    (`common`: seed, data root, name, workers, download, device, as every script gets them)."""

    dataset: str
    trial: int
    method: str
    epochs: tuple
    name: str
    recipe: str
    workdir: str
    common: tuple
    amp: bool = False

    @property
    def key(self):
        return f"{self.dataset}/{self.trial}/{self.method}"

    @property
    def label(self):
        return f"{self.dataset}_{self.trial}_{self.method}"


def run_cell(cell, record, save, log, **popen):
    """Both phases (or the one) and the evaluation of `cell`, each skipped when `record` (the
    table's dict of the cell, updated in place) has it; `save()` after each. A phase `record`
    lacks is judged by the cell's ...Last.pth: done (recorded, skipped), stopped (--continue) or
    not started (--overwrite). `popen`: passed to protocol.run (env, pass_fds, ignore)."""
    train_script, eval_script, tag, _ = METHODS[cell.method]
    for phase, epochs in enumerate(cell.epochs):
        key = f"phase{phase}"
        if key in record:
            continue
        state = phase_state(cell.workdir, cell.dataset, cell.trial, cell.name, cell.method, phase)
        if state != "done":
            argv = ["--dataset", cell.dataset, "--trial", cell.trial, *cell.common, "--recipe", cell.recipe,
                    "--epochs", epochs, *(["-r"] if phase else []),
                    "--continue" if state == "stopped" else "--overwrite", *(["--amp"] if cell.amp else [])]
            print(f"{cell.dataset} trial {cell.trial} {cell.method}: phase {phase} ({epochs} epochs"
                  f"{', continued' if state == 'stopped' else ''})", flush=True)
            seconds, _ = run(train_script, argv, cell.workdir, log, **popen)
            record[key] = {"epochs": epochs, "train_s": round(seconds, 1)}
        else:
            record[key] = {"epochs": epochs, "train_s": None}  # finished before it was recorded
        save()
    if "result" not in record:
        argv = ["-dataset", cell.dataset, "--start_trial", cell.trial, "--num_trials", 1, *cell.common]
        seconds, _ = run(eval_script, argv, cell.workdir, log, **popen)
        path = results_file(cell.workdir, cell.dataset, cell.name, tag, cell.trial)
        record.update(result=read_scorers(path), eval_s=round(seconds, 1))
        save()


def threads_env(threads):
    """The scripts' environment with `threads` torch threads (None: this one, unchanged)."""
    if threads is None:
        return None
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class CellJob:
    """The callable of one submitit job (pickled with the cell): runs the cell from `record` and
    returns {"cell": record}, with "error": the failing script's line when one failed, or
    "stopped": True when it was stopped. Files in `folder`: <label>.log (every script's output)
    and <label>.lock. `threads`: torch threads of the scripts (None: Slurm's cpus per task, if
    set); `parent_pid`: the pool's parent, whose death stops the job."""

    def __init__(self, cell, record, folder, threads=None, parent_pid=None):
        self.cell, self.record, self.folder = cell, dict(record), folder
        self.threads, self.parent_pid = threads, parent_pid

    def path(self, suffix):
        return os.path.join(self.folder, f"{self.cell.label}{suffix}")

    def __call__(self):
        env = threads_env(self.threads or os.environ.get("SLURM_CPUS_PER_TASK") or None)
        executor = os.environ.get("SUBMITIT_EXECUTOR")
        os.makedirs(self.folder, exist_ok=True)
        with open(self.path(".lock"), "a") as lock, open(self.path(".log"), "a") as log:
            _wait_for(lock)
            if executor == "local" and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, raise_stopped)  # submitit's worker would only log it
                if self.parent_pid:
                    threading.Thread(target=_watch, args=(self.parent_pid,), daemon=True).start()
            # Slurm may send its USR2 to every process of the job: the script ignores it, and
            # `checkpoint` stops it with SIGINT
            ignore = (signal.SIGUSR2,) if executor == "slurm" else ()
            try:
                run_cell(self.cell, self.record, lambda: None, log, env=env, pass_fds=(lock.fileno(),), ignore=ignore)
            except UserError as e:
                return {"cell": self.record, "error": str(e)}
            except Stopped:
                return {"cell": self.record, "stopped": True}
        return {"cell": self.record}

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on USR2 (a time-out or preemption on Slurm): the running script
        saves its state and ends; the job, this callable with its record, is then requeued."""
        from submitit.helpers import DelayedSubmission

        stop_running()
        return DelayedSubmission(self, *args, **kwargs)


def _wait_for(lock):
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for {lock.name}: an earlier job of this cell, or its script, is still ending", flush=True)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)


def _watch(pid):
    """A pool job's thread: when the parent is gone, stop this job as SIGTERM does."""
    while True:
        time.sleep(WATCH_S)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:
            pass
