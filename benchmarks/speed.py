"""Speed of the paper's CNN on one device, side by side in one run: what bounds it and where time goes.

    python benchmarks/speed.py                      # full run on CUDA if present, else CPU
    python benchmarks/speed.py --quick              # CI size: a few steps, tiny data
    python benchmarks/speed.py --sweep              # also: threads x channels_last x amp for the step

For each shape (1x32x32 as MNIST, 3x32x32 as CIFAR10, 3x64x64 as TinyImageNet, each with
its data set's config: batch, augmentation, classes) it measures, in images/s:
  step   one CAC training step (forward, loss, backward, SGD) on a fixed batch on the device
  loop   the training loop over the real pipelines (resident, torchvision) on synthetic
         in-memory images, with the share of loop time spent waiting for the next batch
  data   the pipeline alone (batches produced per second, no network)
  eval   one CAC evaluation trial (anchor pass + known/unknown test) through each pipeline
plus the matmul peak (GFLOP/s) and each figure's share of the FLOP bound = peak / FLOPs per
image (counted by torch.utils.flop_counter). Writes every row as JSON to --out.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
from datasets.config import load_config
from datasets.trial import OpenSetData
from datasets.pipeline import PIPELINES, build_loader
from engine.accel import Accel
from engine.evaluation import gather_outputs
from networks import openSetClassifier
from metrics import accuracy, auroc
from utils import CACLoss, cac_scores, compute_anchor_means

# shape name -> (data set whose config it uses, raw image side before Resize)
SHAPES = {"1x32x32": ("MNIST", 28), "3x32x32": ("CIFAR10", 32), "3x64x64": ("TinyImageNet", 64)}


class SyntheticSource:
    """In-memory images in torchvision's layout (`data` uint8, `targets`, items are PIL images)."""

    def __init__(self, n, side, channels, num_classes, seed):
        rng = np.random.default_rng(seed)
        shape = (n, side, side) if channels == 1 else (n, side, side, channels)
        self.data = rng.integers(0, 256, size=shape, dtype=np.uint8)
        self.targets = rng.permutation(np.arange(n) % num_classes).tolist()  # every class present

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.fromarray(self.data[i]), self.targets[i]


def synthetic_trial(dataset, side, n_train, n_test):
    """OpenSetData over synthetic sources: the real transforms, subsets and label remapping;
    `dataset`'s config with its known classes plus 4 unknown ones."""
    cfg = load_config(dataset)
    channels, known = cfg["im_channels"], cfg["num_known_classes"]
    classes = known + 4
    train_set = SyntheticSource(n_train * classes // known, side, channels, classes, seed=1)
    test_set = SyntheticSource(n_test, side, channels, classes, seed=2)
    return OpenSetData.from_sources(dataset, cfg, train_set, test_set, range(known), range(known, classes),
                                    source="synthetic")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, n, repeats):
    """GFLOP/s of the fastest of `repeats` float32 n x n matmuls (the best one: a peak)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def count_flops(net, shape):
    """(forward, forward + backward) GFLOP per image of `net` in train mode."""
    x = torch.randn(2, *shape)
    with FlopCounterMode(display=False) as counter:
        net(x)[0].sum()
    forward = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        net(x)[0].sum().backward()
    return forward / 1e9, counter.get_total_flops() / 2 / 1e9


def fresh_network(cfg, accel, seed=0):
    torch.manual_seed(seed)
    net = openSetClassifier(cfg["num_known_classes"], cfg["im_channels"], cfg["im_size"], init_weights=True,
                            dropout=cfg["dropout"])
    net.set_anchors(torch.eye(cfg["num_known_classes"]) * 10)
    net, model = accel.prepare(net)
    return net, model, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), CACLoss(0.1)


def train_step(model, optimizer, criterion, accel, images, targets):
    optimizer.zero_grad(set_to_none=True)
    with accel.autocast():
        _, distances = model(images)
        loss = criterion(distances, targets)[0]
    loss.backward()
    optimizer.step()
    return loss


def bench_step(cfg, accel, steps, warmup):
    _, model, optimizer, criterion = fresh_network(cfg, accel)
    c, s, b = cfg["im_channels"], cfg["im_size"], cfg["batch_size"]
    images, targets = accel.inputs(torch.randn(b, c, s, s), torch.randint(0, cfg["num_known_classes"], (b,)))
    for _ in range(warmup):
        train_step(model, optimizer, criterion, accel, images, targets)
    sync(accel.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, optimizer, criterion, accel, images, targets)
    loss.item()
    return steps * b / (time.perf_counter() - start)


def batches(loader, count):
    """`count` batches, iterating the loader over as many epochs as that takes."""
    while True:
        for batch in loader:
            yield batch
            count -= 1
            if count == 0:
                return


def bench_loop(data, cfg, accel, pipeline, workers, steps, warmup):
    """(images/s of the training loop, share of its time spent waiting for batches, images/s of
    the pipeline alone, seconds to build the loader)."""
    start = time.perf_counter()
    loader = build_loader(data.train_dataset(), cfg["batch_size"], True, pipeline=pipeline, workers=workers,
                          device=accel.device, channels_last=accel.channels_last)
    setup = time.perf_counter() - start
    _, model, optimizer, criterion = fresh_network(cfg, accel)
    it = batches(loader, warmup + steps)
    for images, targets in (next(it) for _ in range(warmup)):
        train_step(model, optimizer, criterion, accel, *accel.inputs(images, targets))
    sync(accel.device)
    seen, wait, start = 0, 0.0, time.perf_counter()
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        wait += time.perf_counter() - t
        if batch is None:
            break
        images, targets = accel.inputs(*batch)
        loss = train_step(model, optimizer, criterion, accel, images, targets)
        seen += len(targets)
    loss.item()
    elapsed = time.perf_counter() - start
    # the pipeline alone: as many batches, no network
    count = 0
    alone = time.perf_counter()
    for images, _ in batches(loader, steps):
        count += len(images)
    sync(accel.device)
    return seen / elapsed, wait / elapsed, count / (time.perf_counter() - alone), setup


def evaluate_network(net, data, loader, device):
    """What eval_cacOpenset does for one trial when the checkpoint has no anchor means yet:
    the anchor pass over the training images, then the paper's accuracy and AUROC."""
    means, _ = compute_anchor_means(net, loader(data.anchor_dataset()), data.num_known, device,
                                    with_flipped=data.cfg["anchor_flip"])
    net.set_anchors(means)
    (_, known_distances), known_labels = gather_outputs(net, loader(data.known_test_dataset()), device)
    (_, unknown_distances), _ = gather_outputs(net, loader(data.unknown_test_dataset()), device)
    known, unknown = cac_scores(known_distances), cac_scores(unknown_distances)
    return accuracy(known.argmin(1), known_labels), auroc(known.min(1).values, unknown.min(1).values)


