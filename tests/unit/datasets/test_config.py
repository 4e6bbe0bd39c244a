"""The data set configuration (datasets/config.py) as the trial reads it."""
import pytest

from core.errors import UserError
from datasets.trial import OpenSetData


def test_unknown_dataset_name():
    with pytest.raises(UserError) as err:
        OpenSetData("CIFAR11", 0)
    assert "CIFAR11" in str(err.value) and "MNIST" in str(err.value)
