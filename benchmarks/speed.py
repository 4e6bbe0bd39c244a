"""Speed of the paper's CNN on one device, side by side in one run: what bounds it and where time goes.

    python benchmarks/speed.py                      # full run on CUDA if present, else CPU
    python benchmarks/speed.py --quick              # CI size: a few steps, tiny data
    python benchmarks/speed.py --sweep              # also: threads x channels_last x amp for the step
    python benchmarks/speed.py --levers --shapes 3x32x32 --amp   # the levers beside the original (levers.py)

For each shape (1x32x32 as MNIST, 3x32x32 as CIFAR10, 3x64x64 as TinyImageNet, each with
its data set's config: batch, augmentation, classes) it measures, in images/s:
  step   one CAC training step (forward, loss, backward, SGD) on a fixed batch on the device
  loop   the training loop over the real pipelines (resident, torchvision) on synthetic
         in-memory images, with the share of loop time spent waiting for the next batch
  data   the pipeline alone (batches produced per second, no network)
  eval   one CAC evaluation trial (anchor pass + known/unknown test) through each pipeline
plus the matmul peak (GFLOP/s) and each figure's share of the FLOP bound = peak / FLOPs per
image (counted by torch.utils.flop_counter). Writes every row as JSON to --out. The
measures themselves are in benchmarks/measure.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
from networks.weights import CAC  # noqa: E402

# shape -> (data set whose config is used, side of the synthetic images)
SHAPES = {"1x32x32": ("MNIST", 28), "3x32x32": ("CIFAR10", 32), "3x64x64": ("TinyImageNet", 64)}


def markdown(result):
    """The rows as the Markdown table of docs/performance.md."""
    lines = ["| shape | measure | pipeline | images/s | share of FLOP bound | data share of step | note |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["measure"] == "step_setting":
            note = f"threads {r['threads']}, channels_last {r['channels_last']}, amp {r['amp']}"
            lines.append(f"| {r['shape']} | step | | {r['images_per_s']} | | | {note} |")
            continue
        share = r.get("data_share_of_step", "")
        note = {"loop": f"waits for data {r.get('data_wait_share')} of the time; workers {r.get('workers')}",
                "eval": f"{r.get('seconds')} s per trial; workers {r.get('workers')}"}.get(r["measure"], "")
        lines.append(f"| {r['shape']} | {r['measure']} | {r.get('pipeline', '')} | {r['images_per_s']} | "
                     f"{r['bound_share']} | {share} | {note} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])  # default: cuda when available
    p.add_argument("--quick", action="store_true", help="CI size: tiny data, 2 steps, batch 8")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 30; quick: 2)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast in step and loop")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in step and loop")
    p.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                   help="memory format of step and loop (default: auto, Accel's choice for the device)")
    p.add_argument("--sweep", action="store_true", help="also time the step for every threads/channels_last/amp")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all measurements, interleaved so that a busy machine slows each alike (default: 1)")
    p.add_argument("--eval_images", type=int, default=None,
                   help="known training images of the evaluation trial (default: 3000; quick: 48)")
    p.add_argument("--out", default="speed.json", help="JSON file of all rows (default: speed.json)")
    g = p.add_argument_group("levers (benchmarks/levers.py)")
    g.add_argument("--levers", action="store_true", help="instead of the measures above: each lever's training "
                   "images/s beside the original's pipeline, evaluation batch sizes, the finite check")
    g.add_argument("--tf32", action="store_true", help="CUDA: TF32 float32 in the levers' rows (training's --tf32)")
    g.add_argument("--augment_batches", type=int, default=16, help="K of the augment lever (default: 16)")
    g.add_argument("--eval_batch", type=int, default=1024, help="the large evaluation batch (default: 1024)")
    g.add_argument("--step_backend", default=None, help="torch.compile backend of the compiled step (default: "
                   "inductor on CUDA, with CUDA graphs; aot_eager on a CPU, where inductor builds C++ for minutes)")
    args = p.parse_args(argv)
    import torch  # after parsing: --help answers at once

    from benchmarks.measure import bench_eval, bench_loop, bench_step, count_flops, matmul_peak, sweep, synthetic_trial
    from datasets.config import load_config
    from datasets.pipeline import PIPELINES
    from engine.accel import Accel, describe_machine
    from networks.build import build_network
    from networks.config import NetworkConfig

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)
    steps = args.steps or (2 if args.quick else 30)
    warmup = 1 if args.quick else 3
    n_eval = args.eval_images or (48 if args.quick else 3000)
    accel = Accel(device, amp=args.amp, compile=args.compile,
                  channels_last={"auto": None, "on": True, "off": False}[args.channels_last])
    result = {"machine": describe_machine(device), "args": vars(args), "rows": []}
    peak = matmul_peak(device, 512 if args.quick else 2048, 5 if args.quick else 20)
    result["matmul_gflops"] = round(peak, 1)
    print(f"matmul peak: {peak:.1f} GFLOP/s on {device} ({torch.get_num_threads()} threads)", flush=True)

    def emit(row):
        result["rows"].append(row)
        print(json.dumps(row), flush=True)

    for shape in [shape for _ in range(args.repeats) for shape in args.shapes]:
        dataset, side = SHAPES[shape]
        cfg = load_config(dataset)
        if args.quick:
            cfg["batch_size"] = 8
        if args.levers:
            from benchmarks import levers

            args.shape_name, args.eval_images = shape, n_eval
            levers.run(args, cfg, dataset, side, steps, warmup + 2, emit)  # 2 more: CUDA graphs record on the third
            continue
        forward, train = count_flops(build_network(NetworkConfig.for_data(cfg), CAC),
                                     (cfg["im_channels"], cfg["im_size"], cfg["im_size"]))
        bound_train, bound_eval = peak / train, peak / forward
        common = {"shape": shape, "config": dataset, "batch": cfg["batch_size"], "amp": args.amp,
                  "channels_last": accel.channels_last, "gflop_forward": round(forward, 3),
                  "gflop_train": round(train, 3)}
        ips = bench_step(cfg, accel, steps, warmup)
        emit({"measure": "step", **common, "images_per_s": round(ips, 1), "bound_share": round(ips / bound_train, 3)})
        data = synthetic_trial(dataset, side, n_train=cfg["batch_size"] * (steps + warmup) // 2,
                              n_test=4 * cfg["num_known_classes"])
        for pipeline in PIPELINES:
            workers = 0 if pipeline == "resident" else cfg["num_workers"]
            ips, wait, alone, setup = bench_loop(data, cfg, accel, pipeline, workers, steps, warmup)
            emit({"measure": "loop", **common, "pipeline": pipeline, "workers": workers, "images_per_s": round(ips, 1),
                  "bound_share": round(ips / bound_train, 3), "data_wait_share": round(wait, 3),
                  "data_alone_images_per_s": round(alone, 1), "data_share_of_step": round(ips / alone, 3),
                  "setup_s": round(setup, 2)})
        eval_data = synthetic_trial(dataset, side, n_train=n_eval, n_test=max(4 * cfg["num_known_classes"], n_eval // 3))
        for pipeline in PIPELINES:
            workers = 0 if pipeline == "resident" else cfg["num_workers"]
            seconds, images, acc, auroc = bench_eval(eval_data, cfg, accel, pipeline, workers)
            emit({"measure": "eval", **common, "pipeline": pipeline, "workers": workers, "seconds": round(seconds, 2),
                  "images_per_s": round(images / seconds, 1), "bound_share": round(images / seconds / bound_eval, 3),
                  "accuracy": round(acc, 4), "auroc": round(auroc, 4)})
        if args.sweep:
            for row in sweep(cfg, device, steps, warmup):
                emit({**row, "shape": shape})
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if args.levers:
        from benchmarks.levers import markdown as lever_table

        print(lever_table(result["rows"]))
    else:
        print(markdown(result))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