def bench_eval(data, cfg, accel, pipeline, workers):
    """Seconds of one CAC evaluation trial (loaders built inside, as eval_cacOpenset does) and
    the number of images the network sees."""
    net, _, _, _ = fresh_network(cfg, accel)

    def loader(dataset):
        return build_loader(dataset, cfg["batch_size"], False, pipeline=pipeline, workers=workers,
                            device=accel.device, channels_last=accel.channels_last)

    start = time.perf_counter()
    acc, auroc = evaluate_network(net, data, loader, accel.device)
    elapsed = time.perf_counter() - start
    images = (len(data.train_idx) * (2 if cfg["anchor_flip"] else 1) + len(data.known_test_dataset())
              + len(data.unknown_test_dataset()))
    return elapsed, images, acc, auroc


def sweep(cfg, device, steps, warmup):
    """Step images/s for each thread count, memory format and autocast setting (CPU defaults)."""
    rows, saved = [], torch.get_num_threads()
    threads = range(1, (os.cpu_count() or 1) + 1) if device.type == "cpu" else [saved]
    try:
        for t in threads:
            torch.set_num_threads(t)
            for cl in (False, True):
                for amp in (False, True):
                    ips = bench_step(cfg, Accel(device, amp=amp, channels_last=cl), steps, warmup)
                    rows.append({"measure": "step_setting", "threads": t, "channels_last": cl, "amp": amp,
                                 "images_per_s": round(ips, 1)})
    finally:
        torch.set_num_threads(saved)
    return rows


def machine(device):
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


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
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="CI size: tiny data, 2 steps, batch 8")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 30; quick: 2)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast in step and loop")
    p.add_argument("--sweep", action="store_true", help="also time the step for every threads/channels_last/amp")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all measurements, interleaved so that a busy machine slows each alike (default: 1)")
    p.add_argument("--eval_images", type=int, default=None,
                   help="known training images of the evaluation trial (default: 3000; quick: 48)")
    p.add_argument("--out", default="speed.json", help="JSON file of all rows (default: speed.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    steps = args.steps or (2 if args.quick else 30)
    warmup = 1 if args.quick else 3
    n_eval = args.eval_images or (48 if args.quick else 3000)
    accel = Accel(device, amp=args.amp)
    result = {"machine": machine(device), "args": vars(args), "rows": []}
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
        forward, train = count_flops(openSetClassifier(cfg["num_known_classes"], cfg["im_channels"],
                                                       cfg["im_size"], dropout=cfg["dropout"]),
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
    print(markdown(result))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
