"""engine.prediction: which files are read and in what order, each image converted as the
trial's test images were, a damaged image skipped with its reason, the rows scored, thresholded
and written as CSV or JSON that read back to the same values; the calibration: the one beside
the checkpoint, else an earlier version's inside it, else made on first use from the training
data (its thresholds and anchor means recomputed here with numpy), the checkpoint never written;
where relative training data paths are found."""
import csv
import hashlib
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import engine.prediction as prediction
from core.errors import UserError
from engine.calibration import calibration_path
from engine.prediction import (UnreadableImage, evaluate_command, find_images, predict, read_image, render,
                               training_args)
from networks.build import build_network
from networks.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from networks.config import NetworkConfig
from networks.weights import CAC, RUN_FILES, weights_path


def touch(path, content=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


def test_find_images_walks_folders_in_sorted_order_and_skips_other_files(tmp_path):
    root = str(tmp_path / "in")
    for name in ("b.png", "a.JPG", "notes.txt", os.path.join("z", "c.webp"), os.path.join("m", "d.bmp"),
                 os.path.join("m", "e.csv"), os.path.join("m", "n", "f.jpeg")):
        touch(os.path.join(root, name))
    single = touch(str(tmp_path / "given.dat"))  # named on the command line: read whatever its name
    found = find_images([single, root])
    assert found == [single, os.path.join(root, "a.JPG"), os.path.join(root, "b.png"),
                     os.path.join(root, "m", "d.bmp"), os.path.join(root, "m", "n", "f.jpeg"),
                     os.path.join(root, "z", "c.webp")]


def test_find_images_refuses_a_missing_path_and_a_folder_without_images(tmp_path):
    touch(str(tmp_path / "a.png"))
    missing = str(tmp_path / "nope.png")
    with pytest.raises(UserError, match=f"no such image file or folder: {missing}"):
        find_images([str(tmp_path / "a.png"), missing])
    empty = str(tmp_path / "empty")
    touch(os.path.join(empty, "readme.txt"))
    with pytest.raises(UserError, match="no image files .*\\.png.* in .*empty"):
        find_images([empty])


def save(path, size, colour, mode="RGB"):
    Image.new(mode, size, colour).save(path)
    return str(path)


def test_read_image_converts_to_grey_and_the_trained_size(tmp_path):
    path = save(tmp_path / "wide.png", (20, 10), (200, 100, 50))
    x = read_image(path, {"im_size": 8, "im_channels": 1}, T.ToTensor())
    # ITU-R 601 luma, as PIL's "L": (200 * 299 + 100 * 587 + 50 * 114) / 1000 = 124.2 -> 124
    assert x.shape == (1, 8, 8) and torch.all(x == 124 / 255)


def test_read_image_converts_grey_to_rgb(tmp_path):
    path = save(tmp_path / "grey.png", (9, 30), 77, mode="L")
    x = read_image(path, {"im_size": 16, "im_channels": 3}, T.ToTensor())
    assert x.shape == (3, 16, 16) and torch.all(x == 77 / 255)


def test_read_image_takes_the_centre_square(tmp_path):
    image = np.zeros((8, 24), dtype=np.uint8)  # 8 high, 24 wide: thirds 0 | 255 | 0
    image[:, 8:16] = 255
    path = str(tmp_path / "thirds.png")
    Image.fromarray(image).save(path)
    x = read_image(path, {"im_size": 8, "im_channels": 1}, T.ToTensor())
    assert x.shape == (1, 8, 8) and torch.all(x == 1.0)  # the white middle third only


@pytest.mark.parametrize("content,kind", [(b"not an image at all", "UnidentifiedImageError"),
                                          (None, "OSError")])
def test_read_image_names_a_damaged_file_and_why(tmp_path, content, kind):
    path = str(tmp_path / "bad.png")
    if content is None:  # a real PNG cut in half
        save(path, (64, 64), (1, 2, 3))
        with open(path, "rb") as f:
            whole = f.read()
        content = whole[:len(whole) // 2]
    touch(path, content)
    with pytest.raises(UnreadableImage) as skipped:
        read_image(path, {"im_size": 8, "im_channels": 1}, T.ToTensor())
    message = str(skipped.value)
    assert message.startswith(f"cannot read image {path} ({kind}"), message
    assert "\n" not in message


@pytest.mark.parametrize("limit", [150, 60])  # 200 pixels: PIL warns above 1x its limit, refuses above 2x
def test_read_image_refuses_an_image_over_the_decompression_limit(tmp_path, monkeypatch, limit):
    path = save(tmp_path / "big.png", (20, 10), (0, 0, 0))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(UnreadableImage) as skipped:
        read_image(path, {"im_size": 8, "im_channels": 1}, T.ToTensor())
    assert str(skipped.value) == (f"image {path} has 200 pixels, over PIL's decompression-bomb limit of "
                                  f"{limit} pixels (downscale it first)")


def closed_set_cal(names=("cat", "dog", "fox")):
    return {"method": "ClosedSet", "class_names": list(names),
            "preprocessing": {"im_size": 8, "im_channels": 1, "mean": [0.0], "std": [1.0]}}


def brightness_net(images):
    """Logits (brightness * 10, 5, 0): bright images are class 0, dark ones class 1."""
    b = images.mean((1, 2, 3))
    return torch.stack([b * 10, torch.full_like(b, 5.0), torch.zeros_like(b)], 1)


def test_predict_scores_thresholds_and_skips_in_the_order_of_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(prediction, "BATCH", 2)  # rows cross batches
    levels = [255, 0, 153, 26]
    files = [save(tmp_path / f"{i}.png", (8, 8), level, mode="L") for i, level in enumerate(levels)]
    broken = touch(str(tmp_path / "broken.png"), b"junk")
    files.insert(2, broken)
    rows, skipped = predict(brightness_net, closed_set_cal(), files, "max_softmax", threshold=-0.9,
                            device=torch.device("cpu"))
    assert [r["image"] for r in rows] == [f for f in files if f != broken]
    assert len(skipped) == 1 and skipped[0].startswith(f"cannot read image {broken}")
    for row, level in zip(rows, levels):
        logits = np.array([level / 255 * 10, 5.0, 0.0])
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert row["closest_class"] == ["cat", "dog", "fox"][int(np.argmax(logits))]
        assert row["score"] == pytest.approx(-probs.max(), abs=1e-6)
        assert row["prediction"] == (row["closest_class"] if -probs.max() <= -0.9 else "unknown")
    assert [r["prediction"] for r in rows] == ["cat", "dog", "unknown", "dog"]  # 0.6 * 10 = 6 vs 5: unsure


def test_predict_refuses_a_non_finite_score(tmp_path):
    files = [save(tmp_path / f"{i}.png", (8, 8), 9, mode="L") for i in range(2)]

    def overflowing(images):
        logits = brightness_net(images)
        logits[1, 0] = float("nan")
        return logits

    with pytest.raises(UserError, match=f"gives a non-finite score .* for image {files[1]}"):
        predict(overflowing, closed_set_cal(), files, "max_logit", 0.0, torch.device("cpu"), checkpoint="c.pth")


ROWS = [{"image": "a, b.png", "prediction": "cat", "score": -0.98, "closest_class": "cat"},
        {"image": 'say "hi".png', "prediction": "unknown", "score": -0.5, "closest_class": "dog"}]


def test_render_csv_reads_back_to_the_rows():
    text = render(ROWS, "csv", {"checkpoint": "c.pth"})
    assert text.splitlines()[0] == "image,prediction,score,closest_class"
    back = list(csv.DictReader(io.StringIO(text)))
    assert [{**r, "score": float(r["score"])} for r in back] == ROWS
    assert render([], "csv", {}) == "image,prediction,score,closest_class\n"


def test_render_json_reads_back_to_the_meta_and_rows():
    meta = {"checkpoint": "c.pth", "scorer": "max_softmax", "threshold": -0.9}
    text = render(ROWS, "json", meta)
    assert text.endswith("\n") and json.loads(text) == {**meta, "predictions": ROWS}
    with pytest.raises(ValueError):  # never a NaN in the JSON
        render([{**ROWS[0], "score": float("nan")}], "json", meta)


def test_evaluate_command_names_the_script_the_run_and_its_data_flags():
    cac = {"net": {"anchors": torch.eye(2)}, "dataset": "MNIST", "trial": 3, "args": {"name": "mine"}}
    assert evaluate_command(cac, "x.pth") == \
        "`python eval_cacOpenset.py -dataset MNIST --start_trial 3 --num_trials 1 --name mine`"
    assert evaluate_command({"net": {"means": torch.eye(2)}}, "x.pth").startswith("`python eval_cacOpenset.py ...`")
    # the original code's files record nothing: data set, trial and name from the file's name
    assert evaluate_command({"net": {"means": torch.eye(2)}}, "w/CIFAR+10_4_CACclassifierAnchorLoss.pth") == \
        "`python eval_cacOpenset.py -dataset CIFAR+10 --start_trial 4 --num_trials 1 --name ''`"
    closed = {"net": {"classify.weight": torch.zeros(2, 2)}, "dataset": "ImageFolder", "trial": 0,
              "args": {"name": "my run", "data_root": "../pets", "split_file": "s.json", "im_size": 16,
                       "im_channels": None}}
    assert evaluate_command(closed, "x.pth") == (
        "`python eval_closedSet.py -dataset ImageFolder --start_trial 0 --num_trials 1 --name 'my run' "
        "--data_root ../pets --split_file s.json --im_size 16`")


# ---------------------------------------------------------------- the calibration

def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def untrained_digits_checkpoint(method, name="u", seed=0):
    """A Digits trial 0 checkpoint (under the working directory) of a seeded, freshly initialized
    network, recording its training data as training does; returns its path."""
    torch.manual_seed(seed)
    config = NetworkConfig(num_classes=6, num_channels=1, im_size=16, dropout=0.2)
    net = build_network(config, method, init_weights=True)
    path = weights_path("Digits", 0, name, RUN_FILES[method][0])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    args = {"dataset": "Digits", "trial": 0, "name": name, "workers": 0}
    save_checkpoint(make_checkpoint(net, 10.0, 0, config, method, "Digits", 0, [2, 3, 4, 5, 6, 7], args, None), path)
    return path


@torch.no_grad()
def logits_and_labels(net, dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    out = net(torch.stack(images))
    return (out[0] if isinstance(out, tuple) else out).double().numpy(), np.asarray(labels)


def accepting(scores, rate):
    """The smallest score t with at least `rate` of the scores <= t, by trying each."""
    return min(t for t in scores if np.mean(scores <= t) >= rate)


@pytest.mark.parametrize("method", ["CAC", "ClosedSet"])
def test_first_use_calibration_thresholds_accept_95_percent_of_the_validation_images(
        method, tmp_path, monkeypatch, private_cache, capsys):
    from datasets.trial import OpenSetData

    monkeypatch.chdir(tmp_path)
    path = untrained_digits_checkpoint(method)
    before = sha256(path)
    _, cal = prediction.load_predictor(path, torch.device("cpu"))
    assert sha256(path) == before  # the checkpoint is never written
    assert capsys.readouterr().err.splitlines()[-1] == f"calibration written to {calibration_path(path)}"
    with open(calibration_path(path)) as f:
        assert json.load(f) == cal and cal["checkpoint_sha256"] == before

    # independently: the network's outputs on the trial's images, then numpy
    data = OpenSetData("Digits", 0)
    assert data.cfg["anchor_flip"] is False  # digits: no flipped copies in the anchor pass
    net = build_network(NetworkConfig(6, 1, 16, 0.2), method)
    load_checkpoint(path, net)
    val, _ = logits_and_labels(net.eval(), data.val_dataset())
    if method == CAC:
        train, labels = logits_and_labels(net, data.anchor_dataset())
        correct = train.argmax(1) == labels
        means = np.stack([train[(labels == c) & correct].mean(0) if ((labels == c) & correct).any()
                          else train[labels == c].mean(0) for c in range(6)])
        np.testing.assert_allclose(cal["anchor_means"]["means"], means, rtol=1e-9, atol=1e-12)
        d = np.sqrt(((val[:, None, :] - means[None]) ** 2).sum(2))
        softmin = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
        scores = {"cac": (d * (1 - softmin)).min(1), "min_distance": d.min(1)}
    else:
        p = np.exp(val - val.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        scores = {"max_softmax": -p.max(1), "max_logit": -val.max(1)}
    assert set(cal["thresholds"]) == set(scores) and len(val) == 151
    for name, s in scores.items():
        expected = accepting(s, 0.95)
        assert cal["thresholds"][name] == pytest.approx(expected, rel=1e-6), name
        assert accepting(s, 0.93) != pytest.approx(expected, rel=1e-6) != accepting(s, 0.97)  # it tells them apart

    # the second use reads it: nothing made, nothing written
    mtime = os.stat(calibration_path(path)).st_mtime_ns
    assert prediction.load_predictor(path, torch.device("cpu"))[1] == cal
    assert capsys.readouterr().err == "" and os.stat(calibration_path(path)).st_mtime_ns == mtime
    assert sha256(path) == before


def test_a_calibration_of_other_weights_is_made_again(tmp_path, monkeypatch, private_cache, capsys):
    monkeypatch.chdir(tmp_path)
    path = untrained_digits_checkpoint(CAC, seed=0)
    first = prediction.load_predictor(path, torch.device("cpu"))[1]
    untrained_digits_checkpoint(CAC, seed=1)  # retrained: other weights in the same file
    capsys.readouterr()
    second = prediction.load_predictor(path, torch.device("cpu"))[1]
    err = capsys.readouterr().err
    assert "warning: calibration" not in err and f"calibration of {path} made in" in err  # stale, not damaged
    assert second["checkpoint_sha256"] == sha256(path) != first["checkpoint_sha256"]
    assert second["thresholds"] != first["thresholds"]


def closed_set_checkpoint(tmp_path, **extra):
    """A 3-class cross-entropy checkpoint that records no training data (as the original code's)."""
    net = build_network(NetworkConfig(3, 1, 8), "ClosedSet")
    path = str(tmp_path / "c.pth")
    save_checkpoint({"net": net.state_dict(), "dataset": "Digits", "trial": 0, **extra}, path)
    return net, path


def valid_closed_set_cal(**change):
    return {**closed_set_cal(), "scorer": "max_softmax", "thresholds": {"max_softmax": -0.5}, "accept_rate": 0.95,
            "network": {"num_classes": 3, "num_channels": 1, "im_size": 8}, **change}


def test_without_a_calibration_or_training_data_the_eval_command_is_named(tmp_path):
    _, path = closed_set_checkpoint(tmp_path)
    with pytest.raises(UserError, match="has no calibration .*does not record its training data: .*"
                                        "eval_closedSet.py -dataset Digits") as refused:
        prediction.load_predictor(path, torch.device("cpu"))
    assert "\n" not in str(refused.value)
    _, path = closed_set_checkpoint(tmp_path, args={"dataset": "Digits"})  # args without the trial: not enough
    with pytest.raises(UserError, match="does not record its training data"):
        prediction.load_predictor(path, torch.device("cpu"))
    with open(calibration_path(path), "w") as f:
        f.write("{not json")
    with pytest.raises(UserError, match="has no usable calibration \\(calibration .*c.calibration.json cannot be "
                                        "read .*\\) and does not record its training data: .*eval_closedSet.py"):
        prediction.load_predictor(path, torch.device("cpu"))
    os.remove(calibration_path(path))
    _, path = closed_set_checkpoint(tmp_path, calibration=valid_closed_set_cal(
        network={"num_classes": 4, "num_channels": 1, "im_size": 8}, class_names=["a", "b", "c", "d"]))
    with pytest.raises(UserError, match="has no calibration"):  # an earlier version's, for 4 classes: not usable
        prediction.load_predictor(path, torch.device("cpu"))


def test_a_calibration_an_earlier_version_stored_inside_is_used_and_nothing_written(tmp_path):
    net, path = closed_set_checkpoint(tmp_path, calibration=valid_closed_set_cal())
    before = sha256(path)
    loaded, cal = prediction.load_predictor(path, torch.device("cpu"))
    assert not loaded.training and cal == valid_closed_set_cal()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    assert sha256(path) == before and os.listdir(tmp_path) == ["c.pth"]


def test_the_file_beside_is_preferred_to_the_one_inside(tmp_path):
    _, path = closed_set_checkpoint(tmp_path, calibration=valid_closed_set_cal())
    beside = valid_closed_set_cal(thresholds={"max_softmax": -0.25}, checkpoint_sha256=sha256(path))
    with open(calibration_path(path), "w") as f:
        json.dump(beside, f)
    assert prediction.load_predictor(path, torch.device("cpu"))[1] == beside


def test_relative_data_paths_are_found_from_the_folder_training_ran_in(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (tmp_path / "split.json").write_text("{}")
    path = str(run / weights_path("ImageFolder", 0, "m", RUN_FILES[CAC][0]))
    ckpt = {"args": {"dataset": "ImageFolder", "trial": 0, "data_root": "data", "split_file": "../split.json"}}
    monkeypatch.chdir(tmp_path)
    args = training_args(ckpt, path)
    assert args.data_root == os.path.join(str(run), "data") and os.path.isdir(args.data_root)
    assert os.path.samefile(args.split_file, tmp_path / "split.json")
    assert args.pipeline == "torchvision" and args.workers is None  # defaults for older args
    given = training_args(ckpt, path, data_root="elsewhere", split_file="s.json")
    assert (given.data_root, given.split_file) == ("elsewhere", "s.json")
    assert training_args(ckpt, str(tmp_path / "loose.pth")).data_root == "data"  # not under networks/weights


def test_the_caches_go_to_this_machines_cache_folder_not_the_one_training_used():
    ckpt = {"args": {"dataset": "Digits", "trial": 0, "cache_dir": "/the/training/machine/cache"}}
    assert training_args(ckpt, "x.pth").cache_dir is None  # then $CAC_CACHE_DIR or the default
    assert training_args(ckpt, "x.pth", cache_dir="mine").cache_dir == "mine"  # predict.py --cache_dir
