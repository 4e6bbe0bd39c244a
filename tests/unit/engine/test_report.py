"""engine/report.py on its own: the per-image .npz of typed trial results (its keys, in order)
and the mean ± std summary over trials."""
import numpy as np
import pytest

from engine.report import ScorerOutput, TrialResult, summarize, write_scores
from metrics import METRIC_LABELS


def _result(trial, accuracy, anchors=None):
    arrays = [np.arange(2) + trial, np.array([0.1, 0.2]), np.array([1, 1]), np.array([0.5, 0.6]), np.array([0.3])]
    return TrialResult(trial=trial, num_known=2, class_names=["a", "b"], known_labels=np.array([0, 1]),
                       known_logits=np.ones((2, 2)), unknown_logits=np.zeros((2, 2)),
                       scores={"cac": ScorerOutput(*arrays)}, metrics={"cac": dict.fromkeys(METRIC_LABELS, accuracy)},
                       seconds=1.0, anchors=anchors)


def test_scores_file_keys_and_values(tmp_path):
    path = write_scores([_result(0, 0.5, anchors=np.eye(2)), _result(1, 0.7)], str(tmp_path / "s.npz"))
    z = np.load(path)
    per_scorer = ["known_pred", "known_score", "unknown_pred", "unknown_score", "val_score"]
    assert z.files == (["trial0_known_labels", "trial0_unknown_labels", "trial0_known_logits", "trial0_unknown_logits",
                        "trial0_anchors"] + [f"trial0_cac_{k}" for k in per_scorer] +
                       ["trial1_known_labels", "trial1_unknown_labels", "trial1_known_logits",
                        "trial1_unknown_logits"] + [f"trial1_cac_{k}" for k in per_scorer])
    assert z["trial1_unknown_labels"].tolist() == [2, 2] and z["trial1_cac_known_pred"].tolist() == [1, 2]
    assert np.array_equal(z["trial0_anchors"], np.eye(2))


def test_summary_is_mean_and_population_std_over_trials():
    summary = summarize([_result(0, 0.5), _result(1, 0.7)], ["cac"])
    assert summary["scorers"] == ["cac"] and summary["metrics"]["cac"]["auroc"] == [0.5, 0.7]
    assert summary["summary"]["cac"]["oscr"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1)}


def test_scores_file_names_each_test_images_original_class_and_file(tmp_path):
    from datasets.classnames import TrialClasses

    result = _result(0, 0.5)
    result.classes = TrialClasses(known=[3, 7], known_names=["cat", "dog"], unknown=[9, 1], unknown_names=["fox", "yak"],
                                  known_image_classes=np.array([7, 3]), unknown_image_classes=np.array([1, 9]),
                                  known_paths=["t/dog/0.png", "t/cat/0.png"], unknown_paths=["t/yak/a.png", "t/fox/b.png"])
    z = np.load(write_scores([result], str(tmp_path / "s.npz")))  # no allow_pickle: plain str arrays
    assert z.files[:10] == [f"trial0_{k}" for k in ("known_labels", "unknown_labels", "known_logits", "unknown_logits")] + \
        [f"trial0_cac_{k}" for k in ("known_pred", "known_score", "unknown_pred", "unknown_score", "val_score")] + \
        ["trial0_class_names"]
    assert z["trial0_unknown_labels"].tolist() == [2, 2]  # kept as it was
    assert z["trial0_class_names"].tolist() == ["cat", "dog"]
    assert z["trial0_known_classes"].tolist() == [7, 3] and z["trial0_unknown_classes"].tolist() == [1, 9]
    assert z["trial0_known_class_names"].tolist() == ["dog", "cat"]
    assert z["trial0_unknown_class_names"].tolist() == ["yak", "fox"]
    assert z["trial0_unknown_paths"].tolist() == ["t/yak/a.png", "t/fox/b.png"]
    assert result.classes.as_json() == {"known_classes": [3, 7], "known_class_names": ["cat", "dog"],
                                        "unknown_classes": [9, 1], "unknown_class_names": ["fox", "yak"]}
