"""engine.prediction: which files are read and in what order, each image converted as the
trial's test images were, a damaged image skipped with its reason, the rows scored, thresholded
and written as CSV or JSON that read back to the same values, and the checkpoint's calibration
checked before use."""
import csv
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
from engine.prediction import UnreadableImage, evaluate_command, find_images, predict, read_image, render


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


def test_load_predictor_refuses_a_checkpoint_without_a_valid_calibration(tmp_path):
    from networks.build import build_network
    from networks.checkpoint import save_checkpoint
    from networks.config import NetworkConfig

    net = build_network(NetworkConfig(3, 1, 8), "ClosedSet")
    path = str(tmp_path / "c.pth")
    save_checkpoint({"net": net.state_dict(), "dataset": "Digits", "trial": 0}, path)  # no training args
    with pytest.raises(UserError, match="has no calibration .*does not record its training data: .*"
                                        "eval_closedSet.py -dataset Digits"):
        prediction.load_predictor(path, torch.device("cpu"))
    cal = {**closed_set_cal(), "scorer": "max_softmax", "thresholds": {"max_softmax": -0.5}, "accept_rate": 0.95,
           "network": {"num_classes": 4, "num_channels": 1, "im_size": 8}}
    cal["class_names"].append("owl")
    save_checkpoint({"net": net.state_dict(), "calibration": cal}, path)
    with pytest.raises(UserError, match="invalid calibration \\(a network of 4 classes, not 3\\)"):
        prediction.load_predictor(path, torch.device("cpu"))
    cal["network"]["num_classes"], cal["class_names"] = 3, ["cat", "dog", "fox"]
    save_checkpoint({"net": net.state_dict(), "calibration": cal}, path)
    loaded, got = prediction.load_predictor(path, torch.device("cpu"))
    assert not loaded.training and got == cal
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
