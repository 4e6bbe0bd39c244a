"""What the benchmark scripts share: running one of the repo's scripts as a user would (its one
error line becomes the benchmark's), the machine and command lines of a table, reading an
evaluation's results file, and benchmarks/reproduce.py's per-cell phases (what is done, what to
continue) and its paper-shaped table (mean ± std over trials per data set, method and scorer)."""
import contextlib
import functools
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from benchmarks.published import compare, markdown_lines
from benchmarks.tables import plus_minus, read_results
from benchmarks.tables import write_table as write_tables
from core.errors import UserError
from networks.weights import CAC, CROSS_ENTROPY, LAST, weights_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# method -> (training script, evaluation script, file tag, config key of its schedule)
METHODS = {"CAC": ("train_cacOpenset.py", "eval_cacOpenset.py", CAC, "openset_training"),
           "CE": ("train_closedSet.py", "eval_closedSet.py", CROSS_ENTROPY, "closedset_training")}
TABLE_METRICS = {"auroc": "AUROC", "accuracy": "accuracy", "oscr": "OSCR"}


class Stopped(BaseException):
    """A signal asked this process to stop (its name is the message); a BaseException, so that
    no `except Exception` on the way swallows it, and run() stops its script first."""


def raise_stopped(signum, frame):
    raise Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def sigterm_stops():
    """SIGTERM raises Stopped in the main thread while inside (as Ctrl-C raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(script, argv, workdir, log=None, env=None, pass_fds=(), ignore=()):
    """Run one of the repo's scripts (in `workdir`); (seconds, stdout). Its own one-line error
    ends the benchmark with the same line; `log`: a file that gets the script's output too.

    The script runs in a session of its own, so that a Ctrl-C or a signal meant for this process
    reaches it once, from here: on any exception while it runs (KeyboardInterrupt, a stop) it gets
    one SIGINT, saves its state and ends (stop_running) before the exception goes on. `env`: its
    environment (default: this one); `pass_fds`: descriptors it inherits (a lock then lives as
    long as it does); `ignore`: signals it starts with ignored."""
    command = [sys.executable, os.path.join(REPO, script), *map(str, argv)]
    start = time.perf_counter()
    preexec = functools.partial(_ignore_signals, tuple(ignore)) if ignore else None
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, pass_fds=tuple(pass_fds), start_new_session=True, preexec_fn=preexec)
    RUNNING.append(proc)
    out = err = ""
    try:
        out, err = proc.communicate()
    except BaseException:
        out, err = _stop(proc)
        raise
    finally:
        RUNNING.remove(proc)
        if log is not None:
            log.write(f"$ {shlex.join(command)}\n{out or ''}{err or ''}\n")
            log.flush()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{script} failed (exit {proc.returncode}): {last.removeprefix('error: ')}")
    return time.perf_counter() - start, out


STOP_WAIT_S = 120  # how long a stopped script may take to save its state before it is killed
RUNNING = []  # the scripts run() is running now in this process


def _ignore_signals(signals):
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


def _stop(proc):
    """SIGINT to a script still running (it saves its state and ends); its (stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def stop_running(wait=STOP_WAIT_S):
    """From a signal handler: SIGINT to every script run() is running, then wait for each to end
    (killed after `wait` seconds). It only waits (no pipe is read here: the interrupted run()
    reads the rest of the output when it goes on)."""
    for proc in list(RUNNING):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()


def trial_list(text):
    """'0-4' -> [0..4], '3' -> [3]; argparse turns the ValueError into its usage line."""
    lo, _, hi = text.partition("-")
    first, last = int(lo), int(hi or lo)
    if first < 0 or last < first:
        raise ValueError(text)
    return list(range(first, last + 1))


def check_workdir(path):
    """--workdir: an existing folder (the scripts run there), refused in one line before anything is written."""
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise UserError(f"--workdir {path} {what}: give an existing folder, e.g. after mkdir -p {shlex.quote(path)}")


def machine():
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, "
            f"Python {platform.python_version()}")


def command_line(script, argv):
    return "python " + " ".join(shlex.quote(str(a)) for a in [script, *argv])


def results_file(workdir, dataset, name, tag, trial):
    """The results JSON an evaluation script writes for one trial of run `name` (`tag`: CAC or ClosedSet)."""
    return os.path.join(workdir, "results", f"{dataset}_{name}{tag}_trials{trial}-{trial}.json")


