"""core/values.py: what counts as a number in JSON, checkpoints and logs a user can edit."""
import math

import pytest

from core.values import is_finite_number, is_number, is_whole_number

HUGE = 10 ** 400  # JSON allows it; float(HUGE) overflows


@pytest.mark.parametrize("value, whole, number, finite", [
    (3, True, True, True), (0, True, True, True), (-2, True, True, True),
    (2.5, False, True, True), (2.0, False, True, True),
    (True, False, False, False), (False, False, False, False),  # a bool is not a number here
    (math.inf, False, True, False), (-math.inf, False, True, False), (math.nan, False, True, False),
    (HUGE, True, True, False),  # a whole number, but not a finite float
    ("3", False, False, False), (None, False, False, False), ([1], False, False, False),
])
def test_number_kinds(value, whole, number, finite):
    assert (is_whole_number(value), is_number(value), is_finite_number(value)) == (whole, number, finite)


def test_a_huge_integer_never_raises():
    with pytest.raises(OverflowError):
        math.isfinite(HUGE)  # what the check must not let through
    assert is_finite_number(HUGE) is False
