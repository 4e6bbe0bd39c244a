"""Tests for values read from files a user can edit or damage (JSON, checkpoints, logs): a bool is not
a number, and an integer too large for a float (JSON allows thousands of digits) is not finite."""
import math


def is_whole_number(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value):
    if not is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
