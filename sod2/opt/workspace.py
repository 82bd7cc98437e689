"""Kernel workspace in the arena: each step's scratch where the plan put it, or a wider gap.

Some kernels need scratch memory while they run: a convolution's im2col patches or kn2row
products, the bands of a chain of convolutions. Kept in buffers of their own, that workspace
would add to the arena for the whole run, although it is needed one step at a time. So the
memory plan places each such step's workspace as a storage alive at that step only
(`plan_memory(workspace=...)`, sized by `sod2.backend.scratch`): where the tensors alive there
leave room, it costs no arena bytes at all.

Once per binding, each step's workspace storage becomes its step's *region*, or the widest gap
between the storages alive at that step (the arena's end included) where that gap is wider. The
plan sized the storage for the kernels' default budgets, capped (`CompileOptions.workspace`);
a wider gap lets them take larger blocks at no cost in memory. A step of a control-flow body
may also take the widest gap that the values alive at its node's step leave in the graph around
it (`widest_gap`): nothing there is touched while the body runs, and the body's own storage,
sized for its values, is often much narrower.

Invariants: a region never overlaps a planned storage alive at its step, so a kernel writing its
region changes no value a step reads; a region is at least as large as its workspace storage;
regions start at `ALIGN`-byte boundaries and end inside the arena.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sod2.analysis.liveness import Storage
from sod2.ops.fused import is_fused

ALIGN = 64
"""Regions start at multiples of this many bytes (a cache line)."""


def is_workspace(storage: Storage) -> bool:
    """Whether `storage` is a kernel's workspace (the scratch of a node that runs no subgraph of
    its own; a control-flow node's scratch holds its bodies' values instead)."""
    node = storage.scratch_of
    return node is not None and (not node.subgraphs or is_fused(node))


@dataclass(frozen=True)
class Lifetimes:
    """The planned storages of one graph as arrays: first and last step, in plan order, and the
    workspace storage of each step that has one."""

    index: np.ndarray
    """Each planned storage's position in the plan's storage list (where offsets and sizes are)."""
    start: np.ndarray
    end: np.ndarray
    workspace: Mapping[int, int]
    """Step -> the plan position of its workspace storage."""

    @classmethod
    def of(cls, storages: Sequence[Storage]) -> Lifetimes:
        """The lifetimes of the planned ones among `storages` (a plan's, in its order)."""
        planned = [k for k, s in enumerate(storages) if s.planned and not is_workspace(s)]
        return cls(
            np.array(planned, dtype=np.int64),
            np.array([storages[k].start for k in planned], dtype=np.int64),
            np.array([storages[k].end for k in planned], dtype=np.int64),
            {s.start: k for k, s in enumerate(storages) if s.planned and is_workspace(s)},
        )


def _extents(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each planned storage's first byte and the byte past its last, at one binding."""
    lo = offsets[lifetimes.index].astype(np.int64)
    return lo, lo + sizes[lifetimes.index].astype(np.int64)


def workspace_regions(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray, arena_bytes: int
) -> dict[int, tuple[int, int]]:
    """Step -> (byte offset, bytes) of its region (module docstring), given every storage's
    `offsets` and `sizes` in bytes at one binding and the plan's `arena_bytes` there. A step
    whose workspace is empty at this binding gets none."""
    extents = _extents(lifetimes, offsets, sizes)
    spans: dict[int, tuple[int, int]] = {}
    for step, k in lifetimes.workspace.items():
        start, end = int(offsets[k]), int(offsets[k]) + int(sizes[k])
        if end <= start:
            continue
        # the workspace storage lies in one of the gaps: the widest is at least as wide
        begin, width = _widest(lifetimes, extents, max(end, int(arena_bytes)), step)
        spans[step] = (begin, width) if width > end - start else (start, end - start)
    return spans


def widest_gap(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray, arena_bytes: int, step: int
) -> tuple[int, int]:
    """(byte offset, bytes) of the widest gap between the storages alive at `step`, its start
    aligned up to ALIGN, the last gap ending at `arena_bytes`: bytes that nothing alive at that
    step holds (workspace storages aside). A control-flow step's gap is free while its bodies
    run, so their steps may use it too (`CompiledModel`)."""
    return _widest(lifetimes, _extents(lifetimes, offsets, sizes), arena_bytes, step)


def _widest(
    lifetimes: Lifetimes, extents: tuple[np.ndarray, np.ndarray], arena_bytes: int, step: int
) -> tuple[int, int]:
    """`widest_gap`, given every storage's byte extents (`_extents`)."""
    lo, hi = extents
    alive = (hi > lo) & (lifetimes.start <= step) & (lifetimes.end >= step)
    starts, ends = lo[alive], hi[alive]
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    # the gaps between consecutive live spans (their starts aligned up), the last one up to
    # the arena's end
    begins = np.concatenate(([0], ends))
    begins = (begins + ALIGN - 1) // ALIGN * ALIGN
    finishes = np.concatenate((starts, [int(arena_bytes)]))
    widths = finishes - begins
    best = int(np.argmax(widths))
    return int(begins[best]), max(0, int(widths[best]))


def occupancy(
    lifetimes: Lifetimes, offsets: np.ndarray, sizes: np.ndarray, steps: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """Per step of `steps`: the bytes of the planned storages alive there (workspace aside), and
    where the highest of them ends, at one binding."""
    lo, hi = _extents(lifetimes, offsets, sizes)
    used = hi > lo
    found = {}
    for step in steps:
        alive = used & (lifetimes.start <= step) & (lifetimes.end >= step)
        ends = hi[alive]
        found[step] = (int((ends - lo[alive]).sum()), int(ends.max()) if ends.size else 0)
    return found
