"""Concrete memory placement: where buffers of known sizes and lifetimes go in one arena.

These are the planners that re-plan for every input, the baselines a symbolic plan is measured
against, and the building block the symbolic planner (`sod2.opt.memory_plan`) uses at sample
bindings. A problem is given as numpy arrays over buffers `b`: `start[b]`, `end[b]` (steps,
inclusive) and `size[b]` (bytes). Two buffers *conflict* when their lifetimes intersect; a placement
is valid when conflicting buffers occupy disjoint byte ranges `[offset, offset + size)`.

- `greedy_by_size`: TFLite's planner (Pisarchyk and Lee, "Efficient Memory Management for Deep
  Neural Net Inference", 2020): largest buffer first, each into the smallest gap left between the
  conflicting buffers already placed, else on top of them.
- `online_best_fit`: what a caching allocator does while the model runs (onnxruntime's BFC arena):
  in execution order, a step's new buffers take the smallest free block that fits (else the arena
  grows at its top), and buffers whose lifetime ended are freed after the step, merging neighbours.
- `live_bytes`: the bytes alive at each step; its maximum is a lower bound for every placement.

Invariant: every function returns offsets of a valid placement (`check_placement` verifies one).
"""

from __future__ import annotations

import numba
import numpy as np

from sod2.errors import Sod2Error


def live_bytes(start: np.ndarray, end: np.ndarray, size: np.ndarray, steps: int) -> np.ndarray:
    """Bytes alive at each of `steps` steps (a buffer counts from `start` to `end` inclusive).
    `size` may have a column per binding (`size[b, k]`); then so has the result (`[step, k]`)."""
    delta = np.zeros((steps + 1, *size.shape[1:]), dtype=np.int64)
    np.add.at(delta, np.clip(start, 0, steps), size)
    np.add.at(delta, np.clip(end + 1, 0, steps), -size)
    return np.cumsum(delta, axis=0)[:steps]


def conflicts(start: np.ndarray, end: np.ndarray, b: int) -> np.ndarray:
    """Boolean mask of the buffers whose lifetime intersects buffer `b`'s."""
    return (start <= end[b]) & (end >= start[b])


def greedy_by_size(
    start: np.ndarray,
    end: np.ndarray,
    size: np.ndarray,
    *,
    floor: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Offsets by TFLite's greedy-by-size (see the module docstring).

    `order` overrides the placing order (default: by size, largest first, ties by index);
    `floor[b]`, when given, is the lowest offset buffer `b` may take. Returns int64 offsets
    (-1 for a buffer `order` leaves out).
    """
    count = len(size)
    if order is None:
        order = np.lexsort((np.arange(count), -size))
    lows = np.zeros(count, dtype=np.int64) if floor is None else np.asarray(floor, dtype=np.int64)
    return _greedy(
        np.asarray(start, dtype=np.int64),
        np.asarray(end, dtype=np.int64),
        np.asarray(size, dtype=np.int64),
        lows,
        np.asarray(order, dtype=np.int64),
    )


@numba.njit(cache=True)
def _greedy(start, end, size, floor, order):  # type: ignore[no-untyped-def]
    """greedy_by_size's loop. The buffers placed so far are kept sorted by (offset, index), so
    the gaps between those that conflict with the next buffer come out of one sweep: a gap runs
    from the highest end seen so far (at least the buffer's floor) to the next conflicting offset;
    the smallest gap that fits wins (the lowest on ties), else the buffer goes on top."""
    count = len(size)
    offset = np.full(count, -1, dtype=np.int64)
    placed = np.empty(count, dtype=np.int64)  # buffer ids sorted by (offset, id)
    placed_count = 0
    for b in order:
        need = size[b]
        reach = floor[b]  # where the next gap starts
        best = -1
        best_gap = np.int64(0)
        for k in range(placed_count):
            other = placed[k]
            if start[other] > end[b] or end[other] < start[b]:
                continue
            gap = offset[other] - reach
            if gap >= need and (best < 0 or gap < best_gap):
                best = reach
                best_gap = gap
            reach = max(reach, offset[other] + size[other])
        offset[b] = best if best >= 0 else reach
        at = placed_count  # insert b, keeping (offset, id) order
        while at > 0 and (
            offset[placed[at - 1]] > offset[b]
            or (offset[placed[at - 1]] == offset[b] and placed[at - 1] > b)
        ):
            placed[at] = placed[at - 1]
            at -= 1
        placed[at] = b
        placed_count += 1
    return offset


def online_best_fit(start: np.ndarray, end: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, int]:
    """Offsets and arena size of a best-fit allocator run in execution order (module docstring)."""
    count = len(size)
    offset = np.zeros(count, dtype=np.int64)
    free: list[tuple[int, int]] = []  # (offset, size), sorted by offset, coalesced
    top = 0
    starting: dict[int, list[int]] = {}
    for b in range(count):
        starting.setdefault(int(start[b]), []).append(b)
    by_end = sorted(range(count), key=lambda b: (end[b], b))
    freed = 0
    for step in sorted(set(start.tolist()) | set(end.tolist())):
        for b in starting.get(step, ()):
            need = int(size[b])
            fits = [i for i, (_, s) in enumerate(free) if s >= need]
            if fits:
                i = min(fits, key=lambda i: (free[i][1], free[i][0]))
                at, s = free[i]
                offset[b] = at
                free[i : i + 1] = [(at + need, s - need)] if s > need else []
            elif free and free[-1][0] + free[-1][1] == top:
                offset[b] = free[-1][0]
                top = offset[b] + need
                free.pop()
            else:
                offset[b] = top
                top += need
        while freed < count and end[by_end[freed]] <= step:
            b = by_end[freed]
            freed += 1
            free = _release(free, int(offset[b]), int(size[b]))
    return offset, top


def _release(free: list[tuple[int, int]], at: int, size: int) -> list[tuple[int, int]]:
    """`free` with `[at, at + size)` returned to it, merged with adjacent blocks."""
    if size == 0:
        return free
    blocks = sorted([*free, (at, size)])
    merged: list[tuple[int, int]] = []
    for block_at, block_size in blocks:
        if merged and merged[-1][0] + merged[-1][1] == block_at:
            merged[-1] = (merged[-1][0], merged[-1][1] + block_size)
        else:
            merged.append((block_at, block_size))
    return merged


def arena_size(offset: np.ndarray, size: np.ndarray) -> int:
    """The bytes an arena needs to hold every buffer at its offset."""
    return int((offset + size).max()) if len(size) else 0


def check_placement(
    start: np.ndarray,
    end: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    arena: int | None = None,
) -> None:
    """Raise `Sod2Error` naming the first two conflicting buffers whose bytes overlap, or a buffer
    outside `[0, arena)`."""
    if len(size) and (offset.min() < 0 or (arena is not None and arena_size(offset, size) > arena)):
        raise Sod2Error(f"a buffer lies outside the arena of {arena} bytes")
    for b in range(len(size)):
        if size[b] == 0:
            continue
        mask = conflicts(start, end, b) & (size > 0)
        mask[b] = False
        overlap = mask & (offset < offset[b] + size[b]) & (offset + size > offset[b])
        if overlap.any():
            other = int(np.flatnonzero(overlap)[0])
            raise Sod2Error(
                f"buffers {b} and {other} are alive together and overlap: [{offset[b]}, "
                f"{offset[b] + size[b]}) and [{offset[other]}, {offset[other] + size[other]})"
            )
