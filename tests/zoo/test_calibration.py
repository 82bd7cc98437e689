"""Thresholds for gates and exits: both sides populated, widest margin, refused when too tight."""

from __future__ import annotations

import pytest

from sod2.zoo.calibration import split_threshold, widest_gap_threshold
from sod2.zoo.errors import ExportError


def test_threshold_sits_in_the_widest_gap_with_a_third_on_each_side():
    values = [0.0, 0.1, 0.2, 1.0, 1.1, 1.2]
    assert split_threshold(values) == pytest.approx(0.6)


def test_threshold_ignores_wide_gaps_that_leave_a_side_too_small():
    values = [-10.0, 0.0, 0.1, 0.3, 0.4, 10.0]
    assert split_threshold(values) == pytest.approx(0.2)


def test_minimum_counts_per_side_are_honoured():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    threshold = split_threshold(values, min_below=4, min_above=2)
    assert 4 <= sum(value < threshold for value in values) <= 5


def test_a_gap_too_narrow_for_float32_is_refused():
    values = [1.0, 1.0 + 1e-9, 1.0 + 2e-9, 1.0 + 3e-9]
    with pytest.raises(ExportError, match="too narrow"):
        split_threshold(values)


def test_no_acceptable_threshold_is_refused():
    with pytest.raises(ExportError, match="no threshold"):
        widest_gap_threshold([1.0, 2.0, 3.0], lambda threshold: False)
