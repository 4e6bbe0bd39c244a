"""The submitit side of benchmarks/reproduce.py (benchmarks/launch.py picks it): a Sweep runs the
cells of one command as jobs of a submitit executor, at most --jobs at once, and records each
cell in the table when its job ends (this process is the table's only writer), with the job ids,
so that a rerun follows the Slurm jobs still queued or running instead of submitting them again;
and the executors: what submitit gets for a pool, Slurm (the sbatch options) or the debug launcher.
A failed cell is named with its log and the others go on; the command then ends with one line
naming them. On Ctrl-C or SIGTERM the pool's jobs stop their scripts, which save their state.
"""
import contextlib
import os
import shlex
import signal
import time

from benchmarks.cells import CellJob
from benchmarks.protocol import REPO, STOP_WAIT_S
from core.errors import UserError

TIMEOUT_MIN = 24 * 60  # a Slurm job's default time limit
POOL_TIMEOUT_MIN = 365 * 24 * 60  # the pool's jobs never reach theirs
SIGNAL_DELAY_S = 180  # Slurm's USR2 comes this long before the limit; a script saves within STOP_WAIT_S
MAX_REQUEUES = 100  # time-outs after which a job is still requeued (preemptions do not count)
POLL_S = {"pool": 1.0, "slurm": 20.0, "debug": 0.0}


def last_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class Sweep:
    """The cells of one command through a submitit executor: at most --jobs at once, each
    recorded in the table when its job ends; stopped jobs and failures reported."""

    def __init__(self, args, table, save):
        self.args, self.table, self.save = args, table, save
        self.folder = os.path.abspath(args.out + "_jobs")
        launch = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.executor = make_executor(args, os.path.join(self.folder, "submitit", launch))
        self.jobs = table.setdefault("jobs", {})  # cell -> its job: {launcher, job_id, folder}
        self.running, self.failed = {}, []
        threads = args.threads
        if threads is None and args.launcher == "pool":
            threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
        self.threads = threads
        table["threads_per_job"] = threads

    def run(self, cells):
        todo = [c for c in cells if "result" not in self.table["cells"].get(c.key, {}) and not self.follow(c)]
        slots = list(range(self.args.jobs or (len(todo) + len(self.running)) or 1))
        self.free = [s for s in slots if s not in {slot for _, slot, _ in self.running.values()}]
        try:
            while todo or self.running:
                while todo and self.free:
                    self.start(todo.pop(0), self.free.pop(0))
                if not self.collect():
                    time.sleep(POLL_S[self.args.launcher])
        except BaseException:
            self.stop()
            raise
        if self.failed:
            named = "; ".join(f"{key} (log {log})" for key, log in self.failed)
            raise UserError(f"{len(self.failed)} of {len(cells)} cells failed: {named}; fix what the log says, then "
                            f"run the same command again: finished phases and cells are kept")

    def follow(self, cell):
        """A job of a previous launch of this command for `cell`: followed while Slurm still has it,
        recorded when it finished; False when the cell needs a new job."""
        seen = self.jobs.get(cell.key)
        if self.args.launcher == "debug" or not seen or seen.get("launcher") != self.args.launcher:
            return False
        job = self.executor.job_class(folder=seen["folder"], job_id=seen["job_id"])
        if not job.done():
            print(f"{cell.key}: following job {seen['job_id']} of an earlier launch", flush=True)
            self.running[cell.key] = (job, len(self.running), cell)
            return True
        try:
            out = job.result()
        except Exception:
            return False  # it left no result: a new job continues the cell
        self.table["cells"][cell.key] = out["cell"]
        self.save()
        return "error" not in out and not out.get("stopped") and "result" in out["cell"]

    def start(self, cell, slot):
        args, executor = self.args, self.executor
        job = CellJob(cell, self.table["cells"].get(cell.key, {}), self.folder, self.threads,
                      parent_pid=os.getpid() if args.launcher == "pool" else None)
        if args.launcher == "pool":
            executor.update_parameters(gpus_per_node=args.gpus_per_job, visible_gpus=args.pool_gpus[slot])
            with repo_on_pythonpath():
                submitted = executor.submit(job)
        else:
            if args.launcher == "slurm":
                executor.update_parameters(job_name=f"cac_{cell.label}")
            submitted = executor.submit(job)
        self.running[cell.key] = (submitted, slot, cell)
        self.jobs[cell.key] = {"launcher": args.launcher, "job_id": str(submitted.job_id),
                               "folder": str(executor.folder)}
        self.save()
        print(f"{cell.key}: job {submitted.job_id} ({args.launcher}), log {job.path('.log')}", flush=True)

    def collect(self):
        """Record the jobs that ended; whether any did."""
        ended = [key for key, (job, _, _) in self.running.items() if job.done()]
        for key in ended:
            job, slot, cell = self.running.pop(key)
            self.free.append(slot)
            self.record(job, cell)
        return bool(ended)

    def record(self, job, cell):
        log = os.path.join(self.folder, f"{cell.label}.log")
        try:
            out = job.result()
        except Exception as e:  # the job itself broke (a script's failure comes back as "error")
            self.fail(cell, f"its job ended without a result ({last_line(e)})", f"{log}, {job.paths.stderr}")
            return
        self.table["cells"][cell.key] = out["cell"]
        self.save()
        if "error" in out:
            self.fail(cell, out["error"], log)
        elif out.get("stopped"):  # by a signal to its process, or the stop of this command
            self.fail(cell, "its job was stopped before the cell's end (its script saved its state)", log)
        else:
            print(f"{cell.key}: done", flush=True)

    def fail(self, cell, message, log):
        self.failed.append((cell.key, log))
        print(f"{cell.key} failed: {message}; log: {log}", flush=True)

    def stop(self):
        """On Ctrl-C or SIGTERM: the pool's jobs stop their scripts (which save their state), and
        what they finished is recorded; Slurm's jobs go on (the same command follows them)."""
        if self.args.launcher == "slurm" and self.running:
            print(f"the Slurm jobs of {', '.join(self.running)} go on; the same command follows them", flush=True)
        if self.args.launcher != "pool":
            return
        for job, _, _ in self.running.values():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(job.job_id), signal.SIGTERM)  # the controller hands it to the job
        deadline = time.time() + STOP_WAIT_S + 30
        for job, _, cell in list(self.running.values()):
            while not job.done() and time.time() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(Exception):  # a job killed by the terminal's Ctrl-C left no result
                self.table["cells"][cell.key] = job.result()["cell"]  # what it finished
        self.save()


def slurm_parameters(args):
    """What submitit's Slurm executor gets: the sbatch options of every job of the sweep."""
    options = {"time": args.timeout_min or TIMEOUT_MIN, "gpus_per_node": args.gpus_per_job, "nodes": 1,
               "ntasks_per_node": 1, "signal_delay_s": SIGNAL_DELAY_S,
               "setup": [f"export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}"],
               "additional_parameters": {"requeue": True, **args.slurm_options}}
    if args.slurm_partition:
        options["partition"] = args.slurm_partition
    return options


def make_executor(args, folder):
    import submitit

    if args.launcher == "debug":
        return submitit.DebugExecutor(folder)
    if args.launcher == "pool":
        executor = submitit.LocalExecutor(folder, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(timeout_min=POOL_TIMEOUT_MIN)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(**slurm_parameters(args))
    return executor


@contextlib.contextmanager
def repo_on_pythonpath():
    """The pool's jobs inherit this environment when they start: there they import benchmarks.cells."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = REPO if not old else f"{REPO}{os.pathsep}{old}"
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
