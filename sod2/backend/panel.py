"""Products of many rows against a constant matrix, with the matrix packed into panels.

A model's MatMul and Gemm mostly multiply activations (rows) by a weight matrix B that never
changes. OpenBLAS repacks B at every call; a loop of dot products reads B in place but sums along
the depth, and must add a vector's lanes up at the end. Here B is packed once, at compile time,
into panels of WIDTH columns (`pack_panels`): panel p holds columns [p * WIDTH, (p + 1) * WIDTH)
of every row of B, one row after the other, zero-padded past the last column:

    packed[p, k, j] = B[k, p * WIDTH + j]    (0 where p * WIDTH + j >= N)

so that a block of the product streams one contiguous run of memory. The product
(`panel_product`) is a `prange` loop over tiles of ROWS rows by WIDTH columns, each computed by
`sod2.backend.intrinsics.tile_product`'s register tile: per step of the depth, the panel's row is
loaded once as vectors, an element of each of the tile's rows is broadcast, and fused
multiply-adds accumulate ROWS x VECTORS vector sums that stay in registers from the first step to
the last. Consecutive tiles share a panel, so a thread reads each panel from memory once and then
from its cache.

A group of rows (ROWS_BLOCK_BYTES of `a`) goes through every panel before the next group, so
that it stays in cache while the panels stream past; within a panel, the depth is cut into blocks
of DEPTH_BLOCK, each block read into L1 once for every tile of the group, the sums resumed from
the output block after block, and the next block prefetched. The last tile of a product's rows,
where it is short (1, 2 or 3 rows), has a tile of its own height: a single row computes no rows
twice.

The tile's shape follows the machine's vectors (`tile_shape`): with AVX-512, 6 rows by 4 vectors
of 16 floats (24 sums, 4 panel vectors and a broadcast in 32 registers); with AVX2 and FMA, 6 rows
by 2 vectors of 8 (15 of 16 registers). Without fused multiply-adds in the CPU's features (as
Numba sees them: NUMBA_CPU_NAME and NUMBA_CPU_FEATURES apply) there is no tile, `TILE` is None,
and callers use their other products.

Invariants: float32 only; results equal a sum over the depth in order, one fused multiply-add per
term (within float32 rounding of any other order); `a`'s and `out`'s elements are adjacent along
a row (rows any distance apart); nothing is allocated but a tile of the last panel's columns,
where it is narrower than WIDTH.
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange

from .intrinsics import tile_product
from .jit import serial_and_parallel


class TileShape(NamedTuple):
    """A register tile: `rows` rows by `vectors` vectors of `lanes` float32."""

    rows: int
    vectors: int
    lanes: int

    @property
    def width(self) -> int:
        """The columns of a tile, and of a panel."""
        return self.vectors * self.lanes


def _cpu_features() -> str:
    """The CPU features Numba compiles for ("+avx2,+fma,...")."""
    from numba.core import config

    if config.CPU_FEATURES is not None:
        return str(config.CPU_FEATURES)
    if config.CPU_NAME is not None:  # a named CPU, its features left to LLVM: assume none
        return ""
    import llvmlite.binding as llvm

    return str(llvm.get_host_cpu_features().flatten())


def tile_shape(features: str | None = None) -> TileShape | None:
    """The tile for a CPU with `features` (Numba's by default), None without FMA."""
    flags = set((_cpu_features() if features is None else features).split(","))
    if "+fma" not in flags:
        return None
    if "+avx512f" in flags:
        return TileShape(6, 4, 16)
    if "+avx2" in flags:
        return TileShape(6, 2, 8)
    return None


TILE = tile_shape()
"""This machine's tile (None: no panel products here)."""

DEPTH_BLOCK = 128
"""The depth of a block: its rows of a panel (32 KiB with AVX-512's 64 columns) stay in L1 while
every tile of a task's rows reads them."""

ROWS_BLOCK_BYTES = 1 << 20
"""A group of `a`'s rows whose tiles read the panels one after the other: at most this much of
`a`, which a core's L2 cache keeps while every panel's blocks go through L1."""

PARALLEL_MIN = 1 << 20
"""A product of at least this many multiply-adds runs over every thread; a smaller one on the
calling thread (a few microseconds of work: less than handing it out costs), unless its panels
take PARALLEL_MIN_BYTES or more."""

PARALLEL_MIN_BYTES = 1 << 20
"""Panels this large are read by every thread, each its share, even for a few rows: a product
of few rows streams its matrix once, mostly from memory (a model's weights are rarely in
cache), and two cores stream it faster than one."""


POPULATE_MIN_BYTES = 1 << 20
"""Panels this large are allocated with their pages mapped at once (`_zeros`)."""


HUGE_PAGE = 2 << 20
"""Large panels start at a multiple of this, in memory the kernel is asked to back with pages
of this size (transparent huge pages, `_zeros`)."""

_MADV_POPULATE_WRITE = 23
"""Linux's madvise advice that maps a range's pages at once, for writing (since 5.14)."""


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros. A large one is an anonymous mapping, aligned to HUGE_PAGE and
    advised to be backed by huge pages (MADV_HUGEPAGE, where the kernel allows it), whose pages
    are mapped in one call (MADV_POPULATE_WRITE; else by writing the zeros).

    - Huge pages: a product of few rows streams its panels from memory, and with 4 KiB pages
      it crosses a page, and misses the TLB, every 64 lines; packed into huge pages, 8 rows
      against 768 x 3072 read 19 GB/s instead of 15 here (one-off).
    - Mapping at once: on a virtual machine, faulting in a model's worth of fresh 4 KiB pages
      one at a time, as the first writes to `np.zeros` do, took 0.1 to 0.8 s for 340 MB here
      (varying from run to run)."""
    size = int(np.prod(shape)) * 4
    if size < POPULATE_MIN_BYTES:
        return np.zeros(shape, np.float32)
    try:
        mapping = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, AttributeError):
        return np.zeros(shape, np.float32)
    whole = np.frombuffer(mapping, np.uint8)  # (the array keeps the mapping)
    skip = -whole.ctypes.data % HUGE_PAGE
    region = whole[skip : skip + size]
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    try:
        if advice is not None:
            mapping.madvise(advice, skip, size)
        mapping.madvise(_MADV_POPULATE_WRITE, skip, size)
    except (OSError, ValueError):
        region.fill(0)  # (fresh anonymous memory reads 0: writing it maps the pages)
    return region.view(np.float32).reshape(shape)


def pack_panels(b: np.ndarray, tile: TileShape | None = None) -> np.ndarray:
    """B (K, N) float32 packed into ceil(N / width) panels of (K, width), zero-padded (module
    docstring)."""
    tile = tile or TILE
    if tile is None:
        raise ValueError("pack_panels: this CPU has no panel products (no FMA)")
    if not (isinstance(b, np.ndarray) and b.ndim == 2 and b.dtype == np.float32):
        raise ValueError(f"pack_panels: a 2-D float32 matrix, not {getattr(b, 'shape', b)!r}")
    depth, columns = b.shape
    width = tile.width
    panels = -(-columns // width)
    packed = _zeros((panels, depth, width))
    full = columns // width
    if full:
        packed[:full] = b[:, : full * width].reshape(depth, full, width).transpose(1, 0, 2)
    if full < panels:
        packed[full, :, : columns - full * width] = b[:, full * width :]
    return packed


_ROWS, _WIDTH = (TILE.rows, TILE.width) if TILE is not None else (1, 1)
_multiply = tile_product(*TILE) if TILE is not None else None
# short tiles (the last rows of a product, a single row): fewer sums, no rows computed twice
_multiply_1, _multiply_2, _multiply_3 = (
    [tile_product(rows, TILE.vectors, TILE.lanes) for rows in (1, 2, 3)]
    if TILE is not None
    else [None] * 3
)
# the same tiles with gathered rows (`bind_gathered`)
_gathered, _gathered_1, _gathered_2, _gathered_3 = (
    [tile_product(rows, TILE.vectors, TILE.lanes, "rows") for rows in (TILE.rows, 1, 2, 3)]
    if TILE is not None
    else [None] * 4
)


def _panel_product(a, packed, out, groups, rows_at, taps_at):  # type: ignore[no-untyped-def]
    """out = a @ B: one task per group of row tiles and panel; within a task, the depth in
    blocks of DEPTH_BLOCK, each block of the panel read once (from memory, into L1) for every
    tile of the group, whose sums the next block resumes from `out`. With tables of gathered
    rows (`taps_at` not empty), row i of the product at step k is `a.flat[rows_at[i] +
    taps_at[k]]` (`bind_gathered`)."""
    gather = taps_at.shape[0] > 0
    count = rows_at.shape[0] if gather else a.shape[0]
    depth = taps_at.shape[0] if gather else a.shape[1]
    columns = out.shape[1]
    panels = packed.shape[0]
    row_tiles = (count + _ROWS - 1) // _ROWS
    per_group = (row_tiles + groups - 1) // groups
    lda = a.strides[0] // 4
    ldo = out.strides[0] // 4
    block_lines = DEPTH_BLOCK * _WIDTH * 4 // 64
    for task in prange(panels * groups):
        # a thread's consecutive tasks go through the panels for one group of rows (which its
        # cache keeps), then the next group
        p = task % panels
        first = (task // panels) * per_group
        last = min(row_tiles, first + per_group)
        if first >= last:
            continue
        c0 = p * _WIDTH
        span = min(_WIDTH, columns - c0)
        panel = packed.ctypes.data + p * packed.strides[0]
        r_base = first * _ROWS
        height_all = min(count, last * _ROWS) - r_base
        if span == _WIDTH:
            target = np.int64(out.ctypes.data + r_base * out.strides[0] + c0 * 4)
            ldt = ldo
            tile = np.empty((0, 0), np.float32)
        else:  # the last panel's columns, through rows of its own
            tile = np.empty((height_all, _WIDTH), np.float32)
            target = np.int64(tile.ctypes.data)  # (one integer type on both branches)
            ldt = _WIDTH
        share = (block_lines + (last - first) - 1) // (last - first)
        for k0 in range(0, depth, DEPTH_BLOCK):
            steps = min(DEPTH_BLOCK, depth - k0)
            # the tiles fetch the next block ahead (after the last, the next panel's first),
            # each its share of the lines
            if k0 + DEPTH_BLOCK < depth:
                ahead_block = panel + (k0 + DEPTH_BLOCK) * _WIDTH * 4
                left = min(depth - k0 - DEPTH_BLOCK, DEPTH_BLOCK)
            else:
                ahead_block = panel + packed.strides[0]
                left = 0 if p + 1 == panels else min(depth, DEPTH_BLOCK)
            left_lines = left * _WIDTH * 4 // 64
            for t in range(first, last):
                i = t - first
                r0 = t * _ROWS
                height = min(_ROWS, count - r0)
                weights = panel + k0 * _WIDTH * 4
                lines = max(0, min(share, left_lines - i * share))
                ahead = ahead_block + i * share * 64
                place = target + i * _ROWS * ldt * 4
                if gather:
                    table = rows_at.ctypes.data + r0 * 8
                    taps = taps_at.ctypes.data + k0 * 8
                    gathered = (a.ctypes.data, table, weights, place, ldt, height, steps)
                    if height == 1:
                        _gathered_1(*gathered, ahead, lines, k0, taps)
                    elif height == 2:
                        _gathered_2(*gathered, ahead, lines, k0, taps)
                    elif height == 3:
                        _gathered_3(*gathered, ahead, lines, k0, taps)
                    else:
                        _gathered(*gathered, ahead, lines, k0, taps)
                    continue
                source = a.ctypes.data + r0 * a.strides[0] + k0 * 4
                arguments = (source, lda, weights, place, ldt, height, steps, ahead, lines, k0)
                if height == 1:
                    _multiply_1(*arguments)
                elif height == 2:
                    _multiply_2(*arguments)
                elif height == 3:
                    _multiply_3(*arguments)
                else:
                    _multiply(*arguments)
        if span < _WIDTH:
            for i in range(height_all):
                for j in range(span):
                    out[r_base + i, c0 + j] = tile[i, j]


_LOOPS: list[tuple[Any, Any]] = []
"""The serial and parallel `_panel_product`, compiled on first use."""


def _loops() -> tuple[Any, Any]:
    if not _LOOPS:
        element = numba.float32
        table = numba.types.Array(numba.int64, 1, "C", readonly=True)
        signature = numba.void(
            numba.types.Array(element, 2, "A", readonly=True),
            numba.types.Array(element, 3, "C", readonly=True),
            numba.types.Array(element, 2, "A"),
            numba.intp,
            table,
            table,
        )
        _LOOPS.append(serial_and_parallel(_panel_product, signature=signature))
    return _LOOPS[0]


def fits(a: np.ndarray, packed: np.ndarray, out: np.ndarray) -> bool:
    """Whether `panel_product(a, packed, out)` takes these arrays (else use another product)."""
    return (
        isinstance(a, np.ndarray)
        and a.dtype == np.float32
        and a.ndim == 2
        and _product_fits(a.shape[0], a.shape[1], packed, out)
        and (out.size == 0 or _rows_of_adjacent_floats(a, out))
    )


def _product_fits(rows: int, depth: int, packed: np.ndarray, out: Any) -> bool:
    """Whether panels `packed` and `out` make a product of `rows` rows and `depth` steps."""
    return (
        TILE is not None
        and isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.ndim == 2
        and packed.ndim == 3
        and packed.shape[2] == TILE.width
        and packed.shape[1] == depth
        and out.shape[0] == rows
        and out.shape[1] <= packed.shape[0] * TILE.width
        and out.shape[1] > (packed.shape[0] - 1) * TILE.width
        and out.flags.writeable
    )


def _rows_of_adjacent_floats(a: np.ndarray, out: np.ndarray) -> bool:
    """Whether `a`'s and `out`'s elements are adjacent along their rows, the rows a whole
    number of floats apart, and the two apart in memory."""
    return (
        (a.shape[0] < 2 or a.strides[0] % 4 == 0)
        and (a.shape[1] < 2 or a.strides[1] == 4)
        and (out.shape[1] < 2 or out.strides[1] == 4)
        and (out.shape[0] < 2 or out.strides[0] % 4 == 0)
        and not np.may_share_memory(a, out)
    )


def panel_product(a: np.ndarray, packed: np.ndarray, out: np.ndarray) -> None:
    """out = a @ B for B packed by `pack_panels`: a (M, K) and out (M, N) float32 with adjacent
    elements along their rows (`fits`)."""
    if not fits(a, packed, out):
        raise ValueError(
            f"panel_product: a {getattr(a, 'shape', a)}, packed {packed.shape} and out "
            f"{out.shape} do not make a product this machine's panels compute"
        )
    bind(a, packed, out)()


_NO_TABLE = np.zeros(0, np.int64)


def bind(a: np.ndarray, packed: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    """`panel_product(a, packed, out)` without its check (for callers that asked `fits`
    first), as a call without arguments, its choices (serial or parallel loop, row groups)
    made now; each call computes the product again from what `a` then holds."""
    return _bound(a, a.shape[0], a.shape[1], packed, out, _NO_TABLE, _NO_TABLE)


def bind_gathered(
    source: np.ndarray,
    rows_at: np.ndarray,
    taps_at: np.ndarray,
    packed: np.ndarray,
    out: np.ndarray,
) -> Callable[[], None]:
    """out = A @ B for B packed by `pack_panels`, where A is not stored but gathered from the
    C-contiguous float32 `source`: A[i, k] = source.flat[rows_at[i] + taps_at[k]], for int64
    tables `rows_at` (out's rows) and `taps_at` (B's rows) whose sums stay inside `source` (a
    convolution's patches: `sod2.backend.kernels.ConvKernel`). As `bind`: a call without
    arguments, which reads what `source` then holds; ValueError for arrays it does not take."""
    if not _gathers(source, rows_at, taps_at, packed, out):
        raise ValueError(
            f"bind_gathered: source {getattr(source, 'shape', source)}, tables "
            f"{getattr(rows_at, 'shape', rows_at)} and {getattr(taps_at, 'shape', taps_at)}, "
            f"packed {packed.shape} and out {getattr(out, 'shape', out)} do not make a product "
            "this machine's panels compute"
        )
    flat = source.reshape(1, -1)
    return _bound(flat, rows_at.shape[0], taps_at.shape[0], packed, out, rows_at, taps_at)


def _gathers(source: Any, rows_at: Any, taps_at: Any, packed: np.ndarray, out: Any) -> bool:
    """Whether `bind_gathered` takes these arrays: float32 and int64 tables of one axis, `out`
    as `fits` asks of it, every offset inside `source`."""
    if not all(isinstance(x, np.ndarray) for x in (source, rows_at, taps_at)):
        return False
    if not (
        source.dtype == np.float32
        and source.flags.c_contiguous
        and rows_at.dtype == taps_at.dtype == np.int64
        and rows_at.ndim == taps_at.ndim == 1
        and rows_at.flags.c_contiguous
        and taps_at.flags.c_contiguous
        and _product_fits(rows_at.shape[0], taps_at.shape[0], packed, out)
        and (out.size == 0 or _rows_of_adjacent_floats(source.reshape(1, -1), out))
    ):
        return False
    if rows_at.size == 0 or taps_at.size == 0:
        return True
    lowest = int(rows_at.min()) + int(taps_at.min())
    highest = int(rows_at.max()) + int(taps_at.max())
    return lowest >= 0 and highest < source.size


def _bound(
    a: np.ndarray,
    rows: int,
    depth: int,
    packed: np.ndarray,
    out: np.ndarray,
    rows_at: np.ndarray,
    taps_at: np.ndarray,
) -> Callable[[], None]:
    """The call of `bind` and `bind_gathered`: a product of `rows` rows and `depth` steps."""
    if out.size == 0:
        return _nothing
    if depth == 0:  # an empty sum
        return functools.partial(out.fill, 0.0)
    work = out.size * depth
    threads = numba.get_num_threads()
    if (work < PARALLEL_MIN and packed.nbytes < PARALLEL_MIN_BYTES) or threads == 1:
        return functools.partial(_loops()[0], a, packed, out, 1, rows_at, taps_at)
    groups = _groups(rows, depth, packed, threads)
    return functools.partial(_loops()[1], a, packed, out, groups, rows_at, taps_at)


def _nothing() -> None:
    """An empty product."""


def _groups(rows: int, depth: int, packed: np.ndarray, threads: int) -> int:
    """Into how many groups of row tiles a product of `rows` rows splits: enough for each
    group's rows to stay in cache (ROWS_BLOCK_BYTES) while the panels stream past, and, where
    the panels are few, enough tasks for every thread."""
    assert TILE is not None
    row_tiles = -(-rows // TILE.rows)
    for_cache = -(-rows * depth * 4 // ROWS_BLOCK_BYTES)
    for_threads = -(-2 * threads // packed.shape[0])
    return max(1, min(row_tiles, max(for_cache, for_threads)))
