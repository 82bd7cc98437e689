"""Calibrating hard gates and exit thresholds so that each takes both decisions over a sweep.

A trained gate decides by its learned weights; a gate with seeded random weights would decide the
same way for almost every input. Like RaNet and MSDNet, which set their exit thresholds on a
held-out set to meet a budget, each zoo network sets the offset of every gate on the inputs of its
own sweep: the threshold falls in the widest gap between the gate's values near the middle, so
some sweep inputs fall on each side, with the largest margin against rounding differences between
torch and onnxruntime.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from sod2.zoo.errors import ExportError

MIN_GAP_TO_MAGNITUDE = 1e-4
MIN_GAP = 1e-6


def split_threshold(
    values: Sequence[float],
    min_below: int | None = None,
    min_above: int | None = None,
    what: str = "gate",
) -> float:
    """A threshold with at least `min_below` of `values` under it and `min_above` over it (each
    defaults to a third of them), at the middle of the widest gap among such splits."""
    third = max(1, len(values) // 3)
    below = third if min_below is None else min_below
    above = third if min_above is None else min_above

    def balanced(threshold: float) -> bool:
        over = sum(value > threshold for value in values)
        return over >= above and len(values) - over >= below

    return widest_gap_threshold(values, balanced, what)


def widest_gap_threshold(
    values: Sequence[float], acceptable: Callable[[float], bool], what: str = "gate"
) -> float:
    """The midpoint of the widest gap between consecutive sorted `values` that is `acceptable`.

    Every value then lies at least half that gap away from the threshold. Raises `ExportError`
    when the widest acceptable gap is under 1e-6 plus 1e-4 of the values' magnitude: float32
    rounding in torch and onnxruntime could then flip a decision.
    """
    ordered = sorted(set(values))
    gaps = [
        (high - low, (low + high) / 2.0, low, high)
        for low, high in itertools.pairwise(ordered)
        if acceptable((low + high) / 2.0)
    ]
    if not gaps:
        raise ExportError(
            f"{what}: no threshold between {len(ordered)} distinct values is acceptable"
        )
    width, threshold, low, high = max(gaps)
    magnitude = max(abs(low), abs(high))
    if width <= MIN_GAP + MIN_GAP_TO_MAGNITUDE * magnitude:
        raise ExportError(f"{what}: the widest acceptable gap, {low} to {high}, is too narrow")
    return threshold
