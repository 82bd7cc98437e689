"""Concrete placement: greedy-by-size and online best-fit give valid placements above the live
bytes bound; the checker finds overlaps."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sod2.errors import Sod2Error
from sod2.opt import placement


@st.composite
def problems(draw):
    count = draw(st.integers(1, 25))
    steps = draw(st.integers(1, 12))
    start = np.array([draw(st.integers(0, steps - 1)) for _ in range(count)], dtype=np.int64)
    end = np.array([draw(st.integers(int(s), steps - 1)) for s in start], dtype=np.int64)
    size = np.array([64 * draw(st.integers(0, 20)) for _ in range(count)], dtype=np.int64)
    return start, end, size, steps


@given(problems())
def test_planners_are_valid_and_above_the_live_bytes_bound(problem):
    start, end, size, steps = problem
    bound = int(placement.live_bytes(start, end, size, steps).max())
    greedy = placement.greedy_by_size(start, end, size)
    placement.check_placement(start, end, size, greedy)
    offsets, arena = placement.online_best_fit(start, end, size)
    placement.check_placement(start, end, size, offsets, arena)
    assert placement.arena_size(greedy, size) >= bound
    assert arena >= bound
    assert arena <= int(size.sum())


def test_live_bytes_counts_both_ends():
    start, end, size = np.array([0, 1]), np.array([1, 2]), np.array([10, 5])
    assert placement.live_bytes(start, end, size, 3).tolist() == [10, 15, 5]


def test_live_bytes_of_many_bindings_are_columns():
    start, end = np.array([0, 1]), np.array([1, 2])
    sizes = np.array([[10, 1], [5, 7]])
    live = placement.live_bytes(start, end, sizes, 3)
    assert live[:, 0].tolist() == [10, 15, 5]
    assert live[:, 1].tolist() == [1, 8, 7]


def test_greedy_reuses_the_gap_of_a_dead_buffer():
    # a [0,0] 100 bytes, b [1,1] 60 bytes, c [0,1] 10 bytes: b fits where a was
    start, end, size = np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([100, 60, 10])
    offsets = placement.greedy_by_size(start, end, size)
    assert placement.arena_size(offsets, size) == 110
    assert offsets[1] == offsets[0]


def test_floor_keeps_a_buffer_above_an_offset():
    start, end, size = np.array([0]), np.array([0]), np.array([8])
    assert placement.greedy_by_size(start, end, size, floor=np.array([128])).tolist() == [128]


def test_overlap_is_reported_with_both_buffers():
    start, end, size = np.array([0, 0]), np.array([1, 1]), np.array([64, 64])
    with pytest.raises(Sod2Error, match="buffers 0 and 1"):
        placement.check_placement(start, end, size, np.array([0, 32]))


def _greedy_by_size_oracle(start, end, size, floor=None, order=None):
    """Greedy-by-size as the paper states it: for each buffer (largest first), sort the placed
    buffers that conflict with it by offset and take the smallest gap that fits, else the top."""
    count = len(size)
    if order is None:
        order = sorted(range(count), key=lambda b: (-int(size[b]), b))
    offset = [-1] * count
    placed: list[int] = []
    for b in order:
        low = 0 if floor is None else int(floor[b])
        others = sorted(
            (a for a in placed if start[a] <= end[b] and end[a] >= start[b]),
            key=lambda a: (offset[a], a),
        )
        best, best_gap, reach = None, None, low
        for a in others:
            gap = offset[a] - reach
            if gap >= size[b] and (best_gap is None or gap < best_gap):
                best, best_gap = reach, gap
            reach = max(reach, offset[a] + int(size[a]))
        offset[b] = reach if best is None else best
        placed.append(b)
    return offset


@given(problems(), st.data())
def test_greedy_by_size_matches_the_textbook_loop(problem, data):
    start, end, size, _ = problem
    count = len(size)
    floor = data.draw(st.none() | st.lists(st.integers(0, 4), min_size=count, max_size=count))
    floor = None if floor is None else np.array(floor, dtype=np.int64) * 64
    order = data.draw(st.none() | st.permutations(range(count)))
    order = None if order is None else np.array(order[: data.draw(st.integers(0, count))])
    got = placement.greedy_by_size(start, end, size, floor=floor, order=order)
    assert got.tolist() == _greedy_by_size_oracle(start, end, size, floor, order)
