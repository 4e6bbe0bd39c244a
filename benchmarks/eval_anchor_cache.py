"""Time of a CAC evaluation with the anchor means read from the calibration vs computed again.

    python benchmarks/eval_anchor_cache.py --dataset Digits --name demo [--trial 0] [--repeats 3]

Runs eval_cacOpenset.main in this process on an already trained checkpoint (the first call
writes the anchor means into the calibration beside it), then alternates `cached` and `--recompute_anchors` rounds
(the machine's speed drifts; interleaving spreads that over both). Prints one JSON line per
mode: seconds per evaluation (min, median) and the rounds.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
import eval_cacOpenset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Digits")
    p.add_argument("--name", default="demo")
    p.add_argument("--trial", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="rounds per mode (default: 3)")
    p.add_argument("--workers", default="0", help="DataLoader workers (default: 0)")
    args = p.parse_args(argv)
    base = ["-dataset", args.dataset, "--num_trials", "1", "--start_trial", str(args.trial), "--name", args.name,
            "--workers", args.workers]

    def timed(extra):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            eval_cacOpenset.main(base + extra)
        return time.perf_counter() - start

    timed([])  # warm-up: imports, caches, and the anchor means kept in the calibration
    rounds = {"cached": [], "recompute": []}
    for _ in range(args.repeats):
        rounds["cached"].append(timed([]))
        rounds["recompute"].append(timed(["--recompute_anchors"]))
    for mode, seconds in rounds.items():
        print(json.dumps({"mode": mode, "dataset": args.dataset, "trial": args.trial, "min_s": round(min(seconds), 3),
                          "median_s": round(statistics.median(seconds), 3), "rounds_s": [round(s, 3) for s in seconds]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
