"""What benchmarks/speed.py measures, one function a measure: the matmul peak, FLOPs per image,
one CAC training step, the training loop over each real pipeline, one CAC evaluation trial
through the evaluation's own code, and the step under every threads x channels_last x amp
setting; all on synthetic in-memory images with a real data set's config."""
import os
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from datasets.config import load_config
from datasets.classnames import class_names
from datasets.normalization import listed_normalization
from datasets.pipeline import build_loader
from datasets.sources import source_labels
from datasets.trial import OpenSetData
from engine.accel import Accel
from engine.evaluation import evaluate_network
from networks.build import build_network
from networks.config import NetworkConfig
from networks.weights import CAC
from scorers import CACScorers
from utils import CACLoss

# shape name -> (data set whose config it uses, raw image side before Resize)
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


class InMemoryTrial(OpenSetData):
    """A trial over sources already open, such as images in memory: items (PIL image, label),
    labels as source_labels reads them, class ids indexing both sets; `test_set` holds the known
    and the unknown test images. Nothing is read from or written to disk: every training image of
    a known class both trains and validates, and mean/std are the config's listed row for `trial`,
    else those of the known training images."""

    def __init__(self, name, config, train_set, test_set, known, unknown, trial=0, source="memory"):
        self.root, self.download, self.folder, self.source_fingerprint = source, False, None, None
        self.known_source = self.unknown_source = source
        self._test_sets = {source: test_set}
        self._set_classes(name, trial, dict(config), list(known), list(unknown), max([*known, *unknown]) + 1)
        self.train_set, self.train_labels = train_set, source_labels(train_set)
        self.train_idx = self.val_idx = np.flatnonzero(np.isin(self.train_labels, self.known))
        listed = listed_normalization(self.cfg, trial)
        self.mean, self.std = listed if listed is not None else self._pixel_stats()
        self._set_class_names(class_names(train_set, len(self.label_map)))


def synthetic_trial(dataset, side, n_train, n_test):
    """OpenSetData over synthetic sources: the real transforms, subsets and label remapping;
    `dataset`'s config with its known classes plus 4 unknown ones."""
    cfg = load_config(dataset)
    channels, known = cfg["im_channels"], cfg["num_known_classes"]
    classes = known + 4
    train_set = SyntheticSource(n_train * classes // known, side, channels, classes, seed=1)
    test_set = SyntheticSource(n_test, side, channels, classes, seed=2)
    return InMemoryTrial(dataset, cfg, train_set, test_set, range(known), range(known, classes), source="synthetic")


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
    net = build_network(NetworkConfig.for_data(cfg), CAC, init_weights=True)
    net.set_anchors(torch.eye(cfg["num_known_classes"]) * 10)
    net, model = accel.prepare(net)
    return net, model, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), CACLoss(0.1)


def train_step(model, optimizer, criterion, images, targets):
    optimizer.zero_grad(set_to_none=True)
    _, distances = model(images)  # under autocast with --amp (Accel.prepare)
    loss = criterion(distances, targets)[0]
    loss.backward()
    optimizer.step()
    return loss


def bench_step(cfg, accel, steps, warmup):
    _, model, optimizer, criterion = fresh_network(cfg, accel)
    c, s, b = cfg["im_channels"], cfg["im_size"], cfg["batch_size"]
    images, targets = accel.inputs(torch.randn(b, c, s, s), torch.randint(0, cfg["num_known_classes"], (b,)))
    for _ in range(warmup):
        train_step(model, optimizer, criterion, images, targets)
    sync(accel.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, optimizer, criterion, images, targets)
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
        train_step(model, optimizer, criterion, *accel.inputs(images, targets))
    sync(accel.device)
    seen, wait, start = 0, 0.0, time.perf_counter()
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        wait += time.perf_counter() - t
        if batch is None:
            break
        images, targets = accel.inputs(*batch)
        loss = train_step(model, optimizer, criterion, images, targets)
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


def bench_eval(data, cfg, accel, pipeline, workers):
    """Seconds of one CAC evaluation trial (loaders built inside, as eval_cacOpenset does) and
    the number of images the network sees."""
    net, _, _, _ = fresh_network(cfg, accel)

    def loader(dataset):
        return build_loader(dataset, cfg["batch_size"], False, pipeline=pipeline, workers=workers,
                            device=accel.device, channels_last=accel.channels_last)

    # what eval_cacOpenset does for a checkpoint without stored anchor means: the scorers' setup
    # (the anchor pass), then every scorer and metric on the test and validation images
    start = time.perf_counter()
    scorers = CACScorers()
    scorers.setup(net, loader(data.anchor_dataset()), data.num_known, accel.device, with_flipped=cfg["anchor_flip"])
    result = evaluate_network(net, data, loader, accel.device, scorers, source="the benchmark's network", start=start)
    images = (len(data.train_idx) * (2 if cfg["anchor_flip"] else 1) + len(data.known_test_dataset())
              + len(data.unknown_test_dataset()) + len(data.val_idx))
    return result.seconds, images, result.metrics["cac"]["accuracy"], result.metrics["cac"]["auroc"]


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
