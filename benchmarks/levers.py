"""The levers toward a GPU's 40,000 training images/s (issue 21), each measured beside the original's
pipeline in one run (`benchmarks/speed.py --levers`), ratios to the original's images/s:

  original         torchvision DataLoader, per-sample PIL transforms in 2 workers, float32, eager, NCHW
  resident         today's default: the batches cut, augmented and normalized on the device
  augment K        + the augmentation of K batches drawn and applied at once (--augment_batches K)
  compiled model   + static shapes (--drop_last) and torch.compile of the network (--compile)
  compiled step    + the whole step compiled: network, loss, metric sums, SGD; CUDA graphs on CUDA
                   (mode="reduce-overhead")
The compiled rows see the batches of the `augment K` row (same seeds, static shapes): their weights after
the timed steps are compared with its eager ones (equal with the eager and aot_eager backends on a CPU;
inductor rounds otherwise and draws its own dropout masks), and every row gives its mean training loss.
  eval             one CAC evaluation trial at the config's batch, then at --eval_batch (ratio: to the first)
  finite check     one check of every weight (engine.loop.all_finite) against one per parameter

--amp and --tf32 apply to every row but the original. A lever that fails is one row saying why,
and the rest still run. The training-loop rows run over the same synthetic images (measure.py)."""
import time

import torch

from benchmarks.measure import batches, bench_eval, fresh_network, sync, synthetic_trial
from datasets.pipeline import build_loader
from engine.accel import Accel
from engine.loop import all_finite

ORIGINAL_WORKERS = 2  # the original's config: per-sample transforms in 2 DataLoader workers


def make_step(model, optimizer, criterion):
    """One CAC training step as a function of the batch: zero the gradients, forward, loss, backward,
    SGD; returns the step's [total, anchor, tuplet loss, correct predictions] (on the device)."""
    def step(images, targets):
        optimizer.zero_grad(set_to_none=True)
        _, distances = model(images)
        total, anchor, tuplet = criterion(distances, targets)
        total.backward()
        optimizer.step()
        correct = (distances.argmin(1) == targets).sum()
        return torch.stack([total.detach(), anchor.detach(), tuplet.detach(), correct.double()])
    return step


def compile_step(step, device, backend):
    """`step` compiled whole (graph breaks where dynamo needs them); CUDA graphs on CUDA with inductor."""
    mode = "reduce-overhead" if device.type == "cuda" and backend == "inductor" else None
    return torch.compile(step, backend=backend, mode=mode)


def loop_rate(data, cfg, accel, steps, warmup, pipeline="resident", workers=0, augment_batches=1,
              drop_last=False, step_backend=None, seed=0):
    """(images/s of `steps` training steps after `warmup`, the network, the mean training loss of those steps)
    over `pipeline`'s batches."""
    loader = build_loader(data.train_dataset(), cfg["batch_size"], True, pipeline=pipeline, workers=workers,
                          device=accel.device, channels_last=accel.channels_last, drop_last=drop_last,
                          augment_batches=augment_batches)
    net, model, optimizer, criterion = fresh_network(cfg, accel, seed)
    step = make_step(model, optimizer, criterion)
    if step_backend is not None:
        step = compile_step(step, accel.device, step_backend)
    model.train()
    it, sums = batches(loader, warmup + steps), None
    for _ in range(warmup):
        step(*accel.inputs(*next(it)))
    sync(accel.device)
    seen, start = 0, time.perf_counter()
    for _ in range(steps):
        images, targets = accel.inputs(*next(it))
        out = step(images, targets)
        sums = out.clone() if sums is None else sums + out  # the epoch's running sums, on the device
        seen += len(targets)
    mean_loss = sums[0].item() / steps  # one read at the end, as an epoch's means
    return seen / (time.perf_counter() - start), net, mean_loss


def finite_check_us(net, repeats=20):
    """Microseconds per call: (one check per parameter, engine.loop.all_finite)."""
    params = list(net.parameters())
    per_parameter = lambda: bool(torch.stack([torch.isfinite(p).all() for p in params]).all())  # noqa: E731
    times = []
    for check in (per_parameter, lambda: all_finite(params)):
        check()
        start = time.perf_counter()
        for _ in range(repeats):
            check()
        times.append(1e6 * (time.perf_counter() - start) / repeats)
    return times


