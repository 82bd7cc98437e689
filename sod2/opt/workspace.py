"""Kernel workspace in the arena: each step's scratch goes where the plan leaves bytes free.

Some kernels need scratch memory while they run: a convolution's im2col patches or kn2row
products, the bands of a chain of convolutions. Kept in buffers of their own, that workspace
adds to the arena for the whole run, although it is needed one step at a time. But at most steps
the arena has free bytes: the plan is sized for its peak step, and elsewhere storages that are
not alive leave holes. So, once per binding, every step that may need workspace gets a *region*:
the widest span of the arena that no storage alive at that step touches (its inputs and outputs
included). The kernels of that step take their scratch from it and size their blocks to it.

A step whose widest free span is under `minimum` bytes gets a region at the top of what is alive
there instead, and the arena grows to hold `minimum` bytes above it: no kernel is starved of
room, and the arena grows only by what such steps lack.

Invariants: a region never overlaps a planned storage alive at its step, so a kernel writing its
region changes no value a step reads; regions start at `ALIGN`-byte boundaries; the arena size
returned is at least the plan's and covers every region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sod2.analysis.liveness import Storage

ALIGN = 64
"""Regions start at multiples of this many bytes (a cache line)."""


@dataclass(frozen=True)
class Regions:
    """Where each step's workspace is, for one binding."""

    spans: dict[int, tuple[int, int]]
    """Step index -> (byte offset, bytes) of its region in the arena."""
    arena_bytes: int
    """The arena's size with every region in it (at least the plan's)."""


@dataclass(frozen=True)
class Lifetimes:
    """The planned storages of one graph as arrays: first and last step, in plan order."""

    index: np.ndarray
    """Each planned storage's position in the plan's storage list (where offsets and sizes are)."""
    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, storages: Sequence[Storage]) -> Lifetimes:
        """The lifetimes of the planned ones among `storages` (a plan's, in its order)."""
        planned = [k for k, s in enumerate(storages) if s.planned]
        return cls(
            np.array(planned, dtype=np.int64),
            np.array([storages[k].start for k in planned], dtype=np.int64),
            np.array([storages[k].end for k in planned], dtype=np.int64),
        )


def _extents(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each planned storage's first byte and the byte past its last, at one binding."""
    lo = offsets[lifetimes.index].astype(np.int64)
    return lo, lo + sizes[lifetimes.index].astype(np.int64)


def workspace_regions(
    lifetimes: Lifetimes,
    offsets: np.ndarray,
    sizes: np.ndarray,
    arena_bytes: int,
    steps: Sequence[int],
    minimum: int,
) -> Regions:
    """The region of each of `steps` (module docstring), given every storage's `offsets` and
    `sizes` in bytes at one binding and the plan's `arena_bytes`."""
    lo, hi = _extents(lifetimes, offsets, sizes)
    used = hi > lo
    free: dict[int, tuple[int, int, int]] = {}  # step -> (widest start, widest end, top)
    arena = int(arena_bytes)
    for step in steps:
        alive = used & (lifetimes.start <= step) & (lifetimes.end >= step)
        starts, ends = lo[alive], hi[alive]
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], np.maximum.accumulate(ends[order])
        # gaps between consecutive live spans (after aligning their starts up)
        begins = np.concatenate(([0], ends))
        begins = (begins + ALIGN - 1) // ALIGN * ALIGN
        finishes = np.concatenate((starts, [-1]))
        widths = finishes[:-1] - begins[:-1]
        top = int(begins[-1])
        best = int(np.argmax(widths)) if len(widths) else -1
        if best >= 0 and widths[best] > 0:
            free[step] = (int(begins[best]), int(finishes[best]), top)
        else:
            free[step] = (top, top, top)
        if max(arena - top, free[step][1] - free[step][0]) < minimum:
            arena = max(arena, top + minimum)
    spans: dict[int, tuple[int, int]] = {}
    for step, (start, end, top) in free.items():
        if end - start >= arena - top:
            spans[step] = (start, end - start)
        else:
            spans[step] = (top, arena - top)
    return Regions(spans, arena)


def occupancy(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray, steps: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """Per step of `steps`: the bytes of the planned storages alive there, and where the highest
    of them ends (what a region placed above them starts from), at one binding."""
    lo, hi = _extents(lifetimes, offsets, sizes)
    used = hi > lo
    found = {}
    for step in steps:
        alive = used & (lifetimes.start <= step) & (lifetimes.end >= step)
        ends = hi[alive]
        found[step] = (int((ends - lo[alive]).sum()), int(ends.max()) if ends.size else 0)
    return found
