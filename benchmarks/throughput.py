"""Training throughput of the paper's CNN on this machine: the step alone vs the full loop.

    python benchmarks/throughput.py [--device cpu] [--steps 20] [--workers 0 2]

`step`: one CAC training step (forward, loss, backward, SGD) on a fixed random batch of
1x32x32 images, batch 128: the network's cost alone. `loop`: the real training path of
train_cacOpenset.py (Digits images resized to 32x32, torchvision per-image augmentation,
DataLoader with the given worker counts) for the same number of images. Prints one JSON
line per measurement; figures are images per second, measured side by side in one run.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
from datasets import OpenSetData, load_config, make_loader
from networks import openSetClassifier
from utils import CACLoss


def _step(net, optimizer, criterion, images, targets):
    optimizer.zero_grad(set_to_none=True)
    _, distances = net(images)
    loss = criterion(distances, targets)[0]
    loss.backward()
    optimizer.step()
    return loss


def _fresh(device, im_size=32):
    torch.manual_seed(0)
    net = openSetClassifier(6, 1, im_size, init_weights=True).to(device)
    net.set_anchors(torch.eye(6) * 10)
    return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), CACLoss(0.1)


def bench_step(device, steps, batch):
    net, opt, crit = _fresh(device)
    images = torch.randn(batch, 1, 32, 32, device=device)
    targets = torch.randint(0, 6, (batch,), device=device)
    for _ in range(3):  # warm-up
        _step(net, opt, crit, images, targets)
    start = time.perf_counter()
    for _ in range(steps):
        loss = _step(net, opt, crit, images, targets)
    loss.item()
    return steps * batch / (time.perf_counter() - start)


def bench_loop(device, steps, batch, workers):
    cfg = {**load_config("Digits"), "im_size": 32}  # the 1x32x32 shape of MNIST
    data = OpenSetData("Digits", 0, config=cfg)
    loader = make_loader(data.train_dataset(), batch, True, workers)
    net, opt, crit = _fresh(device)
    done, seen, start, data_time, t_data = 0, 0, None, 0.0, time.perf_counter()
    while done < steps + 3:
        for images, targets in loader:
            now = time.perf_counter()
            if done == 3:  # warm-up batches excluded
                start, data_time, seen = now, 0.0, 0
            elif start is not None:
                data_time += now - t_data
            loss = _step(net, opt, crit, images.to(device), targets.to(device))
            loss.item()
            seen += len(targets) if start is not None else 0
            done += 1
            t_data = time.perf_counter()
            if done >= steps + 3:
                break
    elapsed = time.perf_counter() - start
    return seen / elapsed, data_time / elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (default: 20)")
    p.add_argument("--batch", type=int, default=128, help="images per step (default: 128, the paper's)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try")
    p.add_argument("--repeats", type=int, default=1, help="rounds of all measurements (default: 1)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    common = {"device": str(device), "threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps}
    for _ in range(args.repeats):  # interleaved, so drifting clock speeds hit every measurement
        print(json.dumps({"measure": "step", **common,
                          "images_per_s": round(bench_step(device, args.steps, args.batch), 1)}))
        for w in args.workers:
            ips, share = bench_loop(device, args.steps, args.batch, w)
            print(json.dumps({"measure": "loop", "workers": w, **common, "images_per_s": round(ips, 1),
                              "data_wait_share": round(share, 3)}))


if __name__ == "__main__":
    main()