def run(args, cfg, dataset, side, steps, warmup, emit):
    """Every lever's row for one shape, in the order of the module's docstring."""
    device = torch.device(args.device)
    data = synthetic_trial(dataset, side, n_train=cfg["batch_size"] * max(steps + warmup, 4) // 2,
                           n_test=4 * cfg["num_known_classes"])
    backend = args.step_backend or ("inductor" if device.type == "cuda" else "aot_eager")
    fast = dict(amp=args.amp, tf32=args.tf32)
    rows = [("original", dict(channels_last=False), dict(pipeline="torchvision", workers=ORIGINAL_WORKERS)),
            ("resident", fast, {}),
            (f"augment {args.augment_batches}", fast, dict(augment_batches=args.augment_batches, drop_last=True)),
            ("compiled model", dict(fast, compile=True), dict(augment_batches=args.augment_batches, drop_last=True)),
            ("compiled step", fast, dict(augment_batches=args.augment_batches, drop_last=True,
                                         step_backend=backend))]
    if backend != "inductor":  # --compile is inductor's: on a CPU a C++ build of minutes, left to --step_backend
        rows = [row for row in rows if row[0] != "compiled model"]
    original, net, eager = None, None, None
    for name, accel_options, loop_options in rows:
        base = {"measure": "lever", "shape": args.shape_name, "lever": name, "batch": cfg["batch_size"],
                "amp": name != "original" and args.amp, "tf32": name != "original" and args.tf32}
        try:
            accel = Accel(device, **accel_options)
            ips, net, loss = loop_rate(data, cfg, accel, steps, warmup, **loop_options)
        except Exception as e:  # one row says why; the other levers still run
            emit({**base, "images_per_s": None, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            continue
        original = ips if name == "original" else original
        row = {**base, "images_per_s": round(ips, 1), "mean_loss": round(loss, 5),
               "ratio_to_original": round(ips / original, 2) if original else None}
        weights = torch.cat([p.detach().flatten().double().cpu() for p in net.parameters()])
        if name.startswith("augment"):  # the eager run of the compiled rows' batches, from the same start
            eager = weights
        elif name.startswith("compiled") and eager is not None:
            row.update(backend=backend if name == "compiled step" else "inductor",
                       max_weight_difference_vs_eager=float((eager - weights).abs().max()))
        emit(row)
    accel = Accel(device, **fast)
    eval_data = synthetic_trial(dataset, side, n_train=args.eval_images, n_test=max(24, args.eval_images // 3))
    first = None
    for batch in (cfg["batch_size"], args.eval_batch):  # the ratio column: to the config's batch
        seconds, images, acc, auroc = bench_eval(eval_data, dict(cfg, batch_size=batch), accel, "resident", 0)
        first = first or images / seconds
        emit({"measure": "lever", "shape": args.shape_name, "lever": f"eval batch {batch}", "batch": batch,
              "images_per_s": round(images / seconds, 1), "ratio_to_original": round(images / seconds / first, 2),
              "seconds": round(seconds, 3), "accuracy": round(acc, 4), "auroc": round(auroc, 4)})
    if net is not None:
        per_parameter, fused = finite_check_us(net)
        emit({"measure": "lever", "shape": args.shape_name, "lever": "finite check", "per_parameter_us":
              round(per_parameter, 1), "all_finite_us": round(fused, 1), "parameters": len(list(net.parameters()))})


def markdown(rows):
    """The lever rows as a Markdown table, ratios to the original's images/s."""
    lines = ["| shape | lever | batch | images/s | ratio to original | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("measure") != "lever":
            continue
        if r["lever"] == "finite check":
            note = (f"{r['parameters']} parameters: {r['per_parameter_us']} us one per parameter, "
                    f"{r['all_finite_us']} us all_finite (ratio: the speed-up)")
            ratio = r["per_parameter_us"] / r["all_finite_us"]
            lines.append(f"| {r['shape']} | finite check | | | {ratio:.2f} | {note} |")
            continue
        keys = ("mean_loss", "backend", "max_weight_difference_vs_eager", "seconds", "accuracy", "auroc")
        note = r.get("error") or ", ".join(f"{k} {r[k]}" for k in keys if k in r)
        lines.append(f"| {r['shape']} | {r['lever']} | {r['batch']} | {r['images_per_s']} | "
                     f"{r.get('ratio_to_original', '')} | {note} |")
    return "\n".join(lines)
