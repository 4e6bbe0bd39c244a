"""engine/evaluation.py on its own: the network's outputs gathered in order, and non-finite
outputs refused before any metric (one line naming the checkpoint and the images)."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from engine.evaluation import check_finite_outputs, gather_outputs
from engine.report import ScorerOutput, TrialResult


def test_gather_outputs_keeps_order_and_tuple():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(10)), batch_size=4)
    net = torch.nn.Flatten()
    out, labels = gather_outputs(net, loader, "cpu")
    assert torch.equal(out.flatten(), torch.arange(10.0)) and torch.equal(labels, torch.arange(10))


def _result(unknown_score):
    known = np.array([0.1, 0.2])
    return TrialResult(trial=3, num_known=2, class_names=["a", "b"], known_labels=np.array([0, 1]),
                       known_logits=np.zeros((2, 2)), unknown_logits=np.zeros((2, 2)),
                       scores={"cac": ScorerOutput(np.array([0, 1]), known, np.array([0, 0]), unknown_score, known)},
                       metrics={}, seconds=0.0)


def test_non_finite_scores_are_one_line_naming_the_images():
    check_finite_outputs(_result(np.array([0.3, 0.4])), "c.pth")  # finite: nothing said
    with pytest.raises(UserError, match=r"^checkpoint c\.pth gives non-finite cac scores \(unknown images\) for 1 "
                                        r"of 2 images \(NaN or inf\) on trial 3: its weights overflow"):
        check_finite_outputs(_result(np.array([0.3, np.nan])), "c.pth")