def read_scorers(path):
    """{scorer: {metric of TABLE_METRICS: value}} of a one-trial results JSON, or one UserError line."""
    result = read_results(path, "evaluate the trial again")
    try:
        return {s: {m: float(result["metrics"][s][m][0]) for m in TABLE_METRICS} for s in result["scorers"]}
    except (KeyError, TypeError, IndexError, ValueError):
        raise UserError(f"results file {path} lacks the per-scorer metrics; evaluate the trial again") from None


def phase_state(workdir, dataset, trial, name, method, phase):
    """What the ...Last.pth of a cell says about `phase` (0: first run, 1: -r): "done" (all its
    epochs ran), "stopped" (interrupted: --continue it) or "none" (not started: run it)."""
    path = os.path.join(workdir, weights_path(dataset, trial, name, LAST[METHODS[method][2]]))
    if not os.path.isfile(path):
        return "none"
    try:
        from networks.checkpoint import read_checkpoint

        state = read_checkpoint(path)
        if state["phase"] != phase:
            return "done" if state["phase"] > phase else "none"
        return "done" if state["epoch"] >= state["end_epoch"] else "stopped"
    except (UserError, KeyError, TypeError):
        return "none"  # unreadable: the phase runs again (--overwrite)


def mean_std(values):
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarize(cells, datasets, trials, methods):
    """{dataset: {method: {scorer: {metric: {mean, std, n}}}}} over the trials whose cell has
    a result (std: numpy's population std, ddof 0)."""
    out = {}
    for ds in datasets:
        for method in methods:
            results = [cells[k]["result"] for t in trials
                       if (k := f"{ds}/{t}/{method}") in cells and "result" in cells[k]]
            if results:
                out.setdefault(ds, {})[method] = {
                    s: {m: mean_std([r[s][m] for r in results]) for m in TABLE_METRICS} for s in results[0]}
    return out


def markdown(table):
    """Per metric (AUROC, accuracy, OSCR), a table: rows data sets, columns method/scorer."""
    summary, methods = table["summary"], table["methods"]
    columns = [(m, s) for m in methods for s in next(
        (summary[ds][m] for ds in summary if m in summary[ds]), {})]
    phases = ("one training run on the whole training set (train and validation parts), the last epoch's "
              "network evaluated (Vaze et al.'s protocol)" if table["recipe"] == "vaze"
              else "both phases (first run, then -r at the lower lr)")
    lines = [f"**Open-set protocol**, recipe `{table['recipe']}`, trials {', '.join(map(str, table['trials']))}, "
             f"{phases}; epochs per phase: "
             + "; ".join(f"{ds} {' + '.join(map(str, e))}" for ds, e in table["epochs"].items())
             + f" (budget {table['budget']}). {table['done']} of {table['planned']} cells done.", ""]
    for metric, label in TABLE_METRICS.items():
        lines += [f"{label} (mean ± std over trials; n = trials done):", "",
                  "| data set | " + " | ".join(f"{m} {s}" for m, s in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for ds in table["datasets"]:
            row = summary.get(ds, {})
            lines.append(f"| {ds} | " + " | ".join(
                f"{plus_minus(**row[m][s][metric])} (n={row[m][s][metric]['n']})" if m in row and s in row[m] else "…"
                for m, s in columns) + " |")
        lines.append("")
    lines += markdown_lines(table.get("published", []))
    lines += ["Scorers: CAC `cac` (paper), `min_distance`; CE `max_softmax` (paper baseline), `max_logit` "
              "(Vaze et al.). Accuracy: closed-set top-1 (share); OSCR: open-set classification rate.",
              "", f"Machine: {table['machine']}. Code: git {table['git']}. Wall time: {table['wall_s']:.0f} s "
              f"(this command's runs).", "", f"Command: `{table['command']}`", ""]
    return "\n".join(lines)


def write_table(table, out):
    """Summarize the cells of `table` (reproduce.py's) and write <out>.json and <out>.md, each
    whole or not at all; a failure is one UserError line."""
    cells = table["cells"]
    table.update(summary=summarize(cells, table["datasets"], table["trials"], table["methods"]),
                 done=sum("result" in c for c in cells.values()),
                 wall_s=sum((c.get(f"phase{p}", {}).get("train_s") or 0) for c in cells.values() for p in (0, 1))
                 + sum(c.get("eval_s", 0) for c in cells.values()))
    table["published"] = compare(table)
    write_tables(table, out + ".json", out + ".md", markdown, "phases")
