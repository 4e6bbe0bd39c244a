"""Fingerprints of every number a short set of runs produces, to show that a change of the code
keeps them bit for bit (run it before and after, on the same machine and thread count, and diff).

    python benchmarks/fingerprint.py --out before.json   # old commit; then --out after.json on the new
    python benchmarks/fingerprint.py --compare before.json after.json

Runs (fresh work folder and CAC_CACHE_DIR): CAC and cross-entropy on Digits trial 0 (3 epochs, -r 2),
evaluated, predicted (also a checkpoint no evaluation saw); CAC on an image folder of Digits PNGs
(torchvision pipeline, flipped anchor pass). Digests of each checkpoint tensor, log line, results
number, .npz array and prediction.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_KEYS = ("trials", "raw_top1_accuracy", "raw_auroc", "average_top1_accuracy", "average_auroc", "metrics",
               "summary", "classes")


def run(script, *args, cwd, env):
    proc = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def sha(data):  # 16 hex digits: enough to tell two values apart
    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_prints(path):
    import torch

    def tensor_sha(t):
        flat = t.detach().cpu().contiguous().reshape(-1)
        return sha(str((tuple(t.shape), str(t.dtype))).encode() + flat.view(torch.uint8).numpy().tobytes())

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net = {k: tensor_sha(v) for k, v in sorted(ckpt["net"].items()) if not k.startswith("encoder.encoder")}
    return {"net": sha(json.dumps(net, sort_keys=True).encode()), "acc": ckpt.get("acc"), "epoch": ckpt.get("epoch")}


def npz_prints(path, work):
    """Each array's digest; file paths relative to the work folder (absolute ones differ per run)."""
    import numpy as np

    with np.load(path) as z:
        arrays = {k: np.char.replace(z[k], work, "") if k.endswith("_paths") else z[k] for k in z.files}
    return {k: sha(str((a.shape, a.dtype)).encode() + np.ascontiguousarray(a).tobytes()) for k, a in sorted(arrays.items())}


def write_pngs(root):
    """images/: 12 Digits test images; digits/train and digits/test: 5 Digits classes as 8x8 PNGs
    (split.json: 4 known, 1 unknown)."""
    sys.path.insert(0, REPO)
    from PIL import Image
    from datasets.digits import Digits

    for part, data in (("train", Digits(train=True)), ("test", Digits(train=False))):
        for i, (image, label) in enumerate(zip(data.data, data.targets)):
            if label < 5:
                folder = os.path.join(root, "digits", part, f"d{label}")
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.png"))
            if part == "test" and i < 12:
                os.makedirs(os.path.join(root, "images"), exist_ok=True)
                Image.fromarray(image).save(os.path.join(root, "images", f"digit_{i:02d}.png"))
    json.dump({"Known": ["d0", "d1", "d2", "d3"], "Unknown": ["d4"]}, open(os.path.join(root, "split.json"), "w"))


def predict_prints(checkpoint, work, env):
    rows = json.loads(run("predict.py", checkpoint, "images", "--format", "json", cwd=work, env=env))
    return {"threshold": rows["threshold"], "rows": sha(json.dumps(rows["predictions"]).encode())}


def fingerprint(work):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CAC_CACHE_DIR": os.path.join(work, "cache")}
    prints = {}
    common = ["--dataset", "Digits", "--trial", "0", "--name", "fp", "--workers", "0"]
    for script in ("train_cacOpenset.py", "train_closedSet.py"):
        run(script, *common, "--epochs", 3, cwd=work, env=env)
        run(script, *common, "-r", "--epochs", 2, cwd=work, env=env)
    for script in ("eval_cacOpenset.py", "eval_closedSet.py"):
        run(script, "-dataset", "Digits", "--num_trials", 1, "--name", "fp", "--workers", 0, cwd=work, env=env)
    write_pngs(work)
    for name in ("CACclassifierAnchorLoss", "closedSetClassifier", "CACclassifierCACLoss"):  # CACLoss: not evaluated
        path = os.path.join("networks", "weights", "Digits", f"Digits_0_fp{name}.pth")
        prints[f"predict {os.path.basename(path)}"] = predict_prints(path, work, env)
    folder = ["--dataset", "ImageFolder", "--data_root", "digits", "--split_file", "split.json", "--name", "fp",
              "--workers", "0"]
    run("train_cacOpenset.py", *folder, "--epochs", 2, cwd=work, env=env)
    run("eval_cacOpenset.py", *folder, "--num_trials", 1, cwd=work, env=env)
    prints["predict ImageFolder"] = predict_prints(os.path.join(
        "networks", "weights", "ImageFolder", "ImageFolder_0_fpCACclassifierAnchorLoss.pth"), work, env)

    for top, _, names in os.walk(os.path.join(work, "networks", "weights")):
        for name in sorted(names):
            if name.endswith(".pth"):
                prints[f"checkpoint {name}"] = checkpoint_prints(os.path.join(top, name))
    for top, _, names in os.walk(os.path.join(work, "runs")):
        for name in names:
            if name == "metrics.jsonl":
                prints[f"log {os.path.basename(top)}"] = [json.loads(line) for line in open(os.path.join(top, name))]
    for name in sorted(os.listdir(os.path.join(work, "results"))):
        path = os.path.join(work, "results", name)
        if name.endswith(".json"):
            prints[f"results {name}"] = {k: v for k, v in json.load(open(path)).items() if k in RESULT_KEYS}
        elif name.endswith(".npz"):
            prints[f"scores {name}"] = npz_prints(path, work)
    return prints


def compare(a_path, b_path):
    a, b = (json.load(open(path)) for path in (a_path, b_path))
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for key in differ:
        print(f"differs: {key}\n  {json.dumps(a.get(key))[:400]}\n  {json.dumps(b.get(key))[:400]}")
    print(f"{len(set(a) | set(b)) - len(differ)} of {len(set(a) | set(b))} entries identical")
    return 1 if differ else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the fingerprints here (JSON)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two fingerprint files")
    p.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    work = tempfile.mkdtemp(prefix="cac_fingerprint_")
    try:
        prints = fingerprint(work)
    finally:
        print(f"work folder: {work}") if args.keep else shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(prints, indent=1, sort_keys=True) + "\n")
    print(f"{len(prints)} entries" + (f" written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
