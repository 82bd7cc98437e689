"""Workspace regions: each step's planned workspace, or the widest free gap at its step where that
is wider; free at its step, aligned, never smaller than the planned storage."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.opt.workspace import ALIGN, Lifetimes, occupancy, widest_gap, workspace_regions


def lifetimes(starts, ends, workspace=None):
    count = len(starts)
    return Lifetimes(
        np.arange(count, dtype=np.int64),
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
        workspace or {},
    )


def widest_free(occupied: np.ndarray) -> int:
    """The widest run of free bytes that starts on an ALIGN boundary (brute force)."""
    best, at = 0, 0
    while at < len(occupied):
        if occupied[at]:
            at += 1
            continue
        end = at
        while end < len(occupied) and not occupied[end]:
            end += 1
        best = max(best, end - -(-at // ALIGN) * ALIGN)
        at = end
    return best


storages = st.lists(
    st.tuples(
        st.integers(0, 6),  # first step
        st.integers(0, 3),  # steps more
        st.integers(0, 1500),  # offset
        st.integers(0, 400),  # bytes
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(storages, st.integers(0, 6), st.integers(1, 300), st.integers(0, 2000), st.integers(0, 600))
def test_regions_are_free_aligned_and_the_widest_gap(items, step, size, seed, slack):
    starts = [s for s, _, _, _ in items]
    ends = [s + more for s, more, _, _ in items]
    offsets = [o for _, _, o, _ in items]
    sizes = [n for _, _, _, n in items]
    arena = max((o + n for o, n in zip(offsets, sizes, strict=True)), default=0) + slack
    occupied = np.zeros(arena + 2 * size + ALIGN, dtype=bool)
    for k in range(len(items)):
        if starts[k] <= step <= ends[k]:
            occupied[offsets[k] : offsets[k] + sizes[k]] = True
    # the plan put the workspace on an aligned free spot (or on top of everything)
    spots = [
        at
        for at in range(0, arena + ALIGN, ALIGN)
        if at + size <= len(occupied) and not occupied[at : at + size].any()
    ]
    at = spots[seed % len(spots)]
    lt = lifetimes(starts, ends, {step: len(items)})  # the workspace is storage len(items)
    all_offsets = np.array([*offsets, at], dtype=np.int64)
    all_sizes = np.array([*sizes, size], dtype=np.int64)
    top = max(arena, at + size)
    regions = workspace_regions(lt, all_offsets, all_sizes, top)
    begin, width = regions[step]
    assert begin % ALIGN == 0 and begin + width <= top
    assert not occupied[begin : begin + width].any(), "a region overlaps a live storage"
    assert width == max(size, widest_free(occupied[:top]))
    if width == size:
        assert begin == at  # the planned storage itself


def test_an_empty_workspace_gets_no_region():
    lt = lifetimes([0], [0], {0: 1})
    offsets = np.array([0, 128], dtype=np.int64)
    sizes = np.array([100, 0], dtype=np.int64)
    assert workspace_regions(lt, offsets, sizes, 128) == {}


def test_occupancy_counts_the_storages_alive_at_each_step():
    # storage 0 lives at steps 0-1 (0..100), 1 at step 1 (300..350), 2 is empty at step 2
    lt = lifetimes([0, 1, 2], [1, 1, 2])
    offsets = np.array([0, 300, 500], dtype=np.int64)
    sizes = np.array([100, 50, 0], dtype=np.int64)
    assert occupancy(lt, offsets, sizes, [0, 1, 2]) == {0: (100, 100), 1: (150, 350), 2: (0, 0)}


def test_widest_gap_at_a_step_of_any_kind():
    """The widest aligned run of bytes that nothing alive at a step holds, up to the arena's end,
    at a step with no workspace of its own (a control-flow node's, whose bodies may use it)."""
    # storage 0 (0..100) lives at steps 0-2, 1 (1000..1100) at step 1, 2 (200..900) at step 2
    lt = lifetimes([0, 1, 2], [2, 1, 2])
    offsets = np.array([0, 1000, 200], dtype=np.int64)
    sizes = np.array([100, 100, 700], dtype=np.int64)
    assert widest_gap(lt, offsets, sizes, 1100, 1) == (128, 1000 - 128)
    assert widest_gap(lt, offsets, sizes, 1100, 2) == (960, 140)
    assert widest_gap(lt, offsets, sizes, 1100, 5) == (0, 1100)
    assert widest_gap(lt, offsets, sizes, 50, 0) == (0, 0)  # nothing free
