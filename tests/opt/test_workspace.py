"""Workspace regions: free at their step, aligned, as wide as the widest free span, and the arena
grows only where a step has less than the minimum free."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.opt.workspace import ALIGN, Lifetimes, occupancy, workspace_regions


def lifetimes(starts, ends):
    count = len(starts)
    return Lifetimes(
        np.arange(count, dtype=np.int64),
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
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
        begin = -(-at // ALIGN) * ALIGN
        best = max(best, end - begin)
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
@given(storages, st.integers(0, 600), st.integers(1, 700))
def test_regions_are_free_aligned_and_widest(items, slack, minimum):
    starts = [s for s, _, _, _ in items]
    ends = [s + more for s, more, _, _ in items]
    offsets = np.array([o for _, _, o, _ in items], dtype=np.int64)
    sizes = np.array([n for _, _, _, n in items], dtype=np.int64)
    arena = int(max((offsets + sizes).max(initial=0), 0)) + slack
    steps = list(range(10))
    regions = workspace_regions(lifetimes(starts, ends), offsets, sizes, arena, steps, minimum)
    assert regions.arena_bytes >= arena
    for step in steps:
        start, width = regions.spans[step]
        assert start % ALIGN == 0 and width >= minimum
        assert start + width <= regions.arena_bytes
        occupied = np.zeros(regions.arena_bytes, dtype=bool)
        for k in range(len(items)):
            if starts[k] <= step <= ends[k]:
                occupied[offsets[k] : offsets[k] + sizes[k]] = True
        assert not occupied[start : start + width].any(), "a region overlaps a live storage"
        assert width == widest_free(occupied)


def test_arena_grows_only_by_what_a_full_step_lacks():
    # step 0: 0..1000 alive (full); step 1: nothing alive below 1000 but 200..300
    lt = lifetimes([0, 1], [0, 1])
    offsets = np.array([0, 200], dtype=np.int64)
    sizes = np.array([1000, 100], dtype=np.int64)
    regions = workspace_regions(lt, offsets, sizes, 1000, [0, 1], 512)
    top = -(-1000 // ALIGN) * ALIGN
    assert regions.arena_bytes == top + 512
    assert regions.spans[0] == (top, 512)
    assert regions.spans[1] == (320, regions.arena_bytes - 320)  # above 300, aligned


def test_no_growth_where_a_gap_is_wide_enough():
    lt = lifetimes([0, 0], [0, 0])
    offsets = np.array([0, 4096], dtype=np.int64)
    sizes = np.array([64, 64], dtype=np.int64)
    regions = workspace_regions(lt, offsets, sizes, 4160, [0], 1024)
    assert regions.arena_bytes == 4160
    assert regions.spans[0] == (64, 4096 - 64)


def test_occupancy_counts_the_storages_alive_at_each_step():
    # storage 0 lives at steps 0-1 (0..100), 1 at step 1 (300..350), 2 is empty at step 2
    lt = lifetimes([0, 1, 2], [1, 1, 2])
    offsets = np.array([0, 300, 500], dtype=np.int64)
    sizes = np.array([100, 50, 0], dtype=np.int64)
    assert occupancy(lt, offsets, sizes, [0, 1, 2]) == {0: (100, 100), 1: (150, 350), 2: (0, 0)}
