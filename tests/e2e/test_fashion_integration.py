"""Integration on real images: CAC and cross-entropy learn Fashion-MNIST's known classes.

A fixed subset of the real Fashion-MNIST (Debian's dataset-fashion-mnist) is written in
MNIST's file format; both methods train on it for a few epochs on the CPU through the
training scripts' main(), and are evaluated through the evaluation scripts' main(). The
floors sit below measured values with a safety margin (see FLOORS); a broken loss or data
pipeline falls far below them. CI installs the package and sets CAC_REQUIRE_FASHION=1 so
that a missing package fails instead of skipping.
"""
import json
import os
import struct

import numpy as np
import pytest

from datasets.sources import system_fashion_mnist
from fakedata import read_idx_gz

TRAIN_PER_CLASS = 300  # training images per class: 1800 of the 6 known classes, 20% of them for validation
TEST_PER_CLASS = 100  # test images per class: 600 known, 400 unknown
EPOCHS = 3  # at 16 x 16 pixels (--im_size 16): a quarter of the 32 x 32 network's work
# the clothes are known, the footwear and bags unknown (labels: 0 t-shirt, 1 trouser, 2 pullover, 3 dress,
# 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot): a split both methods can learn in two short
# epochs, so that their AUROC floors can sit well above chance
SPLIT = {"Known": [0, 1, 2, 3, 4, 6], "Unknown": [5, 7, 8, 9]}
# (closed-set accuracy, AUROC) floors, well above chance (accuracy 1/6, AUROC 0.5) and below the values
# measured on a 2-core CPU (trial 0's normalization, seed 0, resident pipeline, 2 threads, loaded machine):
#   CAC: accuracy 0.657, AUROC 0.811, best validation accuracy 67.2%
#   CE:  accuracy 0.648, AUROC 0.783, best validation accuracy 61.7%
FLOORS = {"CAC": (0.45, 0.65), "ClosedSet": (0.45, 0.65)}
# best validation accuracy (%) in training, against the training-time classifier (CAC: the nearest fixed
# anchor); a broken loss (the tuplet term's sign flipped) stays at chance, 16.7%
VAL_ACCURACY_FLOOR = 45.0


def write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_subset(tmp_path_factory):
    source = system_fashion_mnist()
    if not os.path.isfile(os.path.join(source, "train-labels-idx1-ubyte.gz")):
        if os.environ.get("CAC_REQUIRE_FASHION"):
            pytest.fail(f"Fashion-MNIST is not in {source}: apt-get install dataset-fashion-mnist")
        pytest.skip(f"Fashion-MNIST is not in {source} (apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("fashion")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, per_class in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        images = read_idx_gz(os.path.join(source, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx_gz(os.path.join(source, f"{prefix}-labels-idx1-ubyte.gz"))
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[keep], 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[keep], 2049)
    (root / "split.json").write_text(json.dumps(SPLIT))
    return str(root)


@pytest.mark.parametrize("method,train_module,eval_module", [
    ("CAC", "train_cacOpenset", "eval_cacOpenset"), ("ClosedSet", "train_closedSet", "eval_closedSet")])
def test_learns_real_images(fashion_subset, private_cache, tmp_path, monkeypatch, method, train_module,
                            eval_module):
    import importlib

    monkeypatch.chdir(tmp_path)
    common = ["--data_root", fashion_subset, "--seed", "0", "--no_download", "--workers", "0", "--name", "ci", "--im_size", "16",
              "--split_file", os.path.join(fashion_subset, "split.json")]
    importlib.import_module(train_module).main(
        ["--dataset", "FashionMNIST", "--trial", "0", "--epochs", str(EPOCHS), *common])
    result = importlib.import_module(eval_module).main(["-dataset", "FashionMNIST", "--num_trials", "1", *common])
    accuracy, auroc = result["raw_top1_accuracy"][0], result["raw_auroc"][0]
    with open(tmp_path / "runs" / f"FashionMNIST_0_ci{method}" / "metrics.jsonl") as f:
        epochs = [json.loads(line) for line in f]
    print(f"{method}: accuracy {accuracy:.4f}, AUROC {auroc:.4f}, per epoch {epochs}")
    assert len(epochs) == EPOCHS
    best_val = max(e["val/accuracy_percent"] for e in epochs)
    assert best_val >= VAL_ACCURACY_FLOOR, f"{method} best validation accuracy {best_val:.1f}% < {VAL_ACCURACY_FLOOR}%"
    floor_accuracy, floor_auroc = FLOORS[method]
    assert accuracy >= floor_accuracy, f"{method} closed-set accuracy {accuracy:.4f} < floor {floor_accuracy}"
    assert auroc >= floor_auroc, f"{method} AUROC {auroc:.4f} < floor {floor_auroc}"
