"""Fast kernels: the ops that dominate the zoo's run time, written straight into their outputs.

The catalogue's reference kernels (`sod2/ops/`) allocate their results, and the compiled runtime
would copy each one into its arena view. A kernel here is handed the outputs instead (C-contiguous
views of the exact shape and element type that RDP fixed) and writes into them:

- Conv: per image and group, one of eight strategies, picked per shape (`ConvKernel.strategy_for`):
  a 1x1 convolution is a plain matrix product over the image (`pointwise`); a depthwise-like
  convolution (few input channels per group), or one of few filters (unless a unit-stride one
  of one group over KN2ROW_GATE_CHANNELS channels, a kn2row), is a Numba loop nest
  (`direct`; with a horizontal stride, over the input split by column phase once per call, so
  that every tap still sweeps a contiguous run); a wide 3x3 unit-stride one is Winograd F(2x2, 3x3) (`winograd`): per block of
  2x2 output tiles, the input tiles transformed (Numba), 16 sgemms, the products transformed
  back, 2.25x fewer multiplies than any sum over taps; another unit-stride one with no more
  filters than input channels is a kn2row
  (`kn2row`): per block of output rows, the rows it reads padded once, an sgemm of the taps'
  filters against them (every tap at once, or one kernel row of taps at a time where blocks
  are thin), and each output row the sum of the taps' products read at their shifts, which
  moves M * taps values per pixel where im2col moves C * taps; any other is an im2col into a
  scratch buffer, filled by Numba a block of output rows at a time, then one sgemm per block
  (`im2col`). Two refine that choice where the machine has the panels' register tiles
  (`sod2.backend.panel`): an image of few output positions (CONV_PANEL_MAX_POSITIONS), deep and
  small, with weights over TILES_SMALL_IMAGE_WEIGHT_BYTES, is one product of its positions
  against the filters packed into panels at compile time, each position's patch gathered from
  the image by the product itself, never copied (`panels`); such an image with smaller weights,
  or any convolution of small weights (TILES_MAX_WEIGHT_BYTES: a stem, a shallow 3x3)
  is register tiles of filters by a run of output positions, each tap's inputs read straight
  from the padded input, split by row and column phase into planes once per block, the
  positions counted along rows as wide as a plane's, so that a run may cross rows and small
  images fill whole tiles (`tiles`; taken first).
  Scratch comes from the workspace region the runtime gives the step
  (`use_workspace`, blocks sized to fit it) or else from buffers kept per thread, shared by
  every Conv; the bias is added to the
  output while it is in cache (the weights are never copied, except kn2row's per-tap stacking
  and Winograd's transform, done once at compile time for constant weights);
  `windows`, numpy's strided view of every patch (what the reference does), stays available for
  comparison;
- ConvTranspose (one group): per block of input rows, one sgemm of every tap's filters into a
  bounded scratch, then a Numba scatter-add of the taps into the output (col2im), which never
  holds the full-size patches the reference builds;
- chains of Convs and Resizes (`BandChain`, for fusion's `chain` groups): the last stage's
  output a block of rows at a time, each earlier stage computing only the band of rows the next
  one reads, so their outputs never exist whole;
- MatMul and Gemm: a batch of rows against one matrix as one product. Up to PANEL_MAX_ROWS
  rows against a constant matrix of PANEL_MIN_COLUMNS or more are register tiles of explicit
  vectors over the matrix packed into panels (`sod2.backend.panel`), packed at compile time and
  kept beside the model's copy (`_Panels`), unless the symbol ranges give every product more
  rows (`MatMulKernel.least_rows`). Where the machine has no such tiles, a
  constant matrix is laid out by columns instead, once, at compile time (and the runtime holds
  it in that layout only), and up to 32 rows against it are a Numba loop of dot products
  (`_skinny_product`, see SKINNY_ROWS). Anything else is one sgemm;
- every sgemm here, and a MatMul's stack of products, goes through `blas.matmul_into`:
  OpenBLAS's gemm called from Numba's threads, so products and loops share one thread pool;
- Softmax, LogSoftmax, LayerNormalization, InstanceNormalization, BatchNormalization, MaxPool,
  AveragePool and Resize: Numba loop nests over rows or image planes (one pass per statistic, no
  temporaries), `prange`-parallel above `PARALLEL_MIN` elements; the exponential is a polynomial
  with an exact power of two, which vectorizes;
- reductions, GlobalAveragePool and the data movement ops (Transpose, Concat, Gather, Slice,
  Expand, Pad): numpy with `out=` or one `copyto` from a view, no intermediate array; GatherND:
  one Numba loop copying each index tuple's row (`_gather_rows`);
- the elementwise ops fusion leaves to steps of their own, over integers and booleans
  (comparisons, And, Or, Xor, Not, integer Add, Sub and Mul: masks and gates): one numpy ufunc
  with `out=` (`_UFUNCS`); Cast between numbers where numpy's conversion is Cast's (`_cast_fits`),
  one `copyto`.

A heavy kernel (Conv, MatMul, Gemm) takes an *epilogue*, `epilogue(lo, hi)`, called when rows
`[lo, hi)` of the output's first axis are final, so that a fused elementwise group runs over them
while they are still in cache; the other kernels call it once, at the end. Every kernel calls it
over the whole first axis exactly once in all.

`fast_kernel(node, opset)` reads the attributes once, at compile time, and returns None where it
has nothing better than the reference (another op, element type or attribute). Invariants: results
equal the reference kernel's within float32 rounding; inputs a kernel does not take at run time (an
element type the graph did not declare, a layout it has no loop for) are computed by the reference
kernel and copied, whose checks name the node when an input is wrong; outputs that do not fit the
inputs are a `Sod2Error` naming the node. A kernel object keeps scratch memory and is not to be
called from two threads at once. Importing `sod2.backend` sets how long the idle threads of
Numba's pool and of OpenBLAS's spin (`sod2.backend.threads`): neither pool may hold the cores
the other's work needs for long.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numba
import numpy as np
from numba import prange

from sod2.backend import panel
from sod2.backend.blas import matmul_into
from sod2.backend.intrinsics import prefetch, tile_product
from sod2.backend.jit import serial_and_parallel
from sod2.errors import Sod2Error
from sod2.ir.dtypes import DType
from sod2.ir.graph import Node
from sod2.ops.conv import (
    AUTO_PADS,
    WindowGeometry,
    sliding_windows,
    transpose_geometry,
    window_geometry,
)
from sod2.ops.elementwise import PREDICATES
from sod2.ops.fused import FUSED_DOMAIN
from sod2.ops.image import AxisResize, source_coordinates
from sod2.ops.normalization import standardized_axes
from sod2.ops.pooling import pool_geometry
from sod2.ops.registry import KernelContext, lookup_node
from sod2.ops.shape import normalize_axis

Epilogue = Callable[[int, int], None]
"""Called by a heavy kernel after rows [lo, hi) of its output's first axis are final, so that the
runtime can apply a fused elementwise epilogue to them while they are hot in cache."""


class FastKernel(Protocol):
    """A kernel writing into preallocated outputs (None for an omitted optional output)."""

    def __call__(
        self,
        inputs: Sequence[np.ndarray | None],
        outputs: Sequence[np.ndarray],
        epilogue: Epilogue | None = None,
    ) -> None: ...


PARALLEL_MIN = 1 << 15
"""Loop nests over at least this many elements run on every core (`prange`); smaller ones run
serially, where starting the threads would cost more than it saves."""

IM2COL_BLOCK_BYTES = 1 << 22
"""The im2col scratch holds about this many bytes of patches (a block of output rows); each block
is one sgemm. Big enough for BLAS to run at full speed, small enough to stay in the cache."""

DIRECT_BLOCK_BYTES = 1 << 20
"""A strided direct convolution splits about this many bytes of its input rows by column phase
at a time (the rows a block of output rows reads), then computes that block."""


def direct_block(out_h: int, row: int, stride: int, budget: int) -> int:
    """The output rows of a strided direct convolution's block: those whose input rows, split
    (`row` floats each, `stride` rows per output row), fit `budget` bytes; one at least."""
    return max(1, min(out_h, budget // (4 * stride * row)))


_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
"""Reassociation lets LLVM vectorize sums; NaN and infinity keep their IEEE meaning."""

_F32 = np.dtype(np.float32)


class _Unfit(Exception):
    """The kernel has no loop for these inputs: the reference kernel computes them instead."""


Body = Callable[[Sequence[Any], Sequence[Any], "Epilogue | None"], None]


class _Kernel:
    """A kernel body plus what it needs when the body declines: the node and its reference."""

    __slots__ = ("body", "node", "opset")

    def __init__(self, node: Node, opset: int, body: Body) -> None:
        self.node = node
        self.opset = opset
        self.body = body

    def __call__(
        self,
        inputs: Sequence[np.ndarray | None],
        outputs: Sequence[np.ndarray],
        epilogue: Epilogue | None = None,
    ) -> None:
        called = [False]

        def tracked(lo: int, hi: int) -> None:
            called[0] = True
            epilogue(lo, hi)  # type: ignore[misc]

        try:
            self.body(inputs, outputs, None if epilogue is None else tracked)
        except _Unfit:
            self.run_reference(inputs, outputs, epilogue)
        except (ValueError, TypeError, IndexError) as error:
            if called[0]:  # rows were already handed on: the failure is not the kernel's input
                raise self.fail(str(error)) from error
            self.run_reference(inputs, outputs, epilogue)

    def bind(
        self,
        inputs: Sequence[np.ndarray | None],
        outputs: Sequence[np.ndarray],
        epilogue: Epilogue | None = None,
    ) -> Callable[[], None] | None:
        """`self(inputs, outputs, epilogue)` as a call without arguments, checked now (`Bindable`);
        None where the body cannot be bound so, or declines these inputs (a call then takes
        the reference kernel)."""
        binder = getattr(self.body, "bind", None)
        if binder is None:
            return None
        try:
            return binder(inputs, outputs, epilogue)  # type: ignore[no-any-return]
        except (_Unfit, ValueError, TypeError, IndexError):
            return None

    def run_reference(
        self,
        inputs: Sequence[np.ndarray | None],
        outputs: Sequence[np.ndarray],
        epilogue: Epilogue | None,
    ) -> None:
        """The catalogue kernel's results, copied into `outputs`."""
        reference = lookup_node(self.node, self.opset).kernel
        results = reference(KernelContext(self.node, self.opset), list(inputs))
        for index, (out, result) in enumerate(zip(outputs, results, strict=False)):
            if out is None:
                continue
            result = np.asarray(result)
            if result.shape != out.shape:
                raise self.fail(
                    f"output {index} has shape {list(result.shape)}, but its buffer is "
                    f"{list(out.shape)}: the inputs do not give the shape planned for them"
                )
            np.copyto(out, result)
        _finish(epilogue, outputs[0])

    def fail(self, message: str) -> Sod2Error:
        return Sod2Error(f"node {self.node.name!r} ({self.node.op_type}): {message}")


class Bindable(Protocol):
    """A kernel body that can also check its inputs once and return the computation as a call
    without arguments (`bind`), for a runtime that runs it again over the same arrays: every
    choice that reads shapes, strides, types or overlaps is made at binding, never one that
    reads elements. The epilogue's rows are finished through `finish_call`."""

    def bind(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> Callable[[], None] | None: ...


def finish_call(epilogue: Epilogue | None, lo: int, hi: int) -> Callable[[], None] | None:
    """`epilogue(lo, hi)` as a call without arguments: the epilogue's own bound call where it
    has one (a `bound(lo, hi)` method), None without an epilogue."""
    if epilogue is None:
        return None
    bound = getattr(epilogue, "bound", None)
    return bound(lo, hi) if bound is not None else functools.partial(epilogue, lo, hi)


def run_calls(calls: Sequence[Callable[[], None]]) -> None:
    """Each call in turn."""
    for call in calls:
        call()


def sequence(calls: Sequence[Callable[[], None] | None]) -> Callable[[], None]:
    """One call without arguments making `calls` (None: nothing) in turn."""
    kept = tuple(call for call in calls if call is not None)
    return kept[0] if len(kept) == 1 else functools.partial(run_calls, kept)


Plan = Callable[
    [Sequence[Any], Sequence[Any], "Epilogue | None"],
    tuple[list[Callable[[], None] | None], bool],
]
"""A body written as the calls it makes for some arrays (None: nothing), with whether those
calls may be made again later over the same arrays (False where one reads a copy of an input
made now, such as a strided input made contiguous)."""


class _Planned:
    """A body written as its `plan` (see `Plan`): a call makes the plan's calls; `bind` returns
    them as one, where they may be made again (`Bindable`)."""

    def plan(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        raise NotImplementedError

    def __call__(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> None:
        for call in self.plan(inputs, outputs, epilogue)[0]:
            if call is not None:
                call()

    def bind(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> Callable[[], None] | None:
        calls, again = self.plan(inputs, outputs, epilogue)
        return sequence(calls) if again else None


class _PlannedFunction(_Planned):
    """A `_Planned` body whose plan is a function (a builder's closure over the node)."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan

    def plan(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        return self._plan(inputs, outputs, epilogue)


def planned(plan: Plan) -> Body:
    """A body that makes the calls of `plan`, and can be bound to its arrays (`Bindable`)."""
    return _PlannedFunction(plan)


def _finish_all(epilogue: Epilogue | None, out: np.ndarray) -> Callable[[], None] | None:
    """`_finish(epilogue, out)` as a call without arguments (`finish_call`)."""
    return finish_call(epilogue, 0, out.shape[0] if out.ndim else 1)


def _finish(epilogue: Epilogue | None, out: np.ndarray) -> None:
    """The epilogue over the whole first axis (one row for a scalar)."""
    if epilogue is not None:
        epilogue(0, out.shape[0] if out.ndim else 1)


def _images(batch: int, epilogue: Epilogue | None) -> Iterator[int]:
    """The images 0 .. batch - 1 of a per-image loop; once the loop's body is done with image n,
    the epilogue gets its row, `epilogue(n, n + 1)` (and `epilogue(0, 0)` for an empty batch)."""
    for n in range(batch):
        yield n
        if epilogue is not None:
            epilogue(n, n + 1)
    if epilogue is not None and batch == 0:
        epilogue(0, 0)


def _float32(*arrays: Any) -> None:
    """Decline (reference) unless every array is a float32 ndarray."""
    for array in arrays:
        if not isinstance(array, np.ndarray) or array.dtype != _F32:
            raise _Unfit


def _same_shape_float32(
    inputs: Sequence[Any], outputs: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """X and Y of an op whose Y has X's shape: declined (reference) unless both are float32
    arrays of one shape, not scalars."""
    x, out = inputs[0], outputs[0]
    _float32(x, out)
    if x.ndim == 0 or x.shape != out.shape:
        raise _Unfit
    return x, out


def _contiguous(array: np.ndarray) -> np.ndarray:
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def staged(array: Any, name: str = "chain_in") -> Any:
    """`array` C-contiguous: itself where it is, else a float32 one copied into scratch `name`
    (the workspace region's, so a step that reads rows of a value block by block allocates
    nothing); other element types are copied by numpy. Valid while the caller's scratch scope
    lasts, until `name` is taken again."""
    if not isinstance(array, np.ndarray) or array.flags.c_contiguous:
        return array
    if array.dtype != np.float32:
        return np.ascontiguousarray(array)
    copy = _scratch(name, array.size).reshape(array.shape)
    np.copyto(copy, array)
    return copy


def _jit(function: Callable[..., Any]) -> tuple[Any, Any]:
    """A serial and a `prange`-parallel compilation of one loop nest (`serial_and_parallel`),
    with _FASTMATH."""
    return serial_and_parallel(function, _FASTMATH)


def _pick(versions: tuple[Any, Any], elements: int) -> Any:
    return versions[1] if elements >= PARALLEL_MIN else versions[0]


# -- MatMul and Gemm -----------------------------------------------------------------------------

MATMUL_BLOCK_BYTES = 1 << 23
"""With an epilogue, a product whose output exceeds this is computed in blocks of first-axis rows
of about this size, each handed to the epilogue while it is in cache."""


def _even(total: int, most: int) -> int:
    """The length of the blocks that cut `total` items into as few blocks of at most `most` as
    can be, all of about one length (the last may be shorter by less than their number): 169
    tiles in blocks of at most 156 become 85 and 84, not 156 and a thin product of 13."""
    most = max(1, min(total, most))
    return -(-total // -(-total // most))


def _row_blocks(rows: int, row_bytes: int, blocked: bool) -> list[tuple[int, int]]:
    """[lo, hi) blocks of `rows` rows of at most about MATMUL_BLOCK_BYTES each, of even lengths
    (one block if not blocked)."""
    if not blocked or rows <= 1 or rows * row_bytes <= MATMUL_BLOCK_BYTES:
        return [(0, rows)]
    step = _even(rows, MATMUL_BLOCK_BYTES // max(row_bytes, 1))
    return [(lo, min(rows, lo + step)) for lo in range(0, rows, step)]


def _matmul_floats(*arrays: Any) -> None:
    kind = arrays[-1].dtype
    for array in arrays:
        if not isinstance(array, np.ndarray) or array.dtype != kind or kind not in _MATMUL_TYPES:
            raise _Unfit


_MATMUL_TYPES = (np.dtype(np.float32), np.dtype(np.float64))

SKINNY_ROWS = (1, 32)
"""A product of this many rows (inclusive) against a matrix of SKINNY_MIN_WEIGHTS elements or
more, stored by columns (a column-major (K, N) array: a Gemm's transposed B, or a constant B that
`prepare` laid out), is a Numba loop of dot products, `_skinny_product`, not an sgemm: OpenBLAS
packs the whole matrix at every call, which costs more than the product itself when the rows are
few (a transformer on a short sequence). Above 32 rows the sgemm is faster (docs/performance.md,
"Small matrix products")."""

SKINNY_MIN_WEIGHTS = 1 << 16
"""The smallest matrix the skinny loop takes (256 x 256): below it a product costs little either
way. Alone, with its matrix in cache, the loop beats the sgemm only at a few rows of a large
matrix (`python benchmarks/kernels.py --ops MatMul`); inside a model, where the matrix is rarely
in cache, it is faster at up to 32 rows."""

SKINNY_PARALLEL_MIN = 1 << 18
"""The skinny loop runs on every core for a matrix of this many elements or more (1 MiB of
float32). It streams the matrix once, and inside a model the matrix is rarely in cache: two cores
stream it faster than one. Below it, waking the pool's sleeping threads costs more than they
save."""


@numba.njit(cache=True, inline="always")
def _prefetch_next(bt, c0):  # type: ignore[no-untyped-def]
    """Prefetch the 4 columns of `bt` (rows of the (cols, depth) array) after the tile at c0."""
    cols, depth = bt.shape
    step = max(1, 64 // bt.itemsize)  # elements per 64-byte cache line
    for c in range(c0 + 4, min(c0 + 8, cols)):
        for k in range(0, depth, step):
            prefetch(bt, c, k)


def _skinny_product(a, bt, out, zero):  # type: ignore[no-untyped-def]
    """out[r, c] = sum_k a[r, k] * bt[c, k], in tiles of 4 rows by 4 columns: each of a tile's
    16 sums is a vectorized dot product, and every value loaded from `a` or `bt` serves four of
    them. Column tiles are the outer order, so a thread's consecutive tiles reuse the same 4
    columns of `bt` from cache; rows past the last are clamped to it (computed, not stored).
    `zero` is 0 in the element type, where the sums start.

    The first tile of a column tile prefetches the next column tile's columns (`_prefetch_next`):
    their memory latency is then paid while the tiles of this one compute."""
    rows, depth = a.shape
    cols = bt.shape[0]
    row_tiles = (rows + 3) // 4
    col_tiles = (cols + 3) // 4
    for t in prange(row_tiles * col_tiles):
        r0 = (t % row_tiles) * 4
        c0 = (t // row_tiles) * 4
        if r0 == 0:
            _prefetch_next(bt, c0)
        ra, rb, rc, rd = r0, min(r0 + 1, rows - 1), min(r0 + 2, rows - 1), min(r0 + 3, rows - 1)
        ca, cb, cc, cd = c0, min(c0 + 1, cols - 1), min(c0 + 2, cols - 1), min(c0 + 3, cols - 1)
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
        for k in range(depth):
            w0, w1, w2, w3 = bt[ca, k], bt[cb, k], bt[cc, k], bt[cd, k]
            x0, x1, x2, x3 = a[ra, k], a[rb, k], a[rc, k], a[rd, k]
            s00 += x0 * w0
            s01 += x0 * w1
            s02 += x0 * w2
            s03 += x0 * w3
            s10 += x1 * w0
            s11 += x1 * w1
            s12 += x1 * w2
            s13 += x1 * w3
            s20 += x2 * w0
            s21 += x2 * w1
            s22 += x2 * w2
            s23 += x2 * w3
            s30 += x3 * w0
            s31 += x3 * w1
            s32 += x3 * w2
            s33 += x3 * w3
        tile = (
            (s00, s01, s02, s03),
            (s10, s11, s12, s13),
            (s20, s21, s22, s23),
            (s30, s31, s32, s33),
        )
        for i in range(min(4, rows - r0)):
            for j in range(min(4, cols - c0)):
                out[r0 + i, c0 + j] = tile[i][j]


_SKINNY = _jit(_skinny_product)


def _skinny_row(a, bt, out, zero):  # type: ignore[no-untyped-def]
    """`_skinny_product` of a single row: tiles of 4 columns, no rows computed twice."""
    depth = a.shape[1]
    cols = bt.shape[0]
    for t in prange((cols + 3) // 4):
        c0 = t * 4
        _prefetch_next(bt, c0)
        ca, cb, cc, cd = c0, min(c0 + 1, cols - 1), min(c0 + 2, cols - 1), min(c0 + 3, cols - 1)
        s0 = s1 = s2 = s3 = zero
        for k in range(depth):
            x = a[0, k]
            s0 += x * bt[ca, k]
            s1 += x * bt[cb, k]
            s2 += x * bt[cc, k]
            s3 += x * bt[cd, k]
        sums = (s0, s1, s2, s3)
        for j in range(min(4, cols - c0)):
            out[0, c0 + j] = sums[j]


_SKINNY_ROW = _jit(_skinny_row)


def _product_call(
    left: np.ndarray, right: np.ndarray, out: np.ndarray, packed: np.ndarray | None
) -> Callable[[], None]:
    """out = left @ right for 2-D operands, as a call without arguments: the panel product
    where `right` comes packed (`sod2.backend.panel`) and the panels take these operands, else
    `_product`."""
    if packed is not None and panel.fits(left, packed, out):
        return panel.bind(left, packed, out)
    return functools.partial(_product, left, right, out)


def _product(left: np.ndarray, right: np.ndarray, out: np.ndarray) -> None:
    """out = left @ right for 2-D operands: the skinny loop where it is faster (see
    SKINNY_ROWS), else one sgemm."""
    rows = left.shape[0]
    if (
        SKINNY_ROWS[0] <= rows <= SKINNY_ROWS[1]
        and right.size >= SKINNY_MIN_WEIGHTS
        and right.flags.f_contiguous
        and left.flags.c_contiguous
        and left.shape[1] > 0
    ):
        versions = _SKINNY_ROW if rows == 1 else _SKINNY
        versions[right.size >= SKINNY_PARALLEL_MIN](left, right.T, out, out.dtype.type(0))
    else:
        matmul_into(left, right, out)


PANEL_MIN_COLUMNS = 32
"""A constant B of at least this many columns is multiplied by panels (`sod2.backend.panel`)
where the machine has them; a narrower one would be computed mostly as padding."""

PANEL_MAX_ROWS = 512
"""Products of at most this many rows take the panels; more rows take the sgemm, which packs
the rows too and blocks for every cache level. Alone, with B in cache, against 768 x 3072,
panels took 0.80x the sgemm's time at 128 rows, 0.97x at 256, 1.13x at 512 and 1.28x at 4096
(one-off runs). Inside a model B comes from memory, and the sgemm packs it again at every call:
with 512 here instead of 192, codebert's point of 256 rows took 0.87x its time, conformer's of
200 and 400 rows 0.89x and 0.94x, sam_image_encoder's of 256 rows 0.96x, and points of 600 to
4096 rows (with this limit or none) the same (one-off runs, `docs/performance.md`)."""


def pannable(w: Any) -> bool:
    """Whether the constant `w` may be multiplied by panels: a float32 matrix of
    PANEL_MIN_COLUMNS or more, on a machine with panel products."""
    return (
        panel.TILE is not None
        and isinstance(w, np.ndarray)
        and w.ndim == 2
        and w.dtype == _F32
        and w.shape[1] >= PANEL_MIN_COLUMNS
    )


class _Panels:
    """The constant B a kernel's `prepare` saw, and B (or B', `transposed`) packed into panels,
    kept beside it, at compile time, like the model's weights (packing on first use would
    count them as memory that inference takes)."""

    __slots__ = ("packed", "source")

    def __init__(self, source: np.ndarray, transposed: bool) -> None:
        self.source = source
        self.packed = panel.pack_panels(source.T if transposed else source)

    def for_product(self, b: Any, rows: int) -> np.ndarray | None:
        """The panels for a product of `rows` rows by `b`; None where it is not the prepared
        matrix or the rows are too many."""
        return self.packed if b is self.source and rows <= PANEL_MAX_ROWS else None


def _panels_for(w: Any, transposed: bool, least_rows: int | None) -> _Panels | None:
    """Panels for the constant B `w` (B' where `transposed`), where `pannable` and its products
    may have PANEL_MAX_ROWS rows or fewer (`least_rows`, the fewest, where known): a model whose
    products all have more rows keeps its weights once."""
    if least_rows is not None and least_rows > PANEL_MAX_ROWS:
        return None
    if not pannable(w.T if transposed and isinstance(w, np.ndarray) else w):
        return None
    return _Panels(w, transposed)


def column_major(w: Any) -> np.ndarray | None:
    """The constant matrix `w` stored by columns (same values), or None where it is one already,
    not a float matrix, or smaller than the skinny loop takes (SKINNY_MIN_WEIGHTS)."""
    if not (isinstance(w, np.ndarray) and w.ndim == 2 and w.dtype in _MATMUL_TYPES):
        return None
    if w.size < SKINNY_MIN_WEIGHTS or w.flags.f_contiguous:
        return None
    columns = np.empty(w.shape[::-1], dtype=w.dtype)
    _transpose_into(w, columns, (1, 0), _swap_plan(w.shape, (1, 0), w.dtype.itemsize))
    return columns.T


class MatMulKernel(_Planned):
    """MatMul into a preallocated output: rows against one matrix as one product (`_product`),
    in first-axis blocks when an epilogue follows; any other batch through `matmul_into`."""

    def __init__(self) -> None:
        self._panels: _Panels | None = None
        self.least_rows: int | None = None
        """The fewest rows its products can have, where the runtime knows (before `prepare`)."""

    def prepare(self, w: np.ndarray) -> np.ndarray | None:
        """Pack the constant B into panels kept beside it (`_panels_for`), or else return the
        layout the skinny loop reads (`column_major`), which the runtime holds in place of `w`
        where this kernel is B's only reader."""
        self._panels = _panels_for(w, False, self.least_rows)
        return None if self._panels is not None else column_major(w)

    def plan(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        """As `Plan`: rows against one matrix in blocks; any other batch is one `matmul_into`,
        which may be made again only where the shapes were checked here (stacks that
        broadcast; not vectors, whose shapes numpy checks at the call)."""
        a, b, out = inputs[0], inputs[1], outputs[0]
        _matmul_floats(a, b, out)
        if a.ndim == 0 or b.ndim == 0:
            raise _Unfit
        if not (a.ndim >= 2 and b.ndim == 2 and a.flags.c_contiguous):
            calls = [functools.partial(matmul_into, a, b, out), _finish_all(epilogue, out)]
            return calls, _stacks_fit(a, b, out)
        packed = self._packed(a, b)
        calls = []
        for left, block, lo, hi in _matrix_blocks(a, b, out, epilogue is not None):
            calls.append(_product_call(left, b, block, packed))
            calls.append(finish_call(epilogue, lo, hi))
        return calls, True

    def _packed(self, a: np.ndarray, b: Any) -> np.ndarray | None:
        """B's panels for a product of A's rows (all its leading axes), where it takes them."""
        if self._panels is None:
            return None
        return self._panels.for_product(b, a.size // a.shape[-1] if a.shape[-1] else 0)


def _stacks_fit(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether `a @ b` are stacks of products that broadcast into `out`'s shape."""
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        return False
    try:
        stacks = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return False
    return bool(out.shape == (*stacks, a.shape[-2], b.shape[-1]))


def _matmul(node: Node, opset: int) -> Body | None:
    return MatMulKernel()


def _matrix_blocks(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, blocked: bool
) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """(..., M, K) @ (K, N) as one (prod(...) * M, K) @ (K, N) product, in first-axis blocks
    [lo, hi) when `blocked`: per block, its rows of A and of the output, lo and hi."""
    if out.shape != a.shape[:-1] + b.shape[-1:] or a.shape[-1] != b.shape[0]:
        raise _Unfit
    flat_a = a.reshape(-1, a.shape[-1])
    flat_out = out.reshape(-1, out.shape[-1])
    first = out.shape[0]
    per_row = flat_out.shape[0] // first if first else 0
    blocks = []
    for lo, hi in _row_blocks(first, per_row * out.strides[-2], blocked):
        rows = slice(lo * per_row, hi * per_row)
        blocks.append((flat_a[rows], flat_out[rows], lo, hi))
    return blocks


class GemmKernel(_Planned):
    """Gemm into a preallocated output: alpha * A' @ B' + beta * C, in row blocks when an
    epilogue follows. A transposed B is already stored by columns for the skinny loop; an
    untransposed constant one is laid out so by `prepare`."""

    def __init__(self, node: Node, opset: int) -> None:
        self.alpha = float(node.attr("alpha", 1.0))
        self.beta = float(node.attr("beta", 1.0))
        self.trans_a = bool(node.attr("transA", 0))
        self.trans_b = bool(node.attr("transB", 0))
        self._panels: _Panels | None = None
        self.least_rows: int | None = None
        """As `MatMulKernel.least_rows`."""

    def prepare(self, w: np.ndarray) -> np.ndarray | None:
        """B' packed into panels (as `MatMulKernel.prepare`); else B stored by columns, unless
        transB already reads it so."""
        self._panels = _panels_for(w, self.trans_b, self.least_rows)
        if self._panels is not None or self.trans_b:
            return None
        return column_major(w)

    def plan(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        """As `Plan`: per block of rows, the product, times alpha, plus C (beta times C is a
        copy made now: such calls are not made again)."""
        a, b, out = inputs[0], inputs[1], outputs[0]
        c = inputs[2] if len(inputs) > 2 else None
        _matmul_floats(a, b, out)
        if a.ndim != 2 or b.ndim != 2:
            raise _Unfit
        left, right = (a.T if self.trans_a else a), (b.T if self.trans_b else b)
        if out.shape != (left.shape[0], right.shape[1]) or left.shape[1] != right.shape[0]:
            raise _Unfit
        addend = None
        again = True
        if c is not None and self.beta != 0.0:
            _matmul_floats(c, out)
            if np.broadcast_shapes(c.shape, out.shape) != out.shape:
                raise _Unfit
            addend = c
            if self.beta != 1.0:
                addend = c * out.dtype.type(self.beta)
                again = False
        packed = None if self._panels is None else self._panels.for_product(b, out.shape[0])
        alpha = out.dtype.type(self.alpha)
        calls: list[Callable[[], None] | None] = []
        for lo, hi in _row_blocks(out.shape[0], out.strides[0], epilogue is not None):
            block = out[lo:hi]
            calls.append(_product_call(left[lo:hi], right, block, packed))
            if self.alpha != 1.0:
                calls.append(functools.partial(np.multiply, block, alpha, out=block))
            if addend is not None:
                rows = _rows_of(addend, lo, hi, out.shape[0])
                calls.append(functools.partial(np.add, block, rows, out=block))
            calls.append(finish_call(epilogue, lo, hi))
        return calls, again


def _rows_of(addend: np.ndarray, lo: int, hi: int, rows: int) -> np.ndarray:
    """Rows [lo, hi) of Gemm's C where it has a row per output row, else C (broadcast)."""
    return addend[lo:hi] if addend.ndim == 2 and addend.shape[0] == rows > 1 else addend


def _gemm(node: Node, opset: int) -> Body | None:
    return GemmKernel(node, opset)


# -- Conv ----------------------------------------------------------------------------------------


def _im2col_rows(x, scratch, c0, channels, r0, r1, kernel, strides, dilations, pads, out_w):  # type: ignore[no-untyped-def]
    """scratch[k, (oh - r0) * out_w + ow] = X[c0 + c, oh * sh + i * dh - ph, ow * sw + j * dw - pw]
    for k = (c, i, j) and output rows oh in [r0, r1), 0 where the window lies in the padding."""
    height, width = x.shape[1], x.shape[2]
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    ph, pw = pads
    for k in prange(channels * kh * kw):
        c = c0 + k // (kh * kw)
        i = (k // kw) % kh
        j = k % kw
        shift = j * dw - pw
        # ow in [lo, hi) reads inside the row: 0 <= ow * sw + shift < width
        lo = min(out_w, max(0, (-shift + sw - 1) // sw))
        hi = min(out_w, max(lo, (width - shift + sw - 1) // sw))
        for oh in range(r0, r1):
            # slices indexed from 0 up: no wraparound checks, so the copies vectorize
            target = scratch[k, (oh - r0) * out_w : (oh - r0 + 1) * out_w]
            ih = oh * sh + i * dh - ph
            if ih < 0 or ih >= height:
                target[:] = 0.0
                continue
            target[:lo] = 0.0
            target[hi:] = 0.0
            inside = target[lo:hi]
            if sw == 1:
                source = x[c, ih, lo + shift : hi + shift]
                for t in range(hi - lo):
                    inside[t] = source[t]
            else:
                row = x[c, ih]
                for t in range(hi - lo):
                    inside[t] = row[(lo + t) * sw + shift]


_IM2COL = _jit(_im2col_rows)


def _direct_conv(phases, w, bias, out, group, strides, dilations, pads, rows):  # type: ignore[no-untyped-def]
    """Y[n, m] = B[m] + sum_{c, i, j} W[m, c, i, j] X[n, g(m) * C/g + c, shifted by (i, j)],
    one output plane per task, row by row (the row stays in L1 while every tap adds to it);
    each tap is a vectorizable sweep over the part of the row that reads inside the input.
    The input comes as `phases[n, c, h, p, q] = X[n, c, row0 + h, q * sw + p]`
    (`_split_phases`; for a unit stride, X itself with an axis of 1), so that a strided tap
    reads a contiguous run too: input column ow * sw + left is phase left % sw, position
    ow + left // sw. `rows` = (row0, height of X, first output row, end output row): only
    output rows [first, end) are computed, from the input rows `phases` holds (a band)."""
    batch, filters, _, out_w = out.shape
    sw, span = phases.shape[3], phases.shape[4]
    row0, height, oh_first, oh_end = rows
    width = sw * span
    per_group_in, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    per_group_out = filters // group
    sh = strides[0]
    dh, dw = dilations
    ph, pw = pads
    for task in prange(batch * filters):
        n = task // filters
        m = task % filters
        first = (m // per_group_out) * per_group_in
        for oh in range(oh_first, oh_end):
            row = out[n, m, oh]
            row[:] = bias[m]
            for i in range(kh):
                ih = oh * sh + i * dh - ph
                if ih < 0 or ih >= height:
                    continue
                ih -= row0
                for j in range(kw):
                    left = j * dw - pw  # iw = ow * sw + left must lie in [0, width)
                    lo = min(out_w, max(0, (-left + sw - 1) // sw))
                    hi = min(out_w, max(lo, (width - left + sw - 1) // sw))
                    phase, shift = left % sw, left // sw
                    target = row[lo:hi]  # indices from 0 up: no wraparound checks, vectorizable
                    for c in range(per_group_in):
                        weight = w[m, c, i, j]
                        source = phases[n, first + c, ih, phase, lo + shift : hi + shift]
                        for t in range(hi - lo):
                            target[t] += weight * source[t]


def _split_phases(x, phases, row0):  # type: ignore[no-untyped-def]
    """phases[n, c, h, p, q] = x[n, c, row0 + h, q * sw + p], 0 past the row's end."""
    batch, channels, _, width = x.shape
    height, sw, span = phases.shape[2], phases.shape[3], phases.shape[4]
    for task in prange(batch * channels * height):
        h = task % height
        c = (task // height) % channels
        n = task // (height * channels)
        for p in range(sw):
            for q in range(span):
                col = q * sw + p
                phases[n, c, h, p, q] = x[n, c, row0 + h, col] if col < width else 0.0


_SPLIT_PHASES = _jit(_split_phases)
_DIRECT = _jit(_direct_conv)


def _pad_rows(image: np.ndarray, target: np.ndarray, first: int, left: int) -> None:
    """`target[c, r, left + w] = image[c, first + r, w]` where that row exists, 0 elsewhere: rows
    of the image padded with zeros (`first` may be negative: rows above the image)."""
    height, width = image.shape[1:]
    rows = target.shape[1]
    lo, hi = max(first, 0), min(first + rows, height)
    if hi <= lo:
        target.fill(0.0)
        return
    top, bottom = lo - first, hi - first
    target[:, :top] = 0.0
    target[:, bottom:] = 0.0
    target[:, top:bottom, :left] = 0.0
    target[:, top:bottom, left + width :] = 0.0
    target[:, top:bottom, left : left + width] = image[:, lo:hi]


def _shift_add(products, out, r0, r1, filters, kh, kw, dh, dw, padded_w, accumulate, bias):  # type: ignore[no-untyped-def]
    """out[m, oh, ow] (+)= sum_{i, j} products[(i * kw + j) * filters + m, q] for output rows
    oh in [r0, r1), where q = (oh - r0 + i * dh) * padded_w + ow + j * dw: the products of `kh`
    rows of kn2row's taps over the padded rows they read, each tap read where its window
    starts; added to what `out` holds when `accumulate`, else written over it; then bias[m]
    added to each row (none when `bias` is empty: the last call of a block passes it)."""
    out_w = out.shape[2]
    for m in prange(filters):
        for oh in range(r0, r1):
            row = out[m, oh]
            base = (oh - r0) * padded_w
            first = products[m, base : base + out_w]
            if accumulate:
                for t in range(out_w):
                    row[t] += first[t]
            else:
                for t in range(out_w):
                    row[t] = first[t]
            for tap in range(1, kh * kw):
                i = tap // kw
                j = tap % kw
                start = base + i * dh * padded_w + j * dw
                source = products[tap * filters + m, start : start + out_w]
                for t in range(out_w):
                    row[t] += source[t]
            if bias.size:
                value = bias[m]
                for t in range(out_w):
                    row[t] += value


_SHIFT_ADD = _jit(_shift_add)
_NO_BIAS = np.empty(0, np.float32)
"""The `bias` that tells `_shift_add` to add none."""


# Winograd F(2x2, 3x3) (Lavin and Gray, 2016): a 3x3 unit-stride convolution computed per 2x2
# tile of outputs from the 4x4 tile of inputs it reads. With the input tile d, the filter g and
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
#   G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]],
#   A^T = [[1, 1, 1, 0], [0, 1, -1, -1]],
# the output tile is A^T [(G g G^T) * (B^T d B)] A (* elementwise). Summed over input channels,
# the elementwise product becomes 16 matrix products, one per position k of the 4x4 tile:
# M[k] = U[k] @ V[k] with U[k] (filters x channels) and V[k] (channels x tiles). That is 16
# multiplies per 4 outputs per channel pair where the direct sum takes 36: 2.25x fewer.

_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def winograd_filters(w: np.ndarray) -> np.ndarray:
    """U = G g G^T of every (filter, channel) pair of 3x3 weights `w` (M, C, 3, 3), as float32
    of shape (16, M, C): U[4 * a + b] is the (a, b) entry of every pair's 4x4 transform
    (computed in float64, by a Numba loop: a compiled model does this once per weight)."""
    filters, channels = w.shape[:2]
    u = np.empty((16, filters, channels), dtype=np.float32)
    _pick(_WINOGRAD_FILTERS, w.size)(np.ascontiguousarray(w, dtype=np.float32), u)
    return u


def _winograd_filters(w, u):  # type: ignore[no-untyped-def]
    """u[4 * a + b, m, c] = (G w[m, c] G^T)[a, b]: G's rows (g0, (g0 + g1 + g2) / 2,
    (g0 - g1 + g2) / 2, g2) combine the filter's rows into t = G g, then t's columns."""
    filters, channels = w.shape[:2]
    for m in prange(filters):
        for c in range(channels):
            g = w[m, c]
            t = np.empty((4, 3))  # one per iteration: threads share nothing
            for j in range(3):
                g0, g1, g2 = np.float64(g[0, j]), np.float64(g[1, j]), np.float64(g[2, j])
                t[0, j] = g0
                t[1, j] = 0.5 * (g0 + g1 + g2)
                t[2, j] = 0.5 * (g0 - g1 + g2)
                t[3, j] = g2
            for a in range(4):
                t0, t1, t2 = t[a, 0], t[a, 1], t[a, 2]
                u[4 * a, m, c] = t0
                u[4 * a + 1, m, c] = 0.5 * (t0 + t1 + t2)
                u[4 * a + 2, m, c] = 0.5 * (t0 - t1 + t2)
                u[4 * a + 3, m, c] = t2


def _winograd_in(image, v, t0, t1, tiles_w, ph, pw):  # type: ignore[no-untyped-def]
    """V[4 * a + b, c, t] = (B^T d B)[a, b] for the 4x4 input tile d of every channel c and
    tile t of tile rows [t0, t1) (tile (ti, tj) reads rows 2 ti - ph .., columns 2 tj - pw ..;
    outside the image, zeros), t counted from tile row t0. Per tile row, the four input rows
    are padded into a buffer and combined into B^T d row by row, then each tile's columns are
    combined: loops over contiguous rows, which vectorize."""
    channels, height, width = image.shape
    span = 2 * tiles_w + 2
    first, last = min(max(pw, 0), span), min(max(width + pw, 0), span)  # columns in the image
    for c in prange(channels):
        plane = image[c]
        rows = np.zeros((4, span), dtype=np.float32)
        s = np.empty((4, span), dtype=np.float32)
        for ti in range(t0, t1):
            r = 2 * ti - ph
            for a in range(4):
                row = rows[a]
                if 0 <= r + a < height and first < last:
                    source = plane[r + a]
                    for q in range(first, last):
                        row[q] = source[q - pw]
                    row[:first] = 0.0
                    row[last:] = 0.0
                else:
                    row[:] = 0.0
            for q in range(span):  # s = B^T d, across every tile of the row at once
                s[0, q] = rows[0, q] - rows[2, q]
                s[1, q] = rows[1, q] + rows[2, q]
                s[2, q] = rows[2, q] - rows[1, q]
                s[3, q] = rows[1, q] - rows[3, q]
            base = (ti - t0) * tiles_w
            for a in range(4):  # V = s B, tile by tile
                sa = s[a]
                v0, v1, v2, v3 = v[4 * a, c], v[4 * a + 1, c], v[4 * a + 2, c], v[4 * a + 3, c]
                for tj in range(tiles_w):
                    j = 2 * tj
                    v0[base + tj] = sa[j] - sa[j + 2]
                    v1[base + tj] = sa[j + 1] + sa[j + 2]
                    v2[base + tj] = sa[j + 2] - sa[j + 1]
                    v3[base + tj] = sa[j + 1] - sa[j + 3]


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _winograd_tile(products, f, t):  # type: ignore[no-untyped-def]
    """The 2x2 output tile A^T m A (row-major) of the 4x4 tile m = products[:, f, t]."""
    s0 = products[0, f, t] + products[4, f, t] + products[8, f, t]  # s = A^T m
    s1 = products[1, f, t] + products[5, f, t] + products[9, f, t]
    s2 = products[2, f, t] + products[6, f, t] + products[10, f, t]
    s3 = products[3, f, t] + products[7, f, t] + products[11, f, t]
    e0 = products[4, f, t] - products[8, f, t] - products[12, f, t]
    e1 = products[5, f, t] - products[9, f, t] - products[13, f, t]
    e2 = products[6, f, t] - products[10, f, t] - products[14, f, t]
    e3 = products[7, f, t] - products[11, f, t] - products[15, f, t]
    return s0 + s1 + s2, s1 - s2 - s3, e0 + e1 + e2, e1 - e2 - e3  # y = s A


def _winograd_out(products, out, bias, t0, t1, tiles_w):  # type: ignore[no-untyped-def]
    """out[f, 2 ti + i, 2 tj + j] = (A^T m A)[i, j] + bias[f] for the 4x4 tile m of
    products[:, f, t] of every filter f and tile t of tile rows [t0, t1), where the output
    has those rows and columns (t counted from tile row t0)."""
    filters, out_h, out_w = out.shape
    full = out_w // 2  # tiles with both output columns
    for f in prange(filters):
        plane = out[f]
        shift = bias[f]
        for ti in range(t0, t1):
            oh = 2 * ti
            base = (ti - t0) * tiles_w
            top = plane[oh]
            if oh + 1 < out_h:
                bottom = plane[oh + 1]
                for tj in range(full):
                    y00, y01, y10, y11 = _winograd_tile(products, f, base + tj)
                    top[2 * tj] = y00 + shift
                    top[2 * tj + 1] = y01 + shift
                    bottom[2 * tj] = y10 + shift
                    bottom[2 * tj + 1] = y11 + shift
                if full < tiles_w:
                    y00, y01, y10, y11 = _winograd_tile(products, f, base + full)
                    top[2 * full] = y00 + shift
                    bottom[2 * full] = y10 + shift
            else:
                for tj in range(tiles_w):
                    y00, y01, y10, y11 = _winograd_tile(products, f, base + tj)
                    top[2 * tj] = y00 + shift
                    if 2 * tj + 1 < out_w:
                        top[2 * tj + 1] = y01 + shift


_WINOGRAD_FILTERS = _jit(_winograd_filters)
_WINOGRAD_IN = _jit(_winograd_in)
_WINOGRAD_OUT = _jit(_winograd_out)

_SCRATCH = threading.local()
"""Each thread's Conv and ConvTranspose scratch buffers (`_scratch`): im2col's patches, kn2row's
padded rows, stacked weights and products, a chain's bands."""


def release_scratch() -> int:
    """Drop this thread's scratch buffers (the next kernel that needs one makes it again);
    returns the bytes they held. The memory benchmark calls it when it drops a runtime, so that
    a second runtime's workspace counts as its own."""
    held = 0
    for name, buffer in list(vars(_SCRATCH).items()):
        held += buffer.nbytes
        delattr(_SCRATCH, name)
    return held


_WORKSPACE = threading.local()
"""The workspace region the runtime gave the step the calling thread runs (`use_workspace`)."""

WORKSPACE_CHAIN_SHARE = 4
"""In a workspace region, a chain's bands are sized to 1/WORKSPACE_CHAIN_SHARE of its room each
(it holds three at once: two bands and a block of output; its input rows are copied only where
they are not contiguous), which leaves a quarter of it to its stages' own scratch. Thinner bands
mean more blocks and more rows computed twice: an eighth cost yolov6's chains up to 2x."""


class Workspace:
    """A float32 workspace region handed out by name: a name keeps its slice while the region is
    set (as a thread buffer of that name would), new names take the next free floats. The
    runtime keeps one per step and binding; `high` keeps the most its kernels ever took."""

    __slots__ = ("floats", "high", "taken", "used")

    def __init__(self, floats: np.ndarray) -> None:
        self.floats = floats
        self.taken: dict[str, np.ndarray] = {}
        self.used = 0
        self.high = 0
        """The most floats taken at once, over every time the region was set."""

    def reset(self) -> None:
        """Every float free again (`high` stays)."""
        self.taken = {}
        self.used = 0

    def take(self, name: str, size: int) -> np.ndarray | None:
        """`size` floats for `name`, or None when the region has no room left for them."""
        held = self.taken.get(name)
        if held is not None and held.size >= size:
            return held[:size]
        if self.used + size > self.floats.size:
            return None
        held = self.taken[name] = self.floats[self.used : self.used + size]
        self.used += -(-size // 16) * 16  # the next slice starts on a 64-byte boundary
        self.high = max(self.high, min(self.used, self.floats.size))
        return held


def _scoped(run: Callable[..., None], *arguments: Any) -> None:
    """`run(*arguments)` in a `_ScratchScope` of its own."""
    with _ScratchScope():
        run(*arguments)


class _ScratchScope:
    """Scratch taken from the workspace region inside `with _ScratchScope():` is free again on
    exit: the region's free floats and its names go back to what they were on entry. A kernel
    call is one scope, and so is a block of a chain: what a call takes it no longer needs once it
    returns, and the next call (another stage, another block, a larger request) takes its
    slices from the same floats instead of from what the region has left. Without a region
    (thread buffers), nothing happens."""

    __slots__ = ("region", "taken", "used")

    def __enter__(self) -> None:
        region = self.region = getattr(_WORKSPACE, "region", None)
        if region is not None:
            self.used, self.taken = region.used, region.taken
            region.taken = dict(region.taken)

    def __exit__(self, *exc: object) -> None:
        region = self.region
        if region is not None:
            region.used, region.taken = self.used, self.taken


def use_workspace(region: Workspace | np.ndarray | None) -> None:
    """Serve the scratch of the kernels this thread runs next from `region` (a float32 array, or
    a `Workspace` over one, then reset), whose bytes no value in use shares while it is set
    (`sod2.opt.workspace`), and size their blocks to it; None: from the thread's own buffers,
    with the default block budgets. A request that does not fit the region falls back to the
    thread's buffer."""
    if isinstance(region, np.ndarray):
        region = Workspace(region)
    elif region is not None:
        region.reset()
    _WORKSPACE.region = region


def _budget(nbytes: int, *names: str) -> int:
    """A kernel's default scratch budget `nbytes` for the buffers `names`; in a workspace region,
    at most the bytes the region has left for them (its free room plus what they hold), so that
    they fit it (at least 64 bytes)."""
    region = getattr(_WORKSPACE, "region", None)
    if region is None:
        return nbytes
    room = region.floats.size - region.used
    for name in names:
        held = region.taken.get(name)
        room += 0 if held is None else held.size
    return max(64, min(nbytes, 4 * room - 64 * len(names)))


def _in_region() -> bool:
    """Whether the running step's scratch comes from a workspace region (`use_workspace`)."""
    return getattr(_WORKSPACE, "region", None) is not None


def _scratch(name: str, size: int) -> np.ndarray:
    """Scratch `name` of `size` floats (shared by every kernel, which uses it only while it
    runs): from the workspace region set for the running step when it has room, else this
    thread's buffer of that name, grown as needed."""
    region = getattr(_WORKSPACE, "region", None)
    if region is not None:
        held = region.take(name, size)
        if held is not None:
            return held
    buffer = getattr(_SCRATCH, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.float32)
        setattr(_SCRATCH, name, buffer)
    return buffer[:size]


CONV_STRATEGIES = (
    "pointwise",
    "im2col",
    "kn2row",
    "winograd",
    "direct",
    "windows",
    "panels",
    "tiles",
)
"""Ways ConvKernel computes a convolution (see the module docstring)."""

CONV_PANEL_MAX_POSITIONS = 128
"""A convolution of one group, a kernel of more than one tap, PANEL_MIN_COLUMNS filters or more
and at most this many output positions per image, which would otherwise be a Winograd, a kn2row
or an im2col, is a product of the positions (rows, their patches gathered from the image where
the product reads them) against the filters packed into panels (`panels`). Such images are
deep and small: their products are wide but short, Winograd's transformed filters (16 per 9
weights) stream from memory for a few tiles each, and an sgemm packs its operands again at
every call. Inside dgnet, 3x3 over 512 channels of 7x7 took 1.38 ms against Winograd's 2.17;
over 256 channels of 14x14 (196 positions), 1.37 against Winograd's 1.14 (one-off)."""

TILES_MAX_WEIGHT_BYTES = 1 << 17
"""A convolution of one group with weights of at most this many bytes, which would otherwise be
a kn2row (not a gate's), an im2col or a direct loop, runs as register tiles over the filters and
a run of output positions along a row (`tiles`). Shallow convolutions are where the sgemm of the
others is slowest: cold, a 7x7 stride-2 stem from 3 to 8 channels of 384x448 took 1.05 ms as
tiles against the direct loop's 3.13 (onnxruntime: 1.25), 3x3 over 16 channels of 52x52
0.25 ms against kn2row's 0.64 (onnxruntime: 0.25), over 24 channels of 26x26 0.21 against
0.53 (one-off). Wider ones read their weights from beyond L2: inside blockdrop, a 1x1
stride-2 one from 256 to 512 channels (512 KiB) took 9.4 ms as tiles against im2col's 3.7."""

TILES_SMALL_IMAGE_WEIGHT_BYTES = 1 << 20
"""An image of CONV_PANEL_MAX_POSITIONS output positions or fewer is a run or two of `tiles`,
which reads each weight once or twice: weights up to this many bytes run as `tiles` there
rather than `panels`. Cold, 3x3 over 64 channels of 7x7 took 0.31 ms as tiles against 0.49
as panels and 0.44 as Winograd; over 128 channels, 0.39 against 0.46 and 0.47; over 256
(2.3 MiB), 0.96 against panels' 0.78, where the weights stream from memory (one-off)."""

TILES_WINOGRAD_WEIGHT_BYTES = 3 << 17
"""A convolution with weights of at most this many bytes (3x3 over 64 or 96 channels) runs as
`tiles` where it would be a Winograd, whatever its image: its weights stay in L2, and its
multiplies, 2.25x Winograd's, cost less than Winograd's transforms, which grow with channels +
filters. Cold, 3x3 from 64 to 64 channels took 0.16 ms as tiles against Winograd's 0.40 at
8x8, 0.69 against 0.71 at 32x32, 3.02 against 3.41 at 80x80 and 7.88 against 8.99 at 160x160;
from 96 to 96 channels of 56x56, 2.40 against 3.18. Over 128 channels (576 KiB) tiles still won
at 28x28 (1.11 against 1.53 ms) but not at 56x56 (3.76 against 3.61) (one-off). Inside the
models, in one process alternating, small scale: skipnet 4.26 -> 3.72 ms, sd_vae_encoder 32.3
-> 29.9, convnet_aig 4.00 -> 3.69, ranet 3.77 -> 3.40; paper scale: yolov6 99.2 -> 93.0,
convnet_aig, skipnet and ranet within 2% either way (one-off)."""

TILES_SHALLOW_DEPTH = 32
TILES_SHALLOW_FILTERS = 128
"""A convolution of fewer than TILES_SHALLOW_DEPTH taps per filter (channels per group times
kernel taps) and at least TILES_SHALLOW_FILTERS filters is never `tiles`: its few multiplies per
output cost less than `tiles`' copy of each tile into the output, and im2col's sgemm writes the
output directly. Cold, 3x3 stride 2 from 1 to 256 channels of 400x80 (conformer's
subsampling) took 3.82 ms as tiles against 1.40 as an im2col, from 2 channels 2.46 against
0.90, 3x3 stride 1 from 1 to 256 channels 7.14 against 2.75; from 3 to 32 channels (27 taps)
they were within 10% either way, and a 7x7 stem to 8 channels took 0.88 as tiles against 2.66
(one-off)."""

TILES_MIN_TASKS = 4
"""`tiles` splits its filters among tasks (`_tiles_chunk`) where an image has fewer runs of
positions than this: a 7x7 image is one run."""

DIRECT_MAX_TAPS = 16
"""A grouped convolution with at most this many taps per output value (C/group * kernel size)
runs as the direct loop nest: an im2col would copy every pixel that many times for a tiny sgemm."""


KN2ROW_BLOCK_BYTES = 1 << 23
"""kn2row's products of one block of output rows cover about this many bytes."""

KN2ROW_MIN_ROWS = 8
"""kn2row runs one sgemm of every tap's filters per block where a block has at least this many
output rows per row of reach (the `(kernel height - 1) * dilation` rows of products that only
the block's edge reads, computed twice), else one sgemm per kernel row of taps, which computes
no row twice; outside a workspace region, blocks have at least this many rows."""

WINOGRAD_BLOCK_BYTES = 1 << 23
"""Winograd's transformed inputs and products of one block of tile rows cover about this many
bytes (16 floats per tile for each input channel and each filter)."""

WINOGRAD_MIN_CHANNELS = 64
"""A 3x3 unit-stride convolution of one group runs as Winograd F(2x2, 3x3) where it has at least
this many input channels and filters. The 16 products then take 2.25x fewer multiplies than
kn2row's; with fewer channels they are too thin for a fast sgemm to pay for the transforms,
whose cost grows with channels + filters where the products' grows with channels * filters
(`python benchmarks/kernels.py --ops Conv --strategies` compares them)."""

DIRECT_MAX_FILTERS = 8
"""A convolution with at most this many filters per group (a gate, a mask head) runs as the
direct loop nest, which needs no workspace: im2col would copy every pixel kernel-size times to
feed a product of a few rows. Over KN2ROW_GATE_CHANNELS input channels or more, a unit-stride
one of one group is a kn2row instead."""

KN2ROW_GATE_CHANNELS = 64
"""A unit-stride convolution of one group with few filters (DIRECT_MAX_FILTERS) over at least
this many input channels is a kn2row, which copies each pixel once, and whose products are
thin but long: a 3x3 gate over 1024 channels of 14x14 took 0.42 ms against the direct loop's
0.78 ms, one over 64 channels of 56x56 0.26 ms against 0.34 ms (`python benchmarks/kernels.py
--ops Conv --strategies`). Over fewer channels the direct loop is about as fast and takes no
workspace (16 channels to 2 filters: 0.11 ms against 0.09 ms), so the memory plan stays as it
was where the channels are few, as in the small-scale zoo."""


def _conv_operands(inputs: Sequence[Any], outputs: Sequence[Any]) -> tuple[Any, Any, Any, Any]:
    """X, W, the bias (or None) and the output of a 1-D or 2-D float32 (transposed)
    convolution; `_Unfit` for anything else."""
    x, w, out = inputs[0], inputs[1], outputs[0]
    bias = inputs[2] if len(inputs) > 2 else None
    _float32(x, w, out, *(() if bias is None else (bias,)))
    if x.ndim not in (3, 4) or w.ndim != x.ndim or out.ndim != x.ndim:
        raise _Unfit
    return x, w, bias, out


def _winograd_fits(
    group: int, w_shape: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> bool:
    """Whether a convolution runs as Winograd: 3x3, unit stride and dilation, one group, at
    least WINOGRAD_MIN_CHANNELS input channels and filters."""
    return (
        group == 1
        and tuple(w_shape[2:]) == (3, 3)
        and tuple(strides) == (1, 1)
        and tuple(dilations) == (1, 1)
        and min(w_shape[0], w_shape[1]) >= WINOGRAD_MIN_CHANNELS
    )


def conv_strategy(
    group: int,
    channels: Any,
    w_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    unpadded: bool,
) -> str:
    """The strategy a 2-D convolution of `group` groups over `channels` input channels with
    weights of `w_shape` runs as (CONV_STRATEGIES): pointwise for a 1x1 unit-stride unpadded
    kernel, direct for a grouped convolution with few taps per output value, Winograd for a
    wide 3x3 unit-stride one, kn2row for another unit-stride one of one group with no more
    filters than input channels (a gate's few filters over KN2ROW_GATE_CHANNELS channels or
    more included, `_kn2row_fits`), direct for any other with few filters per group, else
    im2col. Nothing here depends on the image's size, so the memory plan can tell it before any
    input is seen (`workspace_floats`)."""
    taps = w_shape[1] * w_shape[2] * w_shape[3]
    if taps == w_shape[1] and tuple(strides) == (1, 1) and unpadded:
        return "pointwise"
    if group > 1 and taps <= DIRECT_MAX_TAPS:
        return "direct"
    if _winograd_fits(group, w_shape, strides, dilations):
        return "winograd"
    if _kn2row_fits(group, channels, w_shape, tuple(strides) == (1, 1)):
        return "kn2row"
    if w_shape[0] // group <= DIRECT_MAX_FILTERS:
        return "direct"
    return "im2col"


def _kn2row_fits(group: int, channels: Any, w_shape: Sequence[int], unit_stride: bool) -> bool:
    """Whether a convolution that is not pointwise, direct for its few taps, or Winograd runs as
    kn2row: unit stride, one group, no more filters than input channels, and, with few filters
    (a gate, DIRECT_MAX_FILTERS), at least KN2ROW_GATE_CHANNELS input channels."""
    filters = w_shape[0]
    return (
        group == 1
        and unit_stride
        and filters <= channels
        and (filters > DIRECT_MAX_FILTERS or w_shape[1] >= KN2ROW_GATE_CHANNELS)
    )


class ConvKernel:
    """Conv (1-D and 2-D, float32) into a preallocated output; see the module docstring.

    `strategy` forces one of CONV_STRATEGIES for every shape (benchmarks compare them); None picks
    per shape. The im2col scratch buffer is the calling thread's, shared by every ConvKernel.
    """

    def __init__(self, node: Node, opset: int, strategy: str | None = None) -> None:
        if strategy is not None and strategy not in CONV_STRATEGIES:
            raise Sod2Error(f"Conv strategy {strategy!r} is not one of {CONV_STRATEGIES}")
        self.context = KernelContext(node, opset)
        self.group = int(node.attr("group", 1))
        self.kernel_shape = node.attr("kernel_shape", None)
        self.strategy = strategy
        self.unit_stride = all(int(v) == 1 for v in node.attr("strides", None) or (1,))
        self._geometries: dict[tuple[tuple[int, ...], tuple[int, ...]], WindowGeometry] = {}
        self.dilated = any(int(v) != 1 for v in node.attr("dilations", None) or (1,))
        self._packed: tuple[np.ndarray, np.ndarray] | None = None
        self._transformed: tuple[np.ndarray, np.ndarray] | None = None
        self._filters_packed: tuple[np.ndarray, np.ndarray] | None = None
        self._tables: dict[tuple[Any, ...], Any] = {}
        """Offset tables of `panels` and `tiles`, by shape."""
        self.least_rows: int | None = None
        """The fewest output positions an image can have (the rows of `panels`' product),
        where the runtime knows (before `prepare`): filters are packed into panels only where
        it is CONV_PANEL_MAX_POSITIONS or fewer."""

    def prepare(self, w: np.ndarray, transformed: np.ndarray | None = None) -> None:
        """Lay out the constant weights `w` once, now, where the strategy that takes them would
        otherwise do it at every call: the filters packed into panels, where small images take
        them (`least_rows`); Winograd's transformed filters (`transformed`, where an earlier
        compile already computed `winograd_filters(w)`), or kn2row's stacking of every tap's
        filters. The copies live as long as the kernel, like the model's weights."""
        if not (isinstance(w, np.ndarray) and w.dtype == _F32 and w.ndim in (3, 4)):
            return
        if self._takes_panels(w.shape):
            self._filters_packed = (w, _filter_panels(w))
        if w.ndim != 4:
            return
        filters, channels, kh, kw = w.shape
        winograd = self.strategy in (None, "winograd") and self.unit_stride and not self.dilated
        if self.strategy is None and tiles_fit("winograd", self.group, w.shape):
            winograd = False  # (`tiles` takes it, reading W as it is)
        if winograd and _winograd_fits(self.group, w.shape, (1, 1), (1, 1)):
            if transformed is None or transformed.shape != (16, filters, channels):
                transformed = winograd_filters(w)
            self._transformed = (w, transformed)
            return
        kn2row = (
            self.strategy in (None, "kn2row")
            and _kn2row_fits(self.group, channels, w.shape, self.unit_stride)
            and kh * kw > 1
        )
        if kn2row:
            packed = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(
                kh * kw * filters, channels
            )
            self._packed = (w, packed)

    def _takes_panels(self, w_shape: tuple[int, ...]) -> bool:
        """Whether `prepare` packs filters of `w_shape` into panels: one group, a machine with
        panels, and `panels` forced, or PANEL_MIN_COLUMNS filters, weights over
        TILES_SMALL_IMAGE_WEIGHT_BYTES (smaller ones run as `tiles` there) and small images
        possible (`least_rows`, CONV_PANEL_MAX_POSITIONS); not a 1x1 kernel (inside blockdrop, a 1x1
        stride-2 one from 1024 to 2048 channels onto 12x14 took 6.4 ms as panels against 3.8
        as an im2col, one-off)."""
        if self.group != 1 or panel.TILE is None or self.strategy not in (None, "panels"):
            return False
        if self.strategy == "panels":
            return True
        least = self.least_rows
        if math.prod(w_shape[2:]) == 1:
            return False  # (a tap per channel: each step of the product gathers a new line)
        if 4 * math.prod(w_shape) <= TILES_SMALL_IMAGE_WEIGHT_BYTES:
            return False  # (small images run as `tiles`, which reads W as it is)
        least_fits = least is not None and least <= CONV_PANEL_MAX_POSITIONS
        return w_shape[0] >= PANEL_MIN_COLUMNS and least_fits

    def transformed(self) -> np.ndarray | None:
        """The Winograd filters `prepare` computed (None where it computed none), for the
        compile cache to keep beside the weights."""
        return None if self._transformed is None else self._transformed[1]

    # -- running -------------------------------------------------------------------------------

    def __call__(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None = None
    ) -> None:
        run, arguments = self._settle(inputs, outputs)
        with _ScratchScope():
            run(*arguments, epilogue)

    def bind(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None = None
    ) -> Callable[[], None] | None:
        """`self(inputs, outputs, epilogue)` as a call without arguments (`Bindable`), whose
        checks, geometry and strategy are settled now (the strategy's budget is the workspace
        region the step runs in, the same at every run of a binding); None where X or W is not
        C-contiguous (a call reads a copy made now), or for a forced strategy (which may decline
        the operands when it runs, and a call then takes the reference)."""
        if self.strategy is not None:
            return None
        run, arguments = self._settle(inputs, outputs)
        if not (inputs[0].flags.c_contiguous and inputs[1].flags.c_contiguous):
            return None
        return functools.partial(_scoped, run, *arguments, epilogue)

    def _settle(
        self, inputs: Sequence[Any], outputs: Sequence[Any]
    ) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """The strategy's method for these operands and its arguments but the epilogue: X and W
        C-contiguous (copied where they are not), 1-D lifted to 2-D, the geometry."""
        x, w, bias, out = _conv_operands(inputs, outputs)
        batch, filters = x.shape[0], w.shape[0]
        if not self.fits(x.shape, w, bias):
            raise _Unfit
        geometry = self._geometry(x.shape[2:], w.shape[2:])
        out_spatial = geometry.output_shape(x.shape[2:])
        if min(out_spatial) < 1:
            raise _Unfit  # the kernel does not fit the padded input: the reference says so
        if out.shape != (batch, filters, *out_spatial):
            raise Sod2Error(
                f"node {self.context.node.name!r} (Conv): output buffer {list(out.shape)} does "
                f"not fit X {list(x.shape)} and W {list(w.shape)} (expected "
                f"{[batch, filters, *out_spatial]})"
            )
        if x.ndim == 3:  # 1-D: a 2-D convolution over a height of 1
            x, w, out, geometry = x[:, :, None], w[:, :, None], out[:, :, None], _lift(geometry)
        x, w = _contiguous(x), _contiguous(w)
        run = getattr(self, "_" + self._choose(x.shape, w.shape, geometry))
        return run, (x, w, bias, out, geometry)

    def fits(self, x_shape: tuple[int, ...], w: np.ndarray, bias: np.ndarray | None) -> bool:
        """True when X of `x_shape`, W and the bias (or None) make a convolution this kernel
        computes as `__call__` would (channels, groups, bias length, kernel_shape)."""
        channels, filters = x_shape[1], w.shape[0]
        if channels != w.shape[1] * self.group or filters % self.group:
            return False
        if bias is not None and bias.shape != (filters,):
            return False
        return self.kernel_shape is None or tuple(self.kernel_shape) == w.shape[2:]

    def run_with(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
    ) -> None:
        """A 2-D convolution of C-contiguous `x` into C-contiguous `out` with `geometry` given
        (a band's, see `BandChain`), by the strategy `__call__` would pick for it."""
        run = getattr(self, "_" + self._choose(x.shape, w.shape, geometry))
        with _ScratchScope():
            run(x, w, bias, out, geometry, None)

    def strategy_for(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> str:
        """The strategy `__call__` uses for these input shapes (see `_choose`)."""
        geometry = self._geometry(tuple(x_shape[2:]), tuple(w_shape[2:]))
        if len(x_shape) == 3:
            x_shape, w_shape = (*x_shape[:2], 1, x_shape[2]), (*w_shape[:2], 1, w_shape[2])
            geometry = _lift(geometry)
        return self._choose(tuple(x_shape), tuple(w_shape), geometry)

    def _choose(
        self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], geometry: WindowGeometry
    ) -> str:
        """The strategy `conv_strategy` picks from the shapes (unless one was forced), refined
        where the step's workspace holds the refinement's scratch: `tiles` where `tiles_fit`,
        else `panels` for a small image whose filters `prepare` packed."""
        if self.strategy is not None:
            return self.strategy
        unpadded = not any(geometry.pads_begin + geometry.pads_end)
        strategy = conv_strategy(
            self.group, x_shape[1], w_shape, geometry.strides, geometry.dilations, unpadded
        )
        small = math.prod(geometry.output_shape(x_shape[2:])) <= CONV_PANEL_MAX_POSITIONS
        if tiles_fit(strategy, self.group, w_shape, small):
            _, floats = _tiles_block(x_shape, w_shape, geometry)
            if floats and _budget(4 * floats, "phases") >= 4 * floats:
                return "tiles"
        packed = self._filters_packed is not None and strategy in ("winograd", "kn2row", "im2col")
        if packed and small and self._panels_fit(x_shape, w_shape, geometry):
            return "panels"
        return strategy

    def _panels_fit(
        self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], geometry: WindowGeometry
    ) -> bool:
        """Whether `panels`' scratch (`_panels_scratch`) fits what the step's workspace region
        has left (outside a region, the thread's buffers take it)."""
        (padded_h, padded_w), floats = _panels_scratch(x_shape, w_shape, geometry)
        if _copies_image(x_shape, (padded_h, padded_w), geometry):
            floats += x_shape[1] * padded_h * padded_w
        need = 4 * floats + 128  # (two slices' alignment)
        return _budget(need, "padded", "products") >= need

    def _geometry(self, spatial: tuple[int, ...], kernel: tuple[int, ...]) -> WindowGeometry:
        key = (spatial, kernel)
        geometry = self._geometries.get(key)
        if geometry is None:
            geometry = self._geometries[key] = window_geometry(self.context, spatial, kernel)
        return geometry

    def _pointwise(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """A 1x1 kernel: Y[n, g] = W[g] @ X[n, g] over the flattened image, no im2col."""
        batch, channels = x.shape[:2]
        filters, group = w.shape[0], self.group
        positions = x.shape[2] * x.shape[3]
        images = x.reshape(batch, group, channels // group, positions)
        weights = w.reshape(group, filters // group, channels // group)
        targets = out.reshape(batch, group, filters // group, positions)
        biases = None if bias is None else bias.reshape(group, filters // group)
        for n in _images(batch, epilogue):
            matmul_into(weights, images[n], targets[n], biases)

    def _patches(self, rows: int, columns: int) -> np.ndarray:
        """A (rows, columns) view of this thread's scratch buffer, shared by every ConvKernel
        (a kernel uses it only while it runs), grown as needed."""
        return _scratch("patches", rows * columns).reshape(rows, columns)

    def _im2col(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """Per image, group and block of output rows: patches into the scratch, one sgemm."""
        batch, channels = x.shape[:2]
        group = self.group
        per_group_in, per_group_out = channels // group, w.shape[0] // group
        out_h, out_w = out.shape[2:]
        taps = per_group_in * w.shape[2] * w.shape[3]
        weights = w.reshape(group, per_group_out, taps)  # a view: W is C-contiguous
        block = _even(out_h, _budget(IM2COL_BLOCK_BYTES, "patches") // (4 * taps * out_w))
        columns = self._patches(taps, block * out_w)
        args = (w.shape[2:], geometry.strides, geometry.dilations, geometry.pads_begin)
        targets = out.reshape(batch, group, per_group_out, out_h * out_w)
        biases = None if bias is None else bias.reshape(group, per_group_out)
        for n in _images(batch, epilogue):
            for g in range(group):
                for r0 in range(0, out_h, block):
                    r1 = min(out_h, r0 + block)
                    count = (r1 - r0) * out_w
                    im2col = _pick(_IM2COL, taps * count)
                    im2col(x[n], columns, g * per_group_in, per_group_in, r0, r1, *args, out_w)
                    target = targets[n, g, :, r0 * out_w : r1 * out_w]
                    bias_g = None if biases is None else biases[g]
                    matmul_into(weights[g], columns[:, :count], target, bias_g)

    def _kn2row(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """Unit stride, one group: per block of output rows, the padded input rows it reads are
        copied once (not once per tap, as im2col does), one sgemm of every tap's filters
        (kh * kw * M rows) runs against them, then each output row is the sum of the taps'
        products read at their shifts."""
        if self.group != 1 or geometry.strides != (1, 1):
            raise _Unfit
        batch, channels, _, width = x.shape
        filters, _, kh, kw = w.shape
        dh, dw = geometry.dilations
        (ph, pw), ew = geometry.pads_begin, geometry.pads_end[1]
        padded_w = width + pw + ew
        out_h = out.shape[2]
        taps = kh * kw
        packed = self._packed
        if packed is not None and packed[0] is w:
            stacked = packed[1]
        else:
            stacked = _scratch("stacked", taps * filters * channels)
            np.copyto(stacked.reshape(kh, kw, filters, channels), w.transpose(2, 3, 0, 1))
            stacked = stacked.reshape(taps * filters, channels)
        reach = (kh - 1) * dh  # padded rows a block of output rows reads beyond its own
        block, rows_of_taps = self._kn2row_block(channels, filters, kh, kw, reach, padded_w)
        block = _even(out_h, block)
        span = (rows_of_taps - 1) * dh  # product rows a block computes beyond its own
        products = _scratch("products", rows_of_taps * kw * filters * (block + span) * padded_w)
        band = _scratch("padded", channels * (block + reach) * padded_w)
        stacked_rows = rows_of_taps * kw * filters  # the stacked filters of one sgemm
        for n in _images(batch, epilogue):
            for r0 in range(0, out_h, block):
                r1 = min(out_h, r0 + block)
                rows = r1 - r0 + reach
                padded = band[: channels * rows * padded_w].reshape(channels, rows, padded_w)
                _pad_rows(x[n], padded, r0 - ph, pw)
                count = (r1 - r0 + span) * padded_w
                product = products[: stacked_rows * count].reshape(stacked_rows, count)
                shift_add = _pick(_SHIFT_ADD, stacked_rows * (r1 - r0) * out.shape[3])
                for i in range(0, kh, rows_of_taps):  # kernel rows i.. read from padded row i*dh
                    first = i * dh
                    columns = padded[:, first : first + r1 - r0 + span].reshape(channels, count)
                    filters_of = stacked[i * kw * filters : i * kw * filters + stacked_rows]
                    matmul_into(filters_of, columns, product)
                    last = i + rows_of_taps >= kh
                    added = bias if last and bias is not None else _NO_BIAS
                    args = (filters, rows_of_taps, kw, dh, dw, padded_w, i > 0, added)
                    shift_add(product, out[n], r0, r1, *args)

    def _winograd(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """Winograd F(2x2, 3x3) (see `winograd_filters`), per image and block of tile rows:
        the block's input tiles transformed into V (Numba), 16 sgemms U[k] @ V[k] as one
        batched `np.matmul`, then each output tile transformed back with the bias added."""
        if self.group != 1 or w.shape[2:] != (3, 3):
            raise _Unfit
        if geometry.strides != (1, 1) or geometry.dilations != (1, 1):
            raise _Unfit
        batch, channels = x.shape[:2]
        filters = w.shape[0]
        out_h, out_w = out.shape[2:]
        tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
        transformed = self._transformed
        if transformed is not None and transformed[0] is w:
            u = transformed[1]
        else:
            u = winograd_filters(w)
        tile_row_bytes = 64 * tiles_w * (channels + filters)
        budget = _budget(WINOGRAD_BLOCK_BYTES, "winograd_in", "winograd_out")
        block = _even(tiles_h, budget // tile_row_bytes)
        count = block * tiles_w
        v_all = _scratch("winograd_in", 16 * channels * count)
        m_all = _scratch("winograd_out", 16 * filters * count)
        shift = np.zeros(filters, dtype=np.float32) if bias is None else _contiguous(bias)
        ph, pw = geometry.pads_begin
        for n in _images(batch, epilogue):
            for t0 in range(0, tiles_h, block):
                t1 = min(tiles_h, t0 + block)
                tiles = (t1 - t0) * tiles_w
                v = v_all[: 16 * channels * tiles].reshape(16, channels, tiles)
                products = m_all[: 16 * filters * tiles].reshape(16, filters, tiles)
                _pick(_WINOGRAD_IN, 16 * channels * tiles)(x[n], v, t0, t1, tiles_w, ph, pw)
                matmul_into(u, v, products)
                _pick(_WINOGRAD_OUT, 16 * filters * tiles)(products, out[n], shift, t0, t1, tiles_w)

    @staticmethod
    def _kn2row_block(
        channels: int, filters: int, kh: int, kw: int, reach: int, padded_w: int
    ) -> tuple[int, int]:
        """kn2row's output rows per block, and the kernel rows of taps per sgemm: every row (one
        sgemm) where a block has at least KN2ROW_MIN_ROWS rows per row of reach, else one
        (an sgemm per kernel row, no rows computed twice). Sized to KN2ROW_BLOCK_BYTES of
        products, or, in a workspace region, to what the region has left for the products and
        the padded rows."""
        pad_bytes = 4 * channels * padded_w
        region = _in_region()
        room = _budget(2 * KN2ROW_BLOCK_BYTES, "products", "padded") - pad_bytes * reach

        def rows(rows_of_taps: int, span: int) -> int:
            row_bytes = 4 * rows_of_taps * kw * filters * padded_w
            block = KN2ROW_BLOCK_BYTES // row_bytes - span
            if region:
                block = min(block, (room - row_bytes * span) // (row_bytes + pad_bytes))
            return block

        rows_of_taps, block = kh, rows(kh, reach)
        if kh > 1 and block < KN2ROW_MIN_ROWS * reach:
            rows_of_taps, block = 1, rows(1, 0)
        return max(block, 1 if region else KN2ROW_MIN_ROWS), rows_of_taps

    def _direct(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """The Numba loop nest over output planes (all images at once)."""
        zeros = _contiguous(np.zeros(w.shape[0], dtype=np.float32) if bias is None else bias)
        sw = geometry.strides[1]
        batch, channels, height, width = x.shape
        out_h = out.shape[2]
        direct = _pick(_DIRECT, out.size * w.shape[1] * w.shape[2] * w.shape[3])
        settings = (self.group, geometry.strides, geometry.dilations, geometry.pads_begin)
        if sw == 1:
            phases = x[:, :, :, None, :]  # a view, whatever x's strides
            direct(phases, w, zeros, out, *settings, (0, height, 0, out_h))
            _finish(epilogue, out)
            return
        span = -(-width // sw)
        sh, ph = geometry.strides[0], geometry.pads_begin[0]
        reach = (w.shape[2] - 1) * geometry.dilations[0] + 1  # input rows one output row reads
        row = batch * channels * sw * span  # floats per input row, split
        block = direct_block(out_h, row, sh, _budget(DIRECT_BLOCK_BYTES, "phases"))
        floats = _scratch("phases", row * min(height, (block - 1) * sh + reach))
        for o0 in range(0, out_h, block):
            o1 = min(out_h, o0 + block)
            first = min(height, max(0, o0 * sh - ph))
            last = max(first, min(height, (o1 - 1) * sh - ph + reach))
            phases = floats[: row * (last - first)].reshape(batch, channels, last - first, sw, span)
            _pick(_SPLIT_PHASES, phases.size)(x, phases, first)
            direct(phases, w, zeros, out, *settings, (first, height, o0, o1))
        _finish(epilogue, out)

    def _windows(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """numpy's strided view of every window reshaped into columns (the reference's way)."""
        batch, channels = x.shape[:2]
        group = self.group
        widths = [(0, 0), (0, 0), *zip(geometry.pads_begin, geometry.pads_end, strict=True)]
        padded = np.pad(x, widths) if any(geometry.pads_begin + geometry.pads_end) else x
        windows = sliding_windows(padded, geometry)
        taps = (channels // group) * w.shape[2] * w.shape[3]
        positions = out.shape[2] * out.shape[3]
        weights = w.reshape(group, w.shape[0] // group, taps)
        for n in _images(batch, epilogue):  # (C, oh, ow, i, j) -> (group, C/group * i * j, oh * ow)
            columns = windows[n].transpose(0, 3, 4, 1, 2).reshape(group, taps, positions)
            biases = None if bias is None else bias.reshape(group, -1)
            matmul_into(weights, columns, out[n].reshape(group, -1, positions), biases)

    def _panels(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """Per image, one product of the output positions (rows) against the filters packed
        into panels (`prepare`), the depth every tap (channel, kernel row, kernel column): a
        row's patch is never copied, the product gathers it from the image
        (`panel.bind_gathered`, offsets in `_gather_tables`), padded first where the windows
        reach outside it. The product's rows are positions, so it is written into scratch and
        turned into the output's planes, the bias added (`_to_planes`)."""
        if self.group != 1:
            raise _Unfit
        batch, channels = x.shape[:2]
        filters = w.shape[0]
        out_h, out_w = out.shape[2:]
        packed = self._panels_of(w)
        (padded_h, padded_w), floats = _panels_scratch(x.shape, w.shape, geometry)
        copy = _copies_image(x.shape, (padded_h, padded_w), geometry)
        # the offsets count in the padded copy's planes, else in X's
        row, plane = (padded_w, padded_h * padded_w) if copy else (x.shape[3], x[0, 0].size)
        rows_at, taps_at = self._gather_tables(row, plane, w.shape, geometry, out.shape[2:])
        products = _scratch("products", floats).reshape(out_h * out_w, filters)
        image = _scratch("padded", channels * padded_h * padded_w) if copy else None
        shift = _contiguous(np.zeros(filters, dtype=np.float32) if bias is None else bias)
        to_planes = _pick(_TO_PLANES, floats)
        for n in _images(batch, epilogue):
            source = x[n]
            if image is not None:
                source = image.reshape(1, channels, 1, 1, padded_h, padded_w)
                top, left = geometry.pads_begin
                _pick(_PADDED_PLANES, source.size)(x[n : n + 1], source, 0, top, left)
            panel.bind_gathered(source, rows_at, taps_at, packed, products)()
            to_planes(products, out[n], shift)

    def _tiles(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        out: np.ndarray,
        geometry: WindowGeometry,
        epilogue: Epilogue | None,
    ) -> None:
        """Register tiles of filters by a run of output positions, summed over every tap
        straight from the input (`_conv_tiles`): per block of output rows, the input rows they
        read are padded and split by row and column phase into planes once
        (`_padded_planes`), so that the positions of the block, counted along rows as wide as
        a plane's (`span`), read every tap's inputs as one contiguous run. Nothing is copied
        per tap; each weight is read once per run (from cache: TILES_MAX_WEIGHT_BYTES, or few
        runs)."""
        if self.group != 1 or panel.TILE is None:
            raise _Unfit
        filters, channels, kh, kw = w.shape
        batch, out_h = x.shape[0], out.shape[2]
        (block, extra, span), floats = _tiles_block(x.shape, w.shape, geometry)
        if floats == 0:
            _finish(epilogue, out)
            return
        (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
        top, left = geometry.pads_begin
        rows = block + extra
        key = ("tiles", channels, sh, sw, rows, span, kh, kw, dh, dw)
        table = self._tables.get(key)
        if table is None:  # tap (c, i, j): its plane (channel, row and column phase) and shift
            plane = rows * span
            i, j = np.arange(kh) * dh, np.arange(kw) * dw
            row_at = (i % sh) * sw * plane + i // sh * span
            table = self._tables[key] = tap_offsets(
                channels, sh * sw * plane, row_at, (j % sw) * plane + j // sw
            )
        weights = w.reshape(filters, -1)
        shift = _contiguous(np.zeros(filters, dtype=np.float32) if bias is None else bias)
        buffer = _scratch("phases", floats)
        size = batch * channels * sh * sw * rows * span
        planes = buffer[:size].reshape(batch, channels, sh, sw, rows, span)
        runs = -(-block * span // _TILE_WIDTH)
        chunk = _tiles_chunk(filters, batch * runs)
        for o0 in range(0, out_h, block):
            o1 = min(out_h, o0 + block)
            _pick(_PADDED_PLANES, size)(x, planes, o0 * sh, top, left)
            work = (o1 - o0) * span * weights.size * batch
            _pick(_CONV_TILES, work)(planes, weights, out, shift, table, o0, o1, chunk)
        _finish(epilogue, out)

    def _panels_of(self, w: np.ndarray) -> np.ndarray:
        """The filters W^T packed into panels: `prepare`'s, else (a forced `panels`, weights
        that are not constant) packed now."""
        if (packed := self._filters_packed) is not None and (packed[0] is w or w.base is packed[0]):
            return packed[1]  # (a 1-D convolution's weights are a view of its own)
        return _filter_panels(w)

    def _gather_tables(
        self,
        row: int,
        plane: int,
        w_shape: tuple[int, ...],
        geometry: WindowGeometry,
        out_spatial: tuple[int, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        """`panels`' offsets (int64, in floats) into an image whose rows are `row` floats apart
        and channels `plane` floats apart, its first row and column where the first window
        starts: of each output position's window (its first element), row by row, and of each
        tap (channel, kernel row, kernel column) from there, in W's order. Made once per
        shape."""
        out_h, out_w = out_spatial
        channels, kh, kw = w_shape[1:]
        key = (row, plane, channels, kh, kw, geometry, out_h, out_w)
        tables = self._tables.get(key)
        if tables is None:
            (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
            i, j = np.divmod(np.arange(out_h * out_w, dtype=np.int64), out_w)
            rows_at = i * sh * row + j * sw
            taps_at = tap_offsets(channels, plane, np.arange(kh) * dh * row, np.arange(kw) * dw)
            tables = self._tables[key] = (rows_at, taps_at)
        return tables


def tap_offsets(
    channels: int, channel_step: int, row_at: np.ndarray, column_at: np.ndarray
) -> np.ndarray:
    """The offset of every tap (c, i, j) of a convolution's weights, in their order (int64, one
    dimension): `c * channel_step + row_at[i] + column_at[j]`. Written into its one array, with
    no temporaries of its size: a kernel makes its tables on its first call, during inference,
    where over 1024 channels index grids of every tap took three times the table's bytes."""
    taps = np.add.outer(row_at.astype(np.int64), column_at.astype(np.int64))
    table = np.empty((channels, *taps.shape), dtype=np.int64)
    starts = np.arange(channels, dtype=np.int64) * channel_step
    np.add(starts[:, None, None], taps, out=table)
    return table.reshape(-1)


def tiles_fit(strategy: str, group: int, w_shape: Sequence[int], small: bool = False) -> bool:
    """Whether a convolution of `group` groups with weights of `w_shape`, which `conv_strategy`
    makes a `strategy`, may run as `tiles` instead, on a machine with register tiles: one
    group, and weights of TILES_MAX_WEIGHT_BYTES at most that would be a kn2row (not a gate's,
    DIRECT_MAX_FILTERS filters or fewer, whose kn2row is fast), an im2col or a direct loop; or,
    for an image of CONV_PANEL_MAX_POSITIONS output positions or fewer (`small`), weights of
    TILES_SMALL_IMAGE_WEIGHT_BYTES at most of more than one tap that would be any of those or
    a Winograd; or weights of TILES_WINOGRAD_WEIGHT_BYTES at most that would be a Winograd.
    Never a shallow convolution of many filters (TILES_SHALLOW_DEPTH, TILES_SHALLOW_FILTERS)."""
    gate = strategy == "kn2row" and w_shape[0] <= DIRECT_MAX_FILTERS
    if gate or panel.TILE is None or group != 1 or len(w_shape) != 4:
        return False
    if math.prod(w_shape[1:]) < TILES_SHALLOW_DEPTH and w_shape[0] >= TILES_SHALLOW_FILTERS:
        return False
    weights = 4 * math.prod(w_shape)
    if strategy in ("kn2row", "im2col", "direct") and weights <= TILES_MAX_WEIGHT_BYTES:
        return True
    if strategy == "winograd" and weights <= TILES_WINOGRAD_WEIGHT_BYTES:
        return True
    return (
        small
        and strategy in ("kn2row", "im2col", "winograd")
        and math.prod(w_shape[2:]) > 1
        and weights <= TILES_SMALL_IMAGE_WEIGHT_BYTES
    )


def _tiles_block(
    x_shape: Sequence[int], w_shape: Sequence[int], geometry: WindowGeometry
) -> tuple[tuple[int, int, int], int]:
    """`tiles`' blocks: the output rows per block, the rows of a plane a block reads beyond
    its own (`extra`), the width of a plane (`span`: an output row's positions and the
    columns its windows reach past them, per column phase), and the scratch floats of a
    block's planes (`_padded_planes`, every channel and phase) and of the slack the runs of
    its last positions read past them, within what the step's workspace has left
    (DIRECT_BLOCK_BYTES outside one); 0 floats for an empty output."""
    room = _budget(DIRECT_BLOCK_BYTES, "phases") // 4
    return _tiles_blocks(tuple(x_shape), tuple(w_shape), geometry, room)


@functools.lru_cache(maxsize=1024)
def _tiles_blocks(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], geometry: WindowGeometry, room: int
) -> tuple[tuple[int, int, int], int]:
    """`_tiles_block` with `room` floats for the planes (a function of its arguments alone,
    cached: convolutions call it at every run)."""
    assert panel.TILE is not None
    batch, channels = x_shape[:2]
    out_h, out_w = geometry.output_shape(x_shape[2:])
    if min(out_h, out_w, batch) < 1:
        return (1, 0, 1), 0
    sh, sw = geometry.strides
    span, extra = tiles_extents(out_w, w_shape[2:], geometry.strides, geometry.dilations)
    row = batch * channels * sh * sw * span  # floats of one output row's planes
    block = _even(out_h, room // row - extra)
    return (block, extra, span), row * (block + extra) + _tiles_slack(span)


def tiles_extents(
    out_w: Any, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> tuple[Any, int]:
    """`tiles`' plane width for an output `out_w` wide (an int or a symbolic dim): the output
    row's positions and the columns its windows reach past them, per column phase; and the
    rows of a plane a block of output rows reads past its own."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    return out_w + (kw - 1) * dw // sw, (kh - 1) * dh // sh


def _tiles_slack(span: Any) -> Any:
    """The floats past a block's planes that its last run reads (a tile's width, and the
    columns of a window's reach), never used for an output."""
    assert panel.TILE is not None
    return panel.TILE.width + span


def _tiles_chunk(filters: int, runs: int) -> int:
    """The filters a task of `_conv_tiles` computes: all of them, or, where the runs are too
    few for TILES_MIN_TASKS tasks, halves (in whole tiles) until there are enough."""
    assert panel.TILE is not None
    rows, chunk = panel.TILE.rows, filters
    while runs * -(-filters // chunk) < TILES_MIN_TASKS and chunk > rows:
        chunk = -(-chunk // (2 * rows)) * rows
    return chunk


def _padded_planes(x, planes, first, top, left):  # type: ignore[no-untyped-def]
    """planes[n, c, a, b, r, q] = x[n, c, first + r * sh + a - top, q * sw + b - left], 0
    outside x: from padded row `first`, the zero-padded input's rows and columns split by
    phase (row and column modulo the strides) into planes (`tiles`)."""
    batch, channels, height, width = x.shape
    sh, sw, rows, span = planes.shape[2:]
    for task in prange(batch * channels):
        n, c = task // channels, task % channels
        image = x[n, c]
        for a in range(sh):
            for b in range(sw):
                plane = planes[n, c, a, b]
                # columns q with 0 <= q * sw + b - left < width, from column `start` of x
                lo = min(span, max(0, (left - b + sw - 1) // sw))
                hi = min(span, max(lo, (width + left - b + sw - 1) // sw))
                start = lo * sw + b - left
                for r in range(rows):
                    target = plane[r]
                    line = first + r * sh + a - top
                    if line < 0 or line >= height or hi == lo:
                        target[:] = 0.0
                        continue
                    target[:lo] = 0.0
                    target[hi:] = 0.0
                    source = image[line, start:]  # (a view: indices >= 0, no wrapping checks)
                    run = target[lo:hi]
                    if sw == 1:
                        for q in range(hi - lo):
                            run[q] = source[q]
                    elif sw == 2:  # (a constant stride, which LLVM vectorizes)
                        for q in range(hi - lo):
                            run[q] = source[2 * q]
                    else:
                        for q in range(hi - lo):
                            run[q] = source[q * sw]


_TILE_ROWS = panel.TILE.rows if panel.TILE is not None else 1
_DEPTH_BLOCK = panel.DEPTH_BLOCK
_TILE_WIDTH = panel.TILE.width if panel.TILE is not None else 1
_tile_1, _tile_2, _tile_3, _tile_4, _tile_5, _tile_6 = (
    [tile_product(rows, panel.TILE.vectors, panel.TILE.lanes, "panel") for rows in range(1, 7)]
    if panel.TILE is not None and panel.TILE.rows == 6
    else [None] * 6
)
_TILES_SLABS = 16
"""`_conv_tiles` cuts an image's runs into at most this many tasks per chunk of filters."""


def _conv_tiles(planes, w, out, bias, taps, o0, o1, chunk):  # type: ignore[no-untyped-def]
    """Output rows [o0, o1) of out = conv(X, W) + bias, from `planes` (`_padded_planes`, its
    rows from the padded input's row o0 * sh) and W as (filters, taps), C-contiguous. The
    block's positions are numbered along rows of a plane's width (`span`): t = (oh - o0) *
    span + ow, those with ow >= out_w computed and dropped. A task takes an image, a chunk of
    `chunk` filters and a slab of runs of a tile's width of positions; per run, every tile of
    TILE rows (filters) sums over the taps into a tile of the task's, the panel's row at tap k
    being the run of the planes at `taps[k]` floats from the run's first position
    (`tile_product(..., "panel")`), then the tile's valid positions go to `out`, the bias
    added."""
    batch, filters, _, out_w = out.shape
    span = planes.shape[5]
    depth = w.shape[1]
    positions = (o1 - o0) * span
    runs = (positions + _TILE_WIDTH - 1) // _TILE_WIDTH
    chunks = (filters + chunk - 1) // chunk
    slabs = min(runs, max(1, _TILES_SLABS // chunks))
    table = taps.ctypes.data
    for task in prange(batch * chunks * slabs):
        slab = task % slabs
        f0 = (task // slabs) % chunks * chunk
        n = task // (slabs * chunks)
        f1 = min(filters, f0 + chunk)
        tile = np.empty((f1 - f0, _TILE_WIDTH), np.float32)
        for run in range(slab * runs // slabs, (slab + 1) * runs // slabs):
            t0 = run * _TILE_WIDTH
            base = planes.ctypes.data + n * planes.strides[0] + t0 * 4
            for k0 in range(0, depth, _DEPTH_BLOCK):  # a block of taps' runs stays in L1
                steps = min(_DEPTH_BLOCK, depth - k0)
                for r0 in range(f0, f1, _TILE_ROWS):
                    count = min(_TILE_ROWS, f1 - r0)
                    source = w.ctypes.data + (r0 * depth + k0) * 4
                    place = tile.ctypes.data + (r0 - f0) * _TILE_WIDTH * 4
                    taps_k = table + k0 * 8
                    arguments = (source, depth, base, place, _TILE_WIDTH, count, steps, 0, 0)
                    if count == 6:
                        _tile_6(*arguments, k0, taps_k)
                    elif count == 5:
                        _tile_5(*arguments, k0, taps_k)
                    elif count == 4:
                        _tile_4(*arguments, k0, taps_k)
                    elif count == 3:
                        _tile_3(*arguments, k0, taps_k)
                    elif count == 2:
                        _tile_2(*arguments, k0, taps_k)
                    else:
                        _tile_1(*arguments, k0, taps_k)
            t = t0
            t1 = min(positions, t0 + _TILE_WIDTH)
            while t < t1:  # the run's pieces of output rows
                oh, ow = t // span, t % span
                end = min(t1, t - ow + out_w)
                for m in range(f0, f1):
                    line = out[n, m, o0 + oh]
                    add = bias[m]
                    for j in range(end - t):
                        line[ow + j] = tile[m - f0, t - t0 + j] + add
                t += span - ow


_PADDED_PLANES = _jit(_padded_planes)
_CONV_TILES = _jit(_conv_tiles)


def _filter_panels(w: np.ndarray) -> np.ndarray:
    """Conv weights (M, C, kh[, kw]) as W^T (C * kh * kw, M), packed into panels."""
    return panel.pack_panels(np.ascontiguousarray(w.reshape(w.shape[0], -1).T))


def _panels_scratch(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], geometry: WindowGeometry
) -> tuple[tuple[int, int], int]:
    """`panels`' padded image (rows, columns: what the windows read, from the first padded
    row and column) and its product's floats (positions x filters); the padded image is copied
    only where it differs from the image."""
    kernel = w_shape[2:]
    out_h, out_w = geometry.output_shape(x_shape[2:])
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, geometry.dilations, strict=True)]
    padded_h = max((out_h - 1) * geometry.strides[0] + reach[0], 1)
    padded_w = max((out_w - 1) * geometry.strides[1] + reach[1], 1)
    return (padded_h, padded_w), out_h * out_w * w_shape[0]


def _copies_image(
    x_shape: tuple[int, ...], padded: tuple[int, int], geometry: WindowGeometry
) -> bool:
    """Whether `panels` reads a padded copy of the image: unless the windows start at its
    first row and column and read no further than it (then they read the image itself)."""
    inside = padded[0] <= x_shape[2] and padded[1] <= x_shape[3]
    return not inside or any(geometry.pads_begin)


def _to_planes(products, out, shift):  # type: ignore[no-untyped-def]
    """out[m, i, j] = products[i * out_w + j, m] + shift[m]: a product of positions by filters
    into the output's planes."""
    filters, out_h, out_w = out.shape
    for m in prange(filters):
        add = shift[m]
        for i in range(out_h):
            row = out[m, i]
            base = i * out_w
            for j in range(out_w):
                row[j] = products[base + j, m] + add


_TO_PLANES = _jit(_to_planes)


# -- Conv chains --------------------------------------------------------------------------------


CHAIN_BAND_BYTES = 1 << 23
"""A chain computes at most about this many bytes of an earlier stage's output at a time (a band
of its rows). Where memory is short, the workspace region sets a smaller budget
(`_band_budget`); where it is not, wider bands save time: every block copies rows and runs
each stage's sgemm on fewer columns."""

CHAIN_MIN_ROWS = 8
"""A chain's blocks have at least this many rows of its output (where the image has them),
whatever the bands then hold: rows that two blocks read are computed twice, and a kn2row over a
band computes `kernel height - 1` rows more than it keeps, so short blocks cost time."""


def _band_budget() -> int:
    """The bytes of a chain's widest band: CHAIN_BAND_BYTES, or less in a small workspace region
    (WORKSPACE_CHAIN_SHARE)."""
    if not _in_region():
        return CHAIN_BAND_BYTES
    names = ("chain_in", "chain_band0", "chain_band1", "chain_out")
    return min(
        CHAIN_BAND_BYTES,
        _budget(WORKSPACE_CHAIN_SHARE * CHAIN_BAND_BYTES, *names) // WORKSPACE_CHAIN_SHARE,
    )


def band_rows(
    geometry: WindowGeometry, height: int, lo: int, hi: int
) -> tuple[int, int, WindowGeometry]:
    """The input rows [first, last) that output rows [lo, hi) of a 2-D window read, and the
    geometry that computes exactly those output rows from them: its padding along the height is
    the part of the window outside the input (`last - first` may be 0 or less when the rows read
    padding only)."""
    stride, extent, pad = geometry.strides[0], geometry.extents[0], geometry.pads_begin[0]
    start = lo * stride - pad
    end = (hi - 1) * stride - pad + extent
    first, last = max(0, start), min(height, end)
    band = WindowGeometry(
        geometry.kernel,
        geometry.strides,
        geometry.dilations,
        (first - start, geometry.pads_begin[1]),
        (end - last, geometry.pads_end[1]),
    )
    return first, last, band


class BandChain:
    """Stages (Conv, or Resize over H and W) each reading the one before's result, computed
    without ever holding those results whole (a `chain` group of `sod2.opt.fusion`).

    Per image, the last stage's output is made a block of rows at a time: going backwards, each
    stage says which rows of its input the rows asked of it read (`band_rows` for a Conv, its
    taps for a Resize); going forwards, each stage computes its band from the band before, and
    the stage's epilogue (`finish`) finishes it in place. Where the windows of two blocks
    overlap, the shared rows are computed twice (`kernel - stride` rows of a Conv's input per
    block). Blocks are sized so that the largest band (the input rows and the block of output
    included) holds about CHAIN_BAND_BYTES; when one
    block covers the image, the last stage writes straight into the output and nothing is
    computed twice. Blocks have CHAIN_MIN_ROWS rows at least, where bands would be thinner.

    Invariants: the result equals the stages run one after the other on whole tensors (the same
    kernels, band by band), within float32 rounding; bands, input rows and a block of output
    live in this thread's scratch buffers, so the memory a chain adds is a few bands, whatever
    the image size. The blocks are worked out once per shape (and Resize scales), then reused.
    """

    def __init__(self, stages: Sequence[ConvKernel | ResizeKernel]) -> None:
        self.stages = tuple(stages)
        self._layouts: dict[tuple[Any, ...], Any] = {}

    def __call__(
        self,
        x: Any,
        params: Sequence[Sequence[Any]],
        out: Any,
        finish: Sequence[Callable[[np.ndarray], None] | None],
        epilogue: Epilogue | None,
        finish_block: Callable[[np.ndarray, int, int, int, int], None] | None = None,
    ) -> bool:
        """The last stage's output into `out` from X: `params[k]` are stage k's other inputs
        (a Conv's W and bias or None, a Resize's roi, scales and sizes), `finish[k]` stage k's
        epilogue over a band in place (None: none) for each stage but the last;
        `epilogue(n, n + 1)` is called once image n of the output is final. With
        `finish_block`, the last stage always computes into a buffer of its own, and
        `finish_block(block, n, r0, r1, upto)` finishes rows [r0, r1) of image n of the output
        in it and writes rows [r0, upto) (so the output may share its bytes with a value only
        that function reads; the chain writes the rest later, see below). False, with
        nothing computed, for inputs it has no loop for (the caller then runs the stages
        whole).

        `out` may also be X's own bytes (the same shape, in place: `_streams`): a block's rows
        are then written only once no later block reads them, the rows the next block still
        reads kept aside until its first stage has read them (`_Deferred`)."""
        floats = [x, out] + [p for k, ps in enumerate(params) for p in ps if self._is_conv(k)]
        try:
            _float32(*(a for a in floats if a is not None))
        except _Unfit:
            return False
        in_place = np.may_share_memory(x, out)
        if in_place and not self._streams(x, out):
            return False
        key = self._key(x.shape, params, out.shape)
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 64:
                self._layouts.clear()
            layout = self._layouts[key] = self._layout(x.shape, params, out.shape) or ()
        if not layout:
            return False
        shapes, blocks, behind, unpacked = layout
        deferred = _Deferred(behind, shapes[-1]) if in_place else None
        x = _contiguous(x)
        params = [[_contiguous(p) if isinstance(p, np.ndarray) else p for p in ps] for ps in params]
        whole = len(blocks) == 1
        for n in range(x.shape[0]):
            if deferred is not None:
                deferred.start(n)
            for index, (r0, r1, bands) in enumerate(blocks):
                with _ScratchScope():
                    self._block(
                        x,
                        n,
                        r0,
                        r1,
                        bands,
                        shapes,
                        params,
                        out,
                        whole,
                        finish,
                        finish_block,
                        deferred,
                        index,
                        unpacked[index],
                    )
            if deferred is not None:
                deferred.flush(out, out.shape[2])
            if epilogue is not None:
                epilogue(n, n + 1)
        if epilogue is not None and x.shape[0] == 0:
            epilogue(0, 0)
        return True

    def _block(
        self,
        x: np.ndarray,
        n: int,
        r0: int,
        r1: int,
        bands: Sequence[Any],
        shapes: Sequence[tuple[int, ...]],
        params: Sequence[Sequence[Any]],
        out: np.ndarray,
        whole: bool,
        finish: Sequence[Callable[[np.ndarray], None] | None],
        finish_block: Callable[[np.ndarray, int, int, int, int], None] | None,
        deferred: _Deferred | None = None,
        index: int = 0,
        unpacked: bool = False,
    ) -> None:
        """Rows [r0, r1) of image n of the last stage's output, through every stage's band
        (`whole`: the one block covers the image). With `deferred` (X and the output share
        their bytes), block `index` writes the rows of the block before it that waited once
        its first stage has read X, and keeps its own rows that a later block reads.
        `unpacked`: the first stage reads X's rows where they are (`_reads_rows`)."""
        first, last, _ = bands[0]
        current = x[n : n + 1, :, first:last]
        if not unpacked:
            current = staged(current)
        last_stage = len(self.stages) - 1
        for k in range(len(self.stages)):
            if k == last_stage:
                rows, name = r1 - r0, "chain_out"
            else:
                rows, name = bands[k + 1][1] - bands[k + 1][0], f"chain_band{k % 2}"
            channels, width = shapes[k][1], shapes[k][3]
            if k == last_stage and whole and finish_block is None:
                target = out[n : n + 1]
            else:
                target = _scratch(name, channels * rows * width)
                target = target.reshape(1, channels, rows, width)
            self._run(k, current, params[k], target, bands[k][2])
            if k == 0 and deferred is not None:
                deferred.flush(out, deferred.safes[index])
            if k < last_stage and finish[k] is not None:
                finish[k](target)  # type: ignore[misc]
            current = target
        cut = r1 if deferred is None else deferred.cuts[index]
        if finish_block is not None:
            finish_block(current, n, r0, r1, cut)
        elif not whole:
            out[n : n + 1, :, r0:cut] = current[:, :, : cut - r0]
        if deferred is not None:
            deferred.keep(index, current, r0, r1)

    def _reads_rows(self, x_shape: tuple[int, ...], params: Sequence[Any], geometry: Any) -> bool:
        """Whether the first stage reads a band of (C-contiguous) X's rows where they are, with
        `geometry` the band's: a pointwise Conv multiplies the (channels, rows x width) matrix
        they make in place, where other stages take a packed copy."""
        stage = self.stages[0]
        return (
            isinstance(stage, ConvKernel)
            and stage._choose(x_shape, np.shape(params[0]), geometry) == "pointwise"
        )

    def _streams(self, x: np.ndarray, out: np.ndarray) -> bool:
        """Whether the chain can write `out` over X's bytes: the same shape and bytes, read the
        same way (`_same_bytes`), C-contiguous, and two stages at least (the first reads X into
        a band, so the last never reads X while it writes `out`)."""
        return (
            len(self.stages) >= 2
            and x.shape == out.shape
            and x.flags.c_contiguous
            and _same_bytes(x, out)
        )

    def _key(
        self, x_shape: tuple[int, ...], params: Sequence[Sequence[Any]], out_shape: tuple[int, ...]
    ) -> tuple[Any, ...]:
        """What `_layout` depends on: the shapes, a Conv's weight and bias shapes, a Resize's
        roi, scales and sizes values, and the block budgets."""
        parts: list[Any] = [x_shape, out_shape, _band_budget(), CHAIN_MIN_ROWS]
        for k, stage_params in enumerate(params):
            for p in stage_params:
                if p is None:
                    parts.append(None)
                elif self._is_conv(k):
                    parts.append(np.shape(p))
                else:
                    value = np.asarray(p)
                    parts.append((value.dtype.str, value.shape, value.tobytes()))
        return tuple(parts)

    def _is_conv(self, k: int) -> bool:
        return isinstance(self.stages[k], ConvKernel)

    def _run(
        self, k: int, x: np.ndarray, params: Sequence[Any], out: np.ndarray, band: Any
    ) -> None:
        stage = self.stages[k]
        if isinstance(stage, ConvKernel):
            stage.run_with(x, params[0], params[1] if len(params) > 1 else None, out, band)
        else:
            stage.run_rows(x, out, band)

    def _output_shape(
        self, k: int, x_shape: tuple[int, ...], params: Sequence[Any]
    ) -> tuple[tuple[int, ...], Any] | None:
        """Stage k's output shape for input X of `x_shape` (and its geometry, for a Conv)."""
        stage = self.stages[k]
        if isinstance(stage, ResizeKernel):
            shape = stage.output_shape(x_shape, params)
            return None if shape is None else (shape, None)
        w, bias = params[0], params[1] if len(params) > 1 else None
        if len(x_shape) != 4 or w.ndim != 4 or not stage.fits(x_shape, w, bias):
            return None
        geometry = stage._geometry(x_shape[2:], w.shape[2:])
        spatial = geometry.output_shape(x_shape[2:])
        if min(spatial) < 1:
            return None
        return (x_shape[0], w.shape[0], *spatial), geometry

    def _input_rows(
        self,
        k: int,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        geometry: Any,
        params: Sequence[Any],
        lo: int,
        hi: int,
    ) -> tuple[int, int, Any]:
        """The rows of stage k's input that its output rows [lo, hi) read, and how to run."""
        stage = self.stages[k]
        if isinstance(stage, ConvKernel):
            return band_rows(geometry, in_shape[2], lo, hi)
        return stage.rows(in_shape, out_shape, params, lo, hi)

    def _layout(
        self,
        x_shape: tuple[int, ...],
        params: Sequence[Sequence[Any]],
        out_shape: tuple[int, ...],
    ) -> tuple[list[tuple[int, ...]], list[Any], _WriteBehind, tuple[bool, ...]] | None:
        """Each stage's output shape, and the blocks: the last stage's output rows [r0, r1)
        with, per stage, the input rows it reads and how to run it over them (and when each
        may write over X, `_WriteBehind`, for an output written in place; whether its first
        stage reads X's rows unpacked, `_reads_rows`); None when the
        shapes do not fit (the stages run whole, the reference names the fault) or a block
        would read padding only."""
        if len(x_shape) != 4 or len(params) != len(self.stages):
            return None
        shapes: list[tuple[int, ...]] = []
        geometries: list[Any] = []
        current = x_shape
        for k in range(len(self.stages)):
            made = self._output_shape(k, current, params[k])
            if made is None:
                return None
            current, geometry = made
            shapes.append(current)
            geometries.append(geometry)
        if shapes[-1] != tuple(out_shape):
            return None
        step, budget = shapes[-1][2], _band_budget()
        while True:
            blocks = self._blocks(x_shape, shapes, geometries, params, step)
            if blocks is None:
                return None
            r0, r1, bands = blocks[0]
            inputs = [x_shape, *shapes[:-1]]
            widest = max(  # the input rows, each band and the block of output, in bytes
                *(4 * inputs[k][1] * inputs[k][3] * (b[1] - b[0]) for k, b in enumerate(bands)),
                4 * shapes[-1][1] * shapes[-1][3] * (r1 - r0),
            )
            if widest <= budget or step <= CHAIN_MIN_ROWS:
                unpacked = tuple(self._reads_rows(x_shape, params[0], b[0][2]) for *_, b in blocks)
                return shapes, blocks, _WriteBehind.of(blocks, shapes[-1][2]), unpacked
            step = max(1, CHAIN_MIN_ROWS, step * budget // widest)

    def _blocks(
        self,
        x_shape: tuple[int, ...],
        shapes: Sequence[tuple[int, ...]],
        geometries: Sequence[Any],
        params: Sequence[Sequence[Any]],
        step: int,
    ) -> list[Any] | None:
        """Blocks of `step` rows of the last stage's output (`_layout`)."""
        blocks = []
        height = shapes[-1][2]
        inputs = [x_shape, *shapes[:-1]]
        for r0 in range(0, height, step):
            r1 = min(height, r0 + step)
            bands: list[Any] = [None] * len(self.stages)
            lo, hi = r0, r1
            for k in reversed(range(len(self.stages))):
                first, last, how = self._input_rows(
                    k, inputs[k], shapes[k], geometries[k], params[k], lo, hi
                )
                if last <= first:
                    return None  # these rows read padding only: no band to compute
                bands[k] = (first, last, how)
                lo, hi = first, last
            blocks.append((r0, r1, bands))
        return blocks


@dataclass(frozen=True, slots=True)
class _WriteBehind:
    """When each block of a chain's layout may write its rows over X (`_Deferred`), worked out
    once per layout: `safes[j]`, the least row of X that the blocks after j read; `cuts[j]`,
    the row from which block j's rows wait; `rows`, the most rows that ever wait at once."""

    safes: tuple[int, ...]
    cuts: tuple[int, ...]
    rows: int

    @classmethod
    def of(cls, blocks: Sequence[Any], height: int) -> _WriteBehind:
        """The write-behind of `blocks` (`_blocks`) over an output `height` rows high."""
        firsts = [bands[0][0] for _, _, bands in blocks]
        safes = [min(firsts[j + 1 :], default=height) for j in range(len(blocks))]
        cuts = [min(r1, max(r0, safe)) for (r0, r1, _), safe in zip(blocks, safes, strict=True)]
        written, count, most = 0, 0, 0  # `flush` and `keep` over the blocks, counting rows
        for (_, r1, _), safe, cut in zip(blocks, safes, cuts, strict=True):
            flushed = min(count, max(0, safe - written))
            written, count = written + flushed, count - flushed
            if count == 0:
                written = cut
            count += r1 - cut
            most = max(most, count)
        return cls(tuple(safes), tuple(cuts), most)


class _Deferred:
    """The write-behind of a chain whose output overwrites its input X (same shape, same
    bytes). Block j's output rows [r0, r1) overwrite X's rows [r0, r1), and the blocks after j
    read X from row `safe` on (the least first row of stage 0's band among them). So once
    block j's first stage has read its band of X, the rows that wait below `safe` are written
    (`flush`); once block j is finished, its rows below `safe` are written at once and the rest
    wait, finished, in a buffer of rows (`keep`). Rows wait in order: those that wait always
    follow on from each other. The last stage's epilogue finishes a block before any of its
    rows is written, so a residual it reads at those rows (X itself) is intact."""

    __slots__ = ("buffer", "count", "cuts", "image", "safes", "written")

    def __init__(self, behind: _WriteBehind, shape: tuple[int, ...]) -> None:
        self.safes, self.cuts = behind.safes, behind.cuts
        channels, width, rows = shape[1], shape[3], max(1, behind.rows)
        self.buffer = _scratch("chain_keep", rows * channels * width).reshape(rows, channels, width)
        self.image = self.written = self.count = 0

    def start(self, n: int) -> None:
        """Begin image n (no row waits)."""
        self.image, self.written, self.count = n, 0, 0

    def flush(self, out: np.ndarray, upto: int) -> None:
        """Write the rows that wait below row `upto`."""
        rows = min(self.count, max(0, upto - self.written))
        if rows == 0:
            return
        r0 = self.written
        out[self.image, :, r0 : r0 + rows] = self.buffer[:rows].transpose(1, 0, 2)
        rest = self.count - rows
        if rest:
            self.buffer[:rest] = self.buffer[rows : rows + rest].copy()
        self.written, self.count = r0 + rows, rest

    def keep(self, index: int, block: np.ndarray, r0: int, r1: int) -> None:
        """Put the finished rows of block `index` (rows [r0, r1) of the output, in `block`)
        that a later block still reads, rows [cuts[index], r1), after those that wait."""
        cut = self.cuts[index]
        if self.count == 0:
            self.written = cut
        if cut < r1:
            at = self.count
            self.buffer[at : at + r1 - cut] = block[0, :, cut - r0 :].transpose(1, 0, 2)
            self.count = at + r1 - cut


def band_chain(stages: Sequence[FastKernel | None]) -> BandChain | None:
    """The chain of Conv and Resize kernels from `fast_kernel` (None when one is not one)."""
    bodies = [getattr(k, "body", None) for k in stages]
    if not all(isinstance(b, (ConvKernel, ResizeKernel)) for b in bodies):
        return None
    return BandChain(bodies)  # type: ignore[arg-type]


def _lift(geometry: WindowGeometry) -> WindowGeometry:
    """A 1-D geometry as the 2-D one over a height of 1."""
    return WindowGeometry(
        (1, *geometry.kernel),
        (1, *geometry.strides),
        (1, *geometry.dilations),
        (0, *geometry.pads_begin),
        (0, *geometry.pads_end),
    )


# -- ConvTranspose -------------------------------------------------------------------------------


def _col2im_rows(products, out, r0, r1, filters, kernel, strides, dilations, pads, in_w):  # type: ignore[no-untyped-def]
    """out[m, ih * sh + i * dh - ph, iw * sw + j * dw - pw] += products[(i * kw + j) * filters
    + m, (ih - r0) * in_w + iw] for input rows ih in [r0, r1), where the target lies inside
    `out` (col2im, the transposed convolution's scatter); one output plane per task, so tasks
    never write the same element."""
    out_h, out_w = out.shape[1], out.shape[2]
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    ph, pw = pads
    for m in prange(filters):
        for ih in range(r0, r1):
            base = (ih - r0) * in_w
            for i in range(kh):
                oh = ih * sh + i * dh - ph
                if oh < 0 or oh >= out_h:
                    continue
                row = out[m, oh]
                for j in range(kw):
                    left = j * dw - pw  # iw lands at iw * sw + left: inside for iw in [lo, hi)
                    lo = min(in_w, max(0, (-left + sw - 1) // sw))
                    hi = min(in_w, max(lo, (out_w - left + sw - 1) // sw))
                    source = products[(i * kw + j) * filters + m, base : base + in_w]
                    for t in range(lo, hi):
                        row[t * sw + left] += source[t]


_COL2IM = _jit(_col2im_rows)

CONV_TRANSPOSE_BLOCK_BYTES = 1 << 21
"""ConvTranspose's products of all taps cover about this many bytes (a block of input rows):
the scratch stays small (it counts in peak memory) while each sgemm stays wide."""


class ConvTransposeKernel:
    """ConvTranspose (1-D and 2-D, float32, one group) into a preallocated output, without the
    reference's full-size patches: per image and block of input rows, one sgemm of every tap's
    filters against the rows (into a bounded scratch), then a scatter-add of the taps into the
    output (`_col2im_rows`), which starts from the bias. Pads follow the reference
    (`sod2.ops.conv`), output_shape and auto_pad included."""

    def __init__(self, node: Node, opset: int) -> None:
        self.context = KernelContext(node, opset)
        self.group = int(node.attr("group", 1))

    def __call__(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None = None
    ) -> None:
        x, w, bias, out = _conv_operands(inputs, outputs)
        if self.group != 1:
            raise _Unfit
        batch, channels, filters = x.shape[0], x.shape[1], w.shape[1]
        if w.shape[0] != channels or (bias is not None and bias.shape != (filters,)):
            raise _Unfit
        rank = x.ndim - 2
        strides, dilations, _, begins, lengths = transpose_geometry(
            self.context, x.shape[2:], w.shape[2:]
        )
        if out.shape != (batch, filters, *lengths) or min(lengths) < 1:
            raise _Unfit  # the reference names what is wrong
        if rank == 1:  # a 2-D transposed convolution over a height of 1
            x, w, out = x[:, :, None], w[:, :, None], out[:, :, None]
            strides, dilations, begins = (1, *strides), (1, *dilations), (0, *begins)
        x, w = _contiguous(x), _contiguous(w)
        height, width = x.shape[2:]
        kh, kw = w.shape[2:]
        taps = kh * kw
        stacked = _scratch("stacked_t", taps * filters * channels)
        np.copyto(stacked.reshape(kh, kw, filters, channels), w.transpose(2, 3, 1, 0))
        stacked = stacked.reshape(taps * filters, channels)
        budget = _budget(CONV_TRANSPOSE_BLOCK_BYTES, "products_t")
        block = _even(height, budget // (4 * taps * filters * width))
        products = _scratch("products_t", taps * filters * block * width)
        for n in _images(batch, epilogue):
            target = out[n]
            if bias is None:
                target.fill(0.0)
            else:
                np.copyto(target, bias.reshape(filters, 1, 1))
            flat = x[n].reshape(channels, height * width)
            for r0 in range(0, height, block):
                r1 = min(height, r0 + block)
                product = products[: taps * filters * (r1 - r0) * width]
                product = product.reshape(taps * filters, (r1 - r0) * width)
                matmul_into(stacked, flat[:, r0 * width : r1 * width], product)
                col2im = _pick(_COL2IM, product.size)
                col2im(
                    product, target, r0, r1, filters, (kh, kw), strides, dilations, begins, width
                )


def _conv_transpose(node: Node, opset: int) -> Body | None:
    return ConvTransposeKernel(node, opset)


def _conv(node: Node, opset: int) -> Body | None:
    if int(node.attr("group", 1)) < 1:
        return None
    auto_pad = str(node.attr("auto_pad", "NOTSET")) or "NOTSET"
    if auto_pad not in AUTO_PADS:
        return None
    return ConvKernel(node, opset)


# -- Softmax and LogSoftmax --------------------------------------------------------------------

_LOG2E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693145751953125)  # ln 2 split in two, so that n * high is exact
_LN2_LOW = np.float32(1.4286068203094173e-06)
_EXP_FLOOR = np.float32(-87.33654)  # exp of anything lower is below float32's smallest normal
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_EXP_TERMS = tuple(np.float32(1.0 / math.factorial(k)) for k in range(2, 8))


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _exp_polynomial(r):  # type: ignore[no-untyped-def]
    """e^r for |r| <= ln(2) / 2: Taylor to degree 7 (relative error below 2e-8)."""
    t2, t3, t4, t5, t6, t7 = _EXP_TERMS
    return _ONE + r * (_ONE + r * (t2 + r * (t3 + r * (t4 + r * (t5 + r * (t6 + r * t7))))))


@numba.njit(cache=True, fastmath=_FASTMATH)
def _exp_row(values, shift, out):  # type: ignore[no-untyped-def]
    """out[i] = e^(values[i] - shift) for a row whose values are <= shift; returns their sum.

    e^v = 2^n e^r with n = round(v / ln 2): 2^n is written as float32 bits into `out` (exact,
    and vectorizable, unlike a call to expf), then multiplied by e^r. Below _EXP_FLOOR the result
    is 0 (expf would give a subnormal); `out` may be `values` itself (element i is read before it
    is written) but must not overlap it otherwise; a NaN stays NaN.
    """
    bits = out.view(np.int32)
    total = np.float32(0.0)
    for i in range(values.size):
        exponent = values[i] - shift
        v = _EXP_FLOOR if exponent < _EXP_FLOOR else exponent
        n = np.floor(v * _LOG2E + _HALF)
        bits[i] = (np.int32(n) + 127) << 23
        e = out[i] * _exp_polynomial(v - n * _LN2_HIGH - n * _LN2_LOW)
        e = _ZERO if exponent < _EXP_FLOOR else e
        out[i] = e
        total += e
    return total


_MAX_LANES = 16
"""`_row_max` keeps this many running maxima, one per lane of a vector register or two."""


@numba.njit(cache=True, fastmath={"nnan", "nsz", "reassoc"})
def _row_max(row, lanes):  # type: ignore[no-untyped-def]
    """The largest value of a row (assuming no NaN: a row with a NaN gets some value here, and a
    NaN sum of exponentials afterwards, so its softmax is NaN as it should be).

    LLVM does not vectorize a running maximum (a reduction through a compare and a select), so
    a long row keeps _MAX_LANES of them in `lanes`, each over every _MAX_LANES-th value: an
    elementwise loop it does vectorize, four times faster."""
    size = row.size
    peak = row[0]
    whole = size - size % _MAX_LANES if size >= 4 * _MAX_LANES else 0
    if whole:
        lanes[:] = peak
        for i in range(0, whole, _MAX_LANES):
            for j in range(_MAX_LANES):
                value = row[i + j]
                lanes[j] = value if value > lanes[j] else lanes[j]
        for j in range(_MAX_LANES):
            peak = lanes[j] if lanes[j] > peak else peak
    for i in range(whole, size):
        peak = max(peak, row[i])
    return peak


_SOFTMAX_CHUNKS = 64
"""Softmax rows are shared among threads in at most this many runs of rows, each with its own
row of scratch for the exponentials."""


def _softmax_rows(x, out, log):  # type: ignore[no-untyped-def]
    """Softmax (or LogSoftmax) of every row of x (R, D) into out: e^(x - max) / sum.

    The exponentials go to a scratch row, not to `out`: `out` may be `x` itself, and a loop
    that writes an array it reads is not vectorized (LLVM cannot tell the two apart)."""
    rows, width = x.shape
    chunks = min(rows, _SOFTMAX_CHUNKS)
    for chunk in prange(chunks):
        exps = np.empty(width, np.float32)
        lanes = np.empty(_MAX_LANES, np.float32)
        for r in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
            row, target = x[r], out[r]
            peak = _row_max(row, lanes)
            if not np.isfinite(peak):  # NaN or infinite rows: the textbook formula and its NaNs
                total = np.float32(0.0)
                for i in range(width):
                    exps[i] = np.exp(row[i] - peak)
                    total += exps[i]
            else:
                total = _exp_row(row, peak, exps)
            if log:
                offset = peak + np.log(total)
                for i in range(width):
                    target[i] = row[i] - offset
            else:
                scale = _ONE / total
                for i in range(width):
                    target[i] = exps[i] * scale


_SOFTMAX = _jit(_softmax_rows)


def _softmax(node: Node, opset: int) -> Body | None:
    log = node.op_type == "LogSoftmax"
    axis_attr = int(node.attr("axis", -1 if opset >= 13 else 1))
    context = KernelContext(node, opset)

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        x, out = _same_shape_float32(inputs, outputs)
        axis = normalize_axis(context, axis_attr, x.ndim)
        finish = _finish_all(epilogue, out)
        if opset < 13:  # coerced to 2-D: [prod(dims before axis), prod(dims from axis)]
            rows = math.prod(x.shape[:axis])
        elif axis == x.ndim - 1:
            rows = math.prod(x.shape[:-1])
        else:
            return [functools.partial(_softmax_numpy, x, out, axis, log), finish], True
        if not x.size:
            return [finish], True
        # in place (the liveness plan may put the output over its input): the loop nest reads
        # all of a row before it writes it
        same = x.ctypes.data == out.ctypes.data and x.flags.c_contiguous
        if same or not np.may_share_memory(x, out):
            matrix = _contiguous(x).reshape(rows, -1)
            loop = _pick(_SOFTMAX, x.size)
            call = functools.partial(loop, matrix, out.reshape(rows, -1), log)
            return [call, finish], bool(x.flags.c_contiguous)
        rows_x, rows_out = x.reshape(rows, -1), out.reshape(rows, -1)
        return [functools.partial(_softmax_numpy, rows_x, rows_out, 1, log), finish], True

    return planned(plan)


def _softmax_numpy(x: np.ndarray, out: np.ndarray, axis: int, log: bool) -> None:
    """Softmax along an inner axis, in place in `out` (no loop nest for strided rows)."""
    with np.errstate(all="ignore"):  # NaN and infinite rows give NaN, as in the reference
        peak = x.max(axis=axis, keepdims=True)
        np.subtract(x, peak, out=out)
        if log:
            out -= np.log(np.exp(out).sum(axis=axis, keepdims=True))
        else:
            np.exp(out, out=out)
            out /= out.sum(axis=axis, keepdims=True)


# -- normalizations ------------------------------------------------------------------------------


_SUM_BLOCK = 256


@numba.njit(cache=True, fastmath=_FASTMATH)
def _moments(row):  # type: ignore[no-untyped-def]
    """mean(row) and the population variance mean((row - mean)^2): float32 sums over blocks of
    _SUM_BLOCK values (vectorized), added up in float64 (accurate for rows of any length)."""
    total = 0.0
    for start in range(0, row.size, _SUM_BLOCK):
        block = row[start : start + _SUM_BLOCK]
        partial = np.float32(0.0)
        for t in range(block.size):
            partial += block[t]
        total += partial
    mean = np.float32(total / row.size)
    squares = 0.0
    for start in range(0, row.size, _SUM_BLOCK):
        block = row[start : start + _SUM_BLOCK]
        partial = np.float32(0.0)
        for t in range(block.size):
            deviation = block[t] - mean
            partial += deviation * deviation
        squares += partial
    return mean, squares / row.size


def _layer_norm_rows(x, scale, bias, epsilon, out, means, inv_stds):  # type: ignore[no-untyped-def]
    """y = (x - mean) / sqrt(var + eps) * scale + bias per row of x (R, D)."""
    for r in prange(x.shape[0]):
        row, target = x[r], out[r]
        mean, variance = _moments(row)
        inv_std = np.float32(1.0 / np.sqrt(variance + epsilon))
        for i in range(row.size):
            target[i] = (row[i] - mean) * inv_std * scale[i] + bias[i]
        means[r] = mean
        inv_stds[r] = inv_std


_LAYER_NORM = _jit(_layer_norm_rows)


def _layer_norm(node: Node, opset: int) -> Body | None:
    axis_attr = int(node.attr("axis", -1))
    if int(node.attr("stash_type", DType.FLOAT32.onnx)) != DType.FLOAT32.onnx:
        return None
    epsilon = float(node.attr("epsilon", 1e-5))
    context = KernelContext(node, opset)

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        x, scale, out = inputs[0], inputs[1], outputs[0]
        bias = inputs[2] if len(inputs) > 2 else None
        _float32(x, scale, out, *(() if bias is None else (bias,)))
        if x.ndim == 0 or x.shape != out.shape:
            raise _Unfit
        axis = normalize_axis(context, axis_attr, x.ndim)
        rows = math.prod(x.shape[:axis])
        width = math.prod(x.shape[axis:])
        normalized = x.shape[axis:]
        scale_row = _parameter_row(scale, normalized, width)
        bias_row = (
            np.zeros(width, np.float32) if bias is None else _parameter_row(bias, normalized, width)
        )
        stats = [_statistics(outputs, index, x.shape, axis, rows) for index in (1, 2)]
        calls: list[Callable[[], None] | None] = []
        if x.size:
            calls.append(
                functools.partial(
                    _pick(_LAYER_NORM, x.size),
                    _contiguous(x).reshape(rows, width),
                    scale_row,
                    bias_row,
                    epsilon,
                    out.reshape(rows, width),
                    *stats,
                )
            )
        calls.append(_finish_all(epilogue, out))
        # (a strided input, or a parameter broadcast to the row, is a copy made now)
        again = x.flags.c_contiguous and all(
            param is None or np.may_share_memory(row, param)
            for param, row in ((scale, scale_row), (bias, bias_row))
        )
        return calls, again

    return planned(plan)


STANDARDIZE_BLOCK = 256
"""sod2::Standardize over leading axes (statistics per column of X viewed as (O, C, I), I > 1)
takes this many columns of one o per task: the task reads its C x 256 values three times (sum,
squared deviations, output), from the cache after the first."""


def _standardize_columns(x, epsilon, out):  # type: ignore[no-untyped-def]
    """y = (x - mean) / sqrt(var + epsilon) per column (o, j) of x (O, C, I), the statistics over
    C, in blocks of STANDARDIZE_BLOCK columns. `out` may be `x` itself (each element is read
    before it is written); a column's statistics are summed in C's order."""
    outer, channels, inner = x.shape
    blocks = (inner + STANDARDIZE_BLOCK - 1) // STANDARDIZE_BLOCK
    share = np.float32(1.0) / np.float32(channels)
    for task in prange(outer * blocks):
        o = task // blocks
        lo = (task - o * blocks) * STANDARDIZE_BLOCK
        width = min(inner, lo + STANDARDIZE_BLOCK) - lo
        mean = np.zeros(width, np.float32)
        spread = np.zeros(width, np.float32)
        for c in range(channels):
            row = x[o, c, lo : lo + width]
            for j in range(width):
                mean[j] += row[j]
        for j in range(width):
            mean[j] *= share
        for c in range(channels):
            row = x[o, c, lo : lo + width]
            for j in range(width):
                deviation = row[j] - mean[j]
                spread[j] += deviation * deviation
        for j in range(width):
            spread[j] = np.float32(1.0) / np.sqrt(spread[j] * share + epsilon)
        for c in range(channels):
            row, target = x[o, c, lo : lo + width], out[o, c, lo : lo + width]
            for j in range(width):
                target[j] = (row[j] - mean[j]) * spread[j]


_STANDARDIZE = _jit(_standardize_columns)


def _standardize(node: Node, opset: int) -> Body | None:
    """sod2::Standardize (`sod2.opt.standardize`): over trailing axes, LayerNormalization's row
    loop with a scale of ones and no shift; over others, `_standardize_columns`."""
    epsilon = float(node.attr("epsilon", 1e-5))
    context = KernelContext(node, opset)

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        x, out = _same_shape_float32(inputs, outputs)
        axes = standardized_axes(context, x.ndim)
        outer = math.prod(x.shape[: axes[0]])
        reduced = math.prod(x.shape[axes[0] : axes[-1] + 1])
        inner = math.prod(x.shape[axes[-1] + 1 :])
        source = _contiguous(x)
        calls: list[Callable[[], None] | None] = []
        if x.size and inner == 1:
            rows = (outer, reduced)
            ones, zeros = np.ones(reduced, np.float32), np.zeros(reduced, np.float32)
            statistics = (np.empty(outer, np.float32), np.empty(outer, np.float32))
            kernel = _pick(_LAYER_NORM, x.size)
            arrays = (source.reshape(rows), ones, zeros, epsilon, out.reshape(rows))
            calls.append(functools.partial(kernel, *arrays, *statistics))
        elif x.size:
            columns = (outer, reduced, inner)
            kernel = _pick(_STANDARDIZE, x.size)
            calls.append(
                functools.partial(
                    kernel, source.reshape(columns), np.float32(epsilon), out.reshape(columns)
                )
            )
        calls.append(_finish_all(epilogue, out))
        return calls, source is x  # (a strided X is a copy made now)

    return planned(plan)


def _parameter_row(param: np.ndarray, normalized: tuple[int, ...], width: int) -> np.ndarray:
    """A Scale or B input over the normalized dims, flattened to one row of `width` values."""
    while param.ndim > len(normalized) and param.shape[0] == 1:
        param = param[0]
    if param.shape == normalized:
        return _contiguous(param).reshape(width)
    try:
        return np.ascontiguousarray(np.broadcast_to(param, normalized)).reshape(width)
    except ValueError:
        raise _Unfit from None  # the reference names the parameter that does not broadcast


def _statistics(
    outputs: Sequence[Any], index: int, shape: tuple[int, ...], axis: int, rows: int
) -> np.ndarray:
    """The flat Mean / InvStdDev output (dims from `axis` on are 1), or scratch when omitted."""
    target = outputs[index] if len(outputs) > index else None
    if target is None:
        return np.empty(rows, dtype=np.float32)
    if target.dtype != _F32 or target.shape != shape[:axis] + (1,) * (len(shape) - axis):
        raise _Unfit
    return target.reshape(rows)


def _instance_norm_rows(x, scale, bias, epsilon, out):  # type: ignore[no-untyped-def]
    """y = (x - mean) / sqrt(var + eps) * scale[c] + bias[c] per row (n, c) of x (N * C, S)."""
    channels = scale.size
    for r in prange(x.shape[0]):
        row, target = x[r], out[r]
        mean, variance = _moments(row)
        gain = np.float32(scale[r % channels] / np.sqrt(variance + epsilon))
        offset = bias[r % channels]
        for i in range(row.size):  # (x - mean) first: x * gain - mean * gain would cancel
            target[i] = (row[i] - mean) * gain + offset


_INSTANCE_NORM = _jit(_instance_norm_rows)


def _instance_norm(node: Node, opset: int) -> Body | None:
    epsilon = float(node.attr("epsilon", 1e-5))

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        x, scale, bias, out = inputs[0], inputs[1], inputs[2], outputs[0]
        _float32(x, scale, bias, out)
        if x.ndim < 3 or x.shape != out.shape:
            raise _Unfit
        if scale.shape != x.shape[1:2] or bias.shape != x.shape[1:2]:
            raise _Unfit
        rows = x.shape[0] * x.shape[1]
        if x.size:
            _pick(_INSTANCE_NORM, x.size)(
                _contiguous(x).reshape(rows, -1),
                _contiguous(scale),
                _contiguous(bias),
                epsilon,
                out.reshape(rows, -1),
            )
        _finish(epilogue, out)

    return body


def _affine_rows(x, mean, gain, bias, out):  # type: ignore[no-untyped-def]
    """y = (x - mean[c]) * gain[c] + bias[c] per row (n, c) of x (N * C, S)."""
    channels = gain.size
    for r in prange(x.shape[0]):
        m, g, b = mean[r % channels], gain[r % channels], bias[r % channels]
        row, target = x[r], out[r]
        for i in range(row.size):
            target[i] = (row[i] - m) * g + b


_AFFINE = _jit(_affine_rows)


def _batch_norm(node: Node, opset: int) -> Body | None:
    if any(t is not None for t in node.outputs[1:]) or node.attr("training_mode", 0):
        return None
    if opset < 7 and node.attr("is_test", 1) == 0:
        return None
    epsilon = float(node.attr("epsilon", 1e-5))

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        x, out = inputs[0], outputs[0]
        params = inputs[1:5]
        _float32(x, out, *params)
        if x.ndim < 2 or x.shape != out.shape or any(p.shape != x.shape[1:2] for p in params):
            raise _Unfit
        scale, bias, mean, variance = params
        with np.errstate(all="ignore"):
            gain = scale / np.sqrt(variance + np.float32(epsilon))
        rows = x.shape[0] * x.shape[1]
        if x.size:
            _pick(_AFFINE, x.size)(
                _contiguous(x).reshape(rows, -1),
                _contiguous(mean),
                gain,
                _contiguous(bias),
                out.reshape(rows, -1),
            )
        _finish(epilogue, out)

    return body


# -- pooling -------------------------------------------------------------------------------------


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _fold(target, source, stride, average):  # type: ignore[no-untyped-def]
    """target[t] += source[t * stride] (average), else target[t] = max(target[t], that), a NaN
    winning. Branches outside the loops, constant strides 1 and 2, and np.maximum keep every
    loop vectorized."""
    if average:
        if stride == 1:
            for t in range(target.size):
                target[t] += source[t]
        elif stride == 2:
            for t in range(target.size):
                target[t] += source[2 * t]
        else:
            for t in range(target.size):
                target[t] += source[stride * t]
    elif stride == 1:
        for t in range(target.size):
            target[t] = np.maximum(target[t], source[t])
    elif stride == 2:
        for t in range(target.size):
            target[t] = np.maximum(target[t], source[2 * t])
    else:
        for t in range(target.size):
            target[t] = np.maximum(target[t], source[stride * t])


POOL_BLOCK_FLOATS = 1 << 14
"""MaxPool and AveragePool fold a block of output rows at a time whose input rows, already
folded along the width, take at most about this many floats (per plane, 64 KiB)."""


def _pool_planes(x, out, kernel, strides, dilations, pads, average, divisors, room):  # type: ignore[no-untyped-def]
    """MaxPool (average False) or AveragePool of every (n, c) plane of x (P, H, W) into out.

    Separably: a max (or a sum) over a window is the max over its kernel rows of the max over
    each row's taps. Per block of output rows (its folded rows within `room` floats, at least
    one output row), each input row the block reads is folded along the width once (kw folds
    per input row, not kh * kw per output row), then each output row folds its kh folded
    rows. A tap outside the input never counts (MaxPool's -inf padding); an average then
    divides by `divisors[oh, ow]`. A fold is a strided sweep of one row (`_fold`); a NaN wins
    a max."""
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    ph, pw = pads
    reach = (kh - 1) * dh + 1  # input rows one output row reads
    block = max(1, min(out_h, (room // max(1, out_w) - reach) // sh + 1))
    fill = np.float32(0.0) if average else np.float32(-np.inf)
    for p in prange(x.shape[0]):
        plane = x[p]
        folded = np.empty(((block - 1) * sh + reach, out_w), np.float32)
        for o0 in range(0, out_h, block):
            o1 = min(out_h, o0 + block)
            first = o0 * sh - ph  # the block's first input row (may lie in the padding)
            last = (o1 - 1) * sh - ph + reach
            for ih in range(max(0, first), min(height, last)):
                row = folded[ih - first]
                row[:] = fill
                source = plane[ih]
                for j in range(kw):
                    left = j * dw - pw  # iw = ow * sw + left must lie in [0, width)
                    lo = min(out_w, max(0, (-left + sw - 1) // sw))
                    hi = min(out_w, max(lo, (width - left + sw - 1) // sw))
                    _fold(row[lo:hi], source[lo * sw + left :], sw, average)
            for oh in range(o0, o1):
                row = out[p, oh]
                row[:] = fill
                for i in range(kh):
                    ih = oh * sh + i * dh - ph
                    if 0 <= ih < height:
                        _fold(row, folded[ih - first], 1, average)
                if average:
                    divisor = divisors[oh]
                    for t in range(out_w):
                        row[t] /= divisor[t]


_POOL = _jit(_pool_planes)


_NO_DIVISORS = np.ones((1, 1), dtype=np.float32)


def _pool_divisors(
    geometry: WindowGeometry,
    spatial: tuple[int, ...],
    out_spatial: tuple[int, ...],
    include_pad: bool,
) -> np.ndarray:
    """AveragePool's divisor per output pixel: the taps of its window inside the input (or
    inside input and explicit pads), the product of the counts along each axis."""
    counts = []
    for size, out, k, s, d, begin, end in zip(
        spatial,
        out_spatial,
        geometry.kernel,
        geometry.strides,
        geometry.dilations,
        geometry.pads_begin,
        geometry.pads_end,
        strict=True,
    ):
        low, high = (-begin, size + end) if include_pad else (0, size)
        taps = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - begin
        counts.append(((taps >= low) & (taps < high)).sum(axis=1))
    return np.outer(counts[0], counts[1]).astype(np.float32)


def _pool(node: Node, opset: int) -> Body | None:
    average = node.op_type == "AveragePool"
    if not average and len(node.outputs) > 1 and node.outputs[1] is not None:
        return None  # Indices
    if str(node.attr("auto_pad", "NOTSET")) not in AUTO_PADS:
        return None
    include_pad = bool(node.attr("count_include_pad", 0))
    context = KernelContext(node, opset)
    geometries: dict[tuple[int, ...], tuple[WindowGeometry, tuple[int, ...]]] = {}
    divisors_of = functools.lru_cache(maxsize=16)(_pool_divisors)

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        x, out = inputs[0], outputs[0]
        _float32(x, out)
        if x.ndim != 4 or out.ndim != 4:
            raise _Unfit
        known = geometries.get(x.shape)
        if known is None:
            known = geometries[x.shape] = pool_geometry(context, x)
        geometry, out_spatial = known
        if out.shape != x.shape[:2] + out_spatial:
            raise _Unfit
        divisors = _NO_DIVISORS
        if average:
            divisors = divisors_of(geometry, x.shape[2:], out_spatial, include_pad)
        if out.size:
            _pick(_POOL, out.size * math.prod(geometry.kernel))(
                _contiguous(x).reshape(-1, *x.shape[2:]),
                out.reshape(-1, *out_spatial),
                geometry.kernel,
                geometry.strides,
                geometry.dilations,
                geometry.pads_begin,
                average,
                divisors,
                POOL_BLOCK_FLOATS,
            )
        _finish(epilogue, out)

    return body


def _global_average_pool(node: Node, opset: int) -> Body | None:
    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        x, out = inputs[0], outputs[0]
        _float32(x, out)
        if x.ndim < 3 or out.shape != x.shape[:2] + (1,) * (x.ndim - 2) or x.size == 0:
            raise _Unfit
        planes = x.shape[:2]
        np.mean(_contiguous(x).reshape(*planes, -1), axis=2, out=out.reshape(planes))
        _finish(epilogue, out)

    return body


# -- reductions ----------------------------------------------------------------------------------

_REDUCTIONS: dict[str, Callable[..., Any]] = {
    "ReduceSum": np.sum,
    "ReduceMean": np.mean,
    "ReduceMax": np.max,
}
_AXES_BECOME_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}


def _row_sums(x, out, scale):  # type: ignore[no-untyped-def]
    """out[r] = sum(x[r]) * scale for every row of x (R, D), in float32 blocks added in float64."""
    for r in prange(x.shape[0]):
        row = x[r]
        total = 0.0
        for start in range(0, row.size, _SUM_BLOCK):
            block = row[start : start + _SUM_BLOCK]
            partial = np.float32(0.0)
            for t in range(block.size):
                partial += block[t]
            total += partial
        out[r] = total * scale


_ROW_SUMS = _jit(_row_sums)


def _reduce(node: Node, opset: int) -> Body | None:
    fold = _REDUCTIONS[node.op_type]
    keepdims = bool(node.attr("keepdims", 1))
    noop = bool(node.attr("noop_with_empty_axes", 0))
    from_input = opset >= _AXES_BECOME_INPUT[node.op_type]
    attribute = None if from_input else node.attr("axes", None)
    context = KernelContext(node, opset)

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        x, out = inputs[0], outputs[0]
        _float32(x, out)
        axes = _reduce_axes(inputs, attribute, from_input)
        if not axes:
            axes = [] if noop else list(range(x.ndim))
        normal = tuple(normalize_axis(context, a, x.ndim, what="axes entry") for a in axes)
        if len(set(normal)) != len(normal) or any(x.shape[a] == 0 for a in normal):
            raise _Unfit  # repeated axes, empty reductions: the reference's rules
        trailing = sorted(normal) == list(range(x.ndim - len(normal), x.ndim))
        if not normal:
            np.copyto(out, x)
        elif trailing and fold is not np.max and out.size == math.prod(x.shape[: -len(normal)]):
            # the trailing axes of a contiguous array: one row per output element
            width = math.prod(x.shape[-len(normal) :])
            scale = 1.0 / width if fold is np.mean else 1.0
            matrix = _contiguous(x).reshape(out.size, width)
            _pick(_ROW_SUMS, x.size)(matrix, out.reshape(out.size), scale)
        else:
            fold(x, axis=normal, keepdims=keepdims, out=out)
        _finish(epilogue, out)

    return body


def _reduce_axes(inputs: Sequence[Any], attribute: Any, from_input: bool) -> list[int]:
    if not from_input:
        return [] if attribute is None else [int(a) for a in attribute]
    value = inputs[1] if len(inputs) > 1 else None
    if value is None:
        return []
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu" or value.ndim > 1:
        raise _Unfit
    return [int(a) for a in value.reshape(-1)]


# -- Resize --------------------------------------------------------------------------------------


def _resize_nearest_planes(x, out, rows, cols):  # type: ignore[no-untyped-def]
    """out[p, y, x] = x[p, rows[y], cols[x]]."""
    for p in prange(x.shape[0]):
        plane, target = x[p], out[p]
        for y in range(rows.size):
            if y > 0 and rows[y] == rows[y - 1]:  # upsampling: the row above, copied
                target[y, :] = target[y - 1, :]
                continue
            source, line = plane[rows[y]], target[y]
            for i in range(cols.size):
                line[i] = source[cols[i]]


def _resize_linear_planes(x, out, rows, row_weights, cols, col_weights):  # type: ignore[no-untyped-def]
    """Bilinear: out[p, y, x] = sum_{a, b} wr[y, a] wc[x, b] x[p, rows[y, a], cols[x, b]]."""
    for p in prange(x.shape[0]):
        plane, target = x[p], out[p]
        for y in range(rows.shape[0]):
            top, bottom = plane[rows[y, 0]], plane[rows[y, 1]]
            w_top, w_bottom = row_weights[y, 0], row_weights[y, 1]
            for i in range(cols.shape[0]):
                left, right = cols[i, 0], cols[i, 1]
                upper = top[left] * col_weights[i, 0] + top[right] * col_weights[i, 1]
                lower = bottom[left] * col_weights[i, 0] + bottom[right] * col_weights[i, 1]
                target[y, i] = upper * w_top + lower * w_bottom


_RESIZE_NEAREST = _jit(_resize_nearest_planes)
_RESIZE_LINEAR = _jit(_resize_linear_planes)

_NEAREST_ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda x: np.ceil(x - 0.5),
    "round_prefer_ceil": lambda x: np.floor(x + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}
_RESIZE_COORDINATES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
)


class _ResizeTaps:
    """Per output index of one axis: the source pixels and their weights (cached per shape)."""

    def __init__(self, plan: AxisResize, mode: str, coordinates: str, nearest: str) -> None:
        coords = source_coordinates(plan, coordinates)
        last = plan.in_size - 1
        if mode == "nearest":
            rounded = _NEAREST_ROUNDING[nearest](coords)
            self.indices = np.clip(rounded, 0, last).astype(np.int64)
            self.weights = np.ones(0, dtype=np.float32)
            return
        floors = np.floor(coords)
        left = np.where(coords == floors, coords - 1, floors)  # ties go to the left pixel
        taps = left[:, None] + np.arange(2)
        self.weights = np.clip(1 - np.abs(taps - coords[:, None]), 0, 1).astype(np.float32)
        self.indices = np.clip(taps, 0, last).astype(np.int64)


class ResizeKernel:
    """Resize (nearest or linear over H and W of a 4-D float32 tensor) into a preallocated
    output; the taps of each axis are computed once per shape. `rows` and `run_rows` compute a
    band of output rows (a stage of a `BandChain`)."""

    def __init__(self, mode: str, coordinates: str, nearest: str) -> None:
        self.mode = mode
        self.coordinates = coordinates
        self.nearest = nearest
        self._plans: dict[tuple[Any, ...], tuple[_ResizeTaps, _ResizeTaps]] = {}

    def __call__(
        self, inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None = None
    ) -> None:
        x, out = inputs[0], outputs[0]
        _float32(x, out)
        if x.ndim != 4 or out.ndim != 4 or out.shape[:2] != x.shape[:2] or 0 in x.shape:
            raise _Unfit
        rows, cols = self.taps(x.shape, out.shape, _resize_scales(inputs, x.shape, out.shape))
        self._planes(_contiguous(x), out, rows.indices, rows.weights, cols)
        _finish(epilogue, out)

    def output_shape(
        self, x_shape: tuple[int, ...], params: Sequence[Any]
    ) -> tuple[int, ...] | None:
        """The output shape the roi, scales and sizes inputs `params` give X of `x_shape` (None
        for what the kernel has no loop for)."""
        if len(x_shape) != 4 or 0 in x_shape:
            return None
        sizes = params[2] if len(params) > 2 else None
        try:
            if sizes is not None and np.asarray(sizes).size > 0:
                shape = tuple(int(v) for v in np.asarray(sizes).reshape(-1))
            else:
                values = np.asarray(params[1], dtype=np.float64).reshape(-1)
                shape = tuple(math.floor(s * v) for s, v in zip(x_shape, values, strict=True))
            _resize_scales([None, *params], x_shape, shape)
        except (_Unfit, ValueError, TypeError, IndexError):
            return None
        if shape[:2] != x_shape[:2] or min(shape) < 1:
            return None
        return shape

    def taps(
        self,
        x_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        scales: tuple[float, float] | None,
    ) -> tuple[_ResizeTaps, _ResizeTaps]:
        """The source rows and columns of every output row and column, with their weights."""
        key = (x_shape[2:], out_shape[2:], scales)
        taps = self._plans.get(key)
        if taps is None:
            taps = self._plans[key] = tuple(  # type: ignore[assignment]
                _ResizeTaps(
                    _axis_plan(axis, x_shape, out_shape, scales),
                    self.mode,
                    self.coordinates,
                    self.nearest,
                )
                for axis in (2, 3)
            )
        return taps  # type: ignore[return-value]

    def rows(
        self,
        x_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        params: Sequence[Any],
        lo: int,
        hi: int,
    ) -> tuple[int, int, Any]:
        """The input rows [first, last) that output rows [lo, hi) read, and what `run_rows`
        needs to compute them from those rows."""
        scales = _resize_scales([None, *params], x_shape, out_shape)
        rows, cols = self.taps(x_shape, out_shape, scales)
        indices = rows.indices[lo:hi]
        first, last = int(indices.min()), int(indices.max()) + 1
        weights = rows.weights[lo:hi] if rows.weights.size else rows.weights
        return first, last, (indices - first, weights, cols)

    def run_rows(self, x: np.ndarray, out: np.ndarray, band: Any) -> None:
        """Output rows into `out` from the input rows `x` (C-contiguous), as `rows` said."""
        indices, weights, cols = band
        self._planes(x, out, indices, weights, cols)

    def _planes(
        self,
        x: np.ndarray,
        out: np.ndarray,
        rows: np.ndarray,
        row_weights: np.ndarray,
        cols: _ResizeTaps,
    ) -> None:
        planes = x.shape[0] * x.shape[1]
        source = x.reshape(planes, *x.shape[2:])
        target = out.reshape(planes, *out.shape[2:])
        if self.mode == "nearest":
            _pick(_RESIZE_NEAREST, out.size)(source, target, rows, cols.indices)
        else:
            _pick(_RESIZE_LINEAR, out.size)(
                source, target, rows, row_weights, cols.indices, cols.weights
            )


def _resize(node: Node, opset: int) -> Body | None:
    mode = str(node.attr("mode", "nearest"))
    coordinates = str(node.attr("coordinate_transformation_mode", "half_pixel"))
    nearest = str(node.attr("nearest_mode", "round_prefer_floor"))
    if opset < 11 or mode not in ("nearest", "linear") or coordinates not in _RESIZE_COORDINATES:
        return None
    if mode == "nearest" and nearest not in _NEAREST_ROUNDING:
        return None
    if node.attr("antialias", 0) or node.attr("exclude_outside", 0) or node.attr("axes", None):
        return None
    if str(node.attr("keep_aspect_ratio_policy", "stretch")) != "stretch":
        return None
    return ResizeKernel(mode, coordinates, nearest)


def _resize_scales(
    inputs: Sequence[Any], in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[float, float] | None:
    """The scales of H and W when the scales input is given (None: sizes, scale = out / in);
    declines unless N and C keep their size and the output size follows from the inputs."""
    scales = inputs[2] if len(inputs) > 2 else None
    sizes = inputs[3] if len(inputs) > 3 else None
    given_scales = scales is not None and np.asarray(scales).size > 0
    given_sizes = sizes is not None and np.asarray(sizes).size > 0
    if given_scales == given_sizes:
        raise _Unfit
    if given_sizes:
        wanted = tuple(int(v) for v in np.asarray(sizes).reshape(-1))
        if wanted != out_shape:
            raise _Unfit
        return None
    values = tuple(float(v) for v in np.asarray(scales, dtype=np.float64).reshape(-1))
    if len(values) != 4 or values[:2] != (1.0, 1.0) or min(values) <= 0:
        raise _Unfit
    if tuple(math.floor(s * v) for s, v in zip(in_shape, values, strict=True)) != out_shape:
        raise _Unfit
    return values[2], values[3]


def _axis_plan(
    axis: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    scales: tuple[float, float] | None,
) -> AxisResize:
    if scales is None:
        ratio = out_shape[axis] / in_shape[axis]
        return AxisResize(axis, in_shape[axis], out_shape[axis], ratio, exact_length=True)
    return AxisResize(axis, in_shape[axis], out_shape[axis], scales[axis - 2])


# -- data movement -------------------------------------------------------------------------------


def _arrays(*values: Any) -> None:
    for value in values:
        if not isinstance(value, np.ndarray) or value.dtype.kind in "OUSV":
            raise _Unfit


def _swap_tiles(source, target, tile):  # type: ignore[no-untyped-def]
    """target[b, c, r, :] = source[b, r, c, :] for (B, R, C, E) arrays, `tile` x `tile` (r, c)
    tiles at a time, so that a tile's rows of the source and of the target stay in cache."""
    batch, rows, cols, inner = source.shape
    row_tiles = (rows + tile - 1) // tile
    col_tiles = (cols + tile - 1) // tile
    for t in prange(batch * row_tiles * col_tiles):
        b = t // (row_tiles * col_tiles)
        r0 = (t // col_tiles % row_tiles) * tile
        c0 = (t % col_tiles) * tile
        if inner == 1:
            for c in range(c0, min(c0 + tile, cols)):
                for r in range(r0, min(r0 + tile, rows)):
                    target[b, c, r, 0] = source[b, r, c, 0]
        else:
            for c in range(c0, min(c0 + tile, cols)):
                for r in range(r0, min(r0 + tile, rows)):
                    for e in range(inner):
                        target[b, c, r, e] = source[b, r, c, e]


_SWAP_TILES = _jit(_swap_tiles)

_TILE_BYTES = 1 << 14
"""A tile of `_swap_tiles` moves about this many bytes (L1-sized), 32 x 32 elements at most."""

_SAME_SIZE_UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def merged_permutation(
    shape: tuple[int, ...], perm: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same transpose over fewer axes: axes of extent 1 dropped, and axes that stay side by
    side in the output merged into one. Returns (input shape, permutation) of the merged axes;
    a transpose that moves nothing merges to at most one axis."""
    kept = [a for a in perm if shape[a] != 1]
    groups: list[list[int]] = []  # runs of input axes that stay adjacent, in output order
    for axis in kept:
        if groups and _next_kept(shape, groups[-1][-1]) == axis:
            groups[-1].append(axis)
        else:
            groups.append([axis])
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    merged_shape = tuple(math.prod(shape[a] for a in groups[g]) for g in by_input)
    position = {g: i for i, g in enumerate(by_input)}
    return merged_shape, tuple(position[g] for g in range(len(groups)))


def _next_kept(shape: tuple[int, ...], axis: int) -> int:
    """The next input axis after `axis` whose extent is not 1 (len(shape) if none)."""
    nxt = axis + 1
    while nxt < len(shape) and shape[nxt] == 1:
        nxt += 1
    return nxt


_SWAPS = {
    (1, 0): (-1, 0, 1, -1),
    (0, 2, 1): (0, 1, 2, -1),
    (1, 0, 2): (-1, 0, 1, 2),
    (0, 2, 1, 3): (0, 1, 2, 3),
}
"""Merged permutations that swap two blocks of axes: for each, which merged axes are its batch,
rows, columns and inner elements (-1: none, an extent of 1)."""


SwapPlan = tuple[int, int, int, int, int]
"""How `_swap_tiles` moves a transpose: (batch, rows, columns, inner elements, tile edge)."""


def _swap_plan(shape: tuple[int, ...], perm: tuple[int, ...], itemsize: int) -> SwapPlan | None:
    """The plan of a transpose of `shape` by `perm` whose merged permutation swaps two blocks of
    axes (a matrix transpose, batched or of rows of E elements, as attention's head splits
    are); None for any other, or for elements of a size `_swap_tiles` does not move."""
    if itemsize not in _SAME_SIZE_UINTS:
        return None
    merged_shape, merged = merged_permutation(shape, perm)
    where = _SWAPS.get(merged)
    if where is None:
        return None
    extents = (1, *merged_shape)  # index 0 is the extent 1 of a block a permutation does not have
    batch, rows, cols, inner = (extents[i + 1] for i in where)
    tile = max(1, min(32, math.isqrt(_TILE_BYTES // (inner * itemsize))))
    return batch, rows, cols, inner, tile


def _transpose_into(
    x: np.ndarray, out: np.ndarray, perm: tuple[int, ...], plan: SwapPlan | None
) -> None:
    """out = x.transpose(perm): as `_swap_tiles` over x's bytes where `plan` (`_swap_plan` of
    x's shape) says how; any other, and arrays not both contiguous or that overlap, by numpy."""
    _transpose_call(x, out, perm, plan)()


def _transpose_call(
    x: np.ndarray, out: np.ndarray, perm: tuple[int, ...], plan: SwapPlan | None
) -> Callable[[], None]:
    """`_transpose_into(x, out, perm, plan)` as a call without arguments."""
    if (
        plan is None
        or not (x.flags.c_contiguous and out.flags.c_contiguous)
        or np.may_share_memory(x, out)
    ):
        return functools.partial(np.copyto, out, x.transpose(perm))
    batch, rows, cols, inner, tile = plan
    uint = _SAME_SIZE_UINTS[x.dtype.itemsize]
    source = x.view(uint).reshape(batch, rows, cols, inner)
    target = out.view(uint).reshape(batch, cols, rows, inner)
    return functools.partial(_pick(_SWAP_TILES, x.size), source, target, tile)


def _transpose(node: Node, opset: int) -> Body | None:
    perm_attr = node.attr("perm", None)
    plans: dict[tuple[tuple[int, ...], int], SwapPlan | None] = {}  # by input shape and itemsize

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        x, out = inputs[0], outputs[0]
        _arrays(x, out)
        perm = tuple(reversed(range(x.ndim))) if perm_attr is None else tuple(perm_attr)
        if sorted(perm) != list(range(x.ndim)) or x.dtype != out.dtype:
            raise _Unfit
        if out.shape != tuple(x.shape[a] for a in perm):
            raise _Unfit
        calls: list[Callable[[], None] | None] = []
        if x.size:
            key = (x.shape, x.dtype.itemsize)
            if key not in plans:
                plans[key] = _swap_plan(x.shape, perm, x.dtype.itemsize)
            calls.append(_transpose_call(x, out, perm, plans[key]))
        calls.append(_finish_all(epilogue, out))
        return calls, True

    return planned(plan)


def _concat(node: Node, opset: int) -> Body | None:
    axis_attr = int(node.attr("axis", 0))

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        out = outputs[0]
        _arrays(out, *inputs)
        if any(a.dtype != out.dtype or a.ndim != out.ndim for a in inputs) or out.ndim == 0:
            raise _Unfit
        axis = axis_attr + out.ndim if axis_attr < 0 else axis_attr
        if not 0 <= axis < out.ndim:
            raise _Unfit
        rest = out.shape[:axis] + out.shape[axis + 1 :]
        if any(a.shape[:axis] + a.shape[axis + 1 :] != rest for a in inputs):
            raise _Unfit  # the reference names the shapes that do not line up
        if sum(a.shape[axis] for a in inputs) != out.shape[axis]:
            raise _Unfit
        index: list[slice] = [slice(None)] * out.ndim
        start = 0
        calls: list[Callable[[], None] | None] = []
        for a in inputs:  # an input the plan computed in its place is there already
            index[axis] = slice(start, start + a.shape[axis])
            place = out[tuple(index)]
            start += a.shape[axis]
            if not _same_bytes(a, place):
                calls.append(functools.partial(np.copyto, place, a))
        calls.append(_finish_all(epilogue, out))
        return calls, True

    return planned(plan)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays of one shape view the same bytes the same way (the stride of an axis
    of extent 1 is never used, so it may differ)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.dtype == b.dtype
        and all(n == 1 or x == y for n, x, y in zip(a.shape, a.strides, b.strides, strict=True))
    )


def _gather(node: Node, opset: int) -> Body | None:
    axis_attr = int(node.attr("axis", 0))

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        data, indices, out = inputs[0], inputs[1], outputs[0]
        _arrays(data, indices, out)
        if data.ndim == 0 or indices.dtype.kind not in "iu" or data.dtype != out.dtype:
            raise _Unfit
        axis = axis_attr + data.ndim if axis_attr < 0 else axis_attr
        extent = data.shape[axis] if 0 <= axis < data.ndim else 0
        if indices.size and (indices.min() < -extent or indices.max() >= extent):
            raise _Unfit  # the reference names the index out of range
        np.take(data, indices, axis=axis, out=out, mode="wrap")
        _finish(epilogue, out)

    return body


def _gather_rows(data, index, extents, per_batch, out):  # type: ignore[no-untyped-def]
    """out[r] = data[row r's index tuple] for GatherND, data as (rows, inner) and `index` as
    (rows of out, depth): the tuple's flat row number (negative entries counted from the end),
    plus `per_batch` rows for each batch before its own (`index`'s rows in equal runs per
    batch; none empty). Returns -1, or the first row whose tuple is out of range (nothing
    copied for it or after it)."""
    count, depth = index.shape
    run = count // (data.shape[0] // per_batch)  # index rows per batch
    for r in range(count):
        row = 0
        for d in range(depth):
            value = np.int64(index[r, d])
            extent = extents[d]
            if value < 0:
                value += extent
            if value < 0 or value >= extent:
                return r
            row = row * extent + value
        out[r, :] = data[row + (r // run) * per_batch, :]
    return -1


_GATHER_ROWS = numba.njit(cache=True)(_gather_rows)


def _gather_nd(node: Node, opset: int) -> Body | None:
    """GatherND as one Numba loop over the index tuples (`_gather_rows`): data seen as (rows,
    the dims past the indexed ones), each tuple made a flat row number and its row copied into
    the output, with no fancy-index temporaries; an index out of range is left to the
    reference, which names it."""
    batch_dims = int(node.attr("batch_dims", 0)) if opset >= 12 else 0

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        data, indices, out = inputs[0], inputs[1], outputs[0]
        _arrays(data, indices, out)
        if indices.dtype.kind not in "iu" or data.dtype != out.dtype or indices.ndim < 1:
            raise _Unfit
        depth = indices.shape[-1]
        if not (1 <= depth <= data.ndim - batch_dims and batch_dims < indices.ndim):
            raise _Unfit
        if indices.shape[:batch_dims] != data.shape[:batch_dims]:
            raise _Unfit
        lead = data.shape[batch_dims : batch_dims + depth]
        inner = math.prod(data.shape[batch_dims + depth :])
        count = math.prod(indices.shape[:-1])
        if not out.flags.c_contiguous or out.size != count * inner:
            raise _Unfit
        if out.size:
            extents = np.array(lead, dtype=np.int64)
            source = _contiguous(data).reshape(-1, inner)
            index = _contiguous(indices).reshape(count, depth)
            if (
                _GATHER_ROWS(source, index, extents, math.prod(lead), out.reshape(count, inner))
                >= 0
            ):
                raise _Unfit  # the reference names the index out of range
        _finish(epilogue, out)

    return body


def _slice(node: Node, opset: int) -> Body | None:
    attributes = None
    if opset < 10:
        attributes = (node.attr("starts", None), node.attr("ends", None), node.attr("axes", None))
        if attributes[0] is None or attributes[1] is None:
            return None

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        data, out = inputs[0], outputs[0]
        _arrays(data, out)
        if attributes is not None:
            starts, ends, axes, steps = [*attributes, None]
        else:
            starts, ends, axes, steps = (
                _int_list(inputs[i]) if len(inputs) > i and inputs[i] is not None else None
                for i in range(1, 5)
            )
        if starts is None or ends is None:
            raise _Unfit
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise _Unfit
        index = [slice(None)] * data.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            if not -data.ndim <= axis < data.ndim:
                raise _Unfit
            index[axis] = slice(int(start), int(end), int(step))
        np.copyto(out, data[tuple(index)])
        _finish(epilogue, out)

    return body


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu":
        raise _Unfit
    return [int(v) for v in value.reshape(-1)]


def _expand(node: Node, opset: int) -> Body | None:
    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        data, out = inputs[0], outputs[0]
        _arrays(data, out)
        dims = tuple(_int_list(inputs[1]))
        if np.broadcast_shapes(data.shape, dims) != out.shape or data.dtype != out.dtype:
            raise _Unfit
        np.copyto(out, np.broadcast_to(data, out.shape))
        _finish(epilogue, out)

    return body


def _pad(node: Node, opset: int) -> Body | None:
    if str(node.attr("mode", "constant")) != "constant" or opset < 11:
        return None

    def body(inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None) -> None:
        data, out = inputs[0], outputs[0]
        _arrays(data, out)
        rank = data.ndim
        pads = _int_list(inputs[1])
        given_axes = inputs[3] if len(inputs) > 3 and opset >= 18 else None
        axes = list(range(rank)) if given_axes is None else _int_list(given_axes)
        axes = [a + rank if a < 0 else a for a in axes]
        if len(pads) != 2 * len(axes) or min(pads, default=0) < 0 or len(set(axes)) != len(axes):
            raise _Unfit  # negative pads crop: the reference does that
        begins, ends = [0] * rank, [0] * rank
        for position, axis in enumerate(axes):
            begins[axis], ends[axis] = pads[position], pads[len(axes) + position]
        shape = tuple(b + d + e for b, d, e in zip(begins, data.shape, ends, strict=True))
        if out.shape != shape or out.dtype != data.dtype:
            raise _Unfit
        fill = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        value = 0 if fill is None else np.asarray(fill).reshape(-1)[0]
        _fill_border(out, begins, data.shape, value)
        out[tuple(slice(b, b + d) for b, d in zip(begins, data.shape, strict=True))] = data
        _finish(epilogue, out)

    return body


def _fill_border(out: np.ndarray, begins: list[int], inner: tuple[int, ...], value: Any) -> None:
    """Write `value` everywhere outside the box at `begins` of size `inner`, each element once:
    along axis i, the slabs before and after the box, within the box on the axes before i."""
    for axis in range(out.ndim):
        lead = tuple(slice(b, b + d) for b, d in zip(begins[:axis], inner[:axis], strict=True))
        out[(*lead, slice(0, begins[axis]))] = value
        out[(*lead, slice(begins[axis] + inner[axis], None))] = value


# -- the table -----------------------------------------------------------------------------------

_UFUNCS: dict[str, np.ufunc] = {
    **PREDICATES,
    "Not": np.logical_not,
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
}
"""Elementwise ops that fusion leaves alone where their operands are integers or booleans (a
mask from token ids, a gate's decision), computed by one numpy ufunc into the output's view."""

_ARITHMETIC = frozenset({"Add", "Sub", "Mul"})
"""Of _UFUNCS, those kept to integers: over floats, fused loop nests compute them (and numpy
would warn where one overflows)."""


def _ufunc(node: Node, opset: int) -> Body | None:
    """One numpy ufunc over the broadcast operands into the output: a comparison of numbers of
    one type into booleans, a logical op of booleans, or integer Add, Sub and Mul (wrapping on
    overflow, as the reference does). Anything else declines to the reference."""
    function = _UFUNCS[node.op_type]
    declared = node.inputs[0].dtype if node.inputs and node.inputs[0] is not None else None
    arithmetic = node.op_type in _ARITHMETIC
    if arithmetic and declared is not None and declared.numpy.kind not in "iu":
        return None
    logical = function in (np.logical_and, np.logical_or, np.logical_xor, np.logical_not)

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        out = outputs[0]
        _arrays(out, *inputs)
        if len(inputs) != function.nin or any(a.dtype != inputs[0].dtype for a in inputs):
            raise _Unfit
        kind = inputs[0].dtype.kind
        if arithmetic:
            fits = kind in "iu" and out.dtype == inputs[0].dtype
        else:
            fits = out.dtype == np.bool_ and (kind == "b" if logical else kind in "iufb")
        if not fits or np.broadcast_shapes(*(a.shape for a in inputs)) != out.shape:
            raise _Unfit
        return [functools.partial(function, *inputs, out=out), _finish_all(epilogue, out)], True

    return planned(plan)


def _cast_fits(source: np.dtype, target: np.dtype) -> bool:
    """Whether numpy's conversion of `source` elements to `target` is Cast's (`sod2.ops.cast`)
    and cannot warn: to bool from any number; between integers (the low bits kept); to float32
    or float64 from integers, booleans and floats no wider."""
    if target.kind == "b":
        return source.kind in "biuf"
    if target.kind in "iu":
        return source.kind in "biu"
    if target in (np.float32, np.float64):
        return source.kind in "biu" or (source.kind == "f" and source.itemsize <= target.itemsize)
    return False


def _cast(node: Node, opset: int) -> Body | None:
    """Cast between the types of `_cast_fits` as one `copyto` into the output's view."""
    to = node.attr("to", None)
    if not isinstance(to, int):
        return None
    try:
        target = np.dtype(DType.from_onnx(to).numpy)
    except (ValueError, KeyError, Sod2Error):
        return None

    def plan(
        inputs: Sequence[Any], outputs: Sequence[Any], epilogue: Epilogue | None
    ) -> tuple[list[Callable[[], None] | None], bool]:
        x, out = inputs[0], outputs[0]
        _arrays(x, out)
        if out.dtype != target or x.shape != out.shape or not _cast_fits(x.dtype, target):
            raise _Unfit
        copy = functools.partial(np.copyto, out, x, casting="unsafe")
        return [copy, _finish_all(epilogue, out)], True

    return planned(plan)


_FLOAT32_ONLY = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Softmax",
        "LogSoftmax",
        "LayerNormalization",
        "InstanceNormalization",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "Resize",
        "Standardize",
    }
)
"""Ops whose loops are written for float32: another declared input type gets no fast kernel."""

_BUILDERS: dict[str, Callable[[Node, int], Body | None]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "BatchNormalization": _batch_norm,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_average_pool,
    "ReduceSum": _reduce,
    "ReduceMean": _reduce,
    "ReduceMax": _reduce,
    "Resize": _resize,
    "Transpose": _transpose,
    "Concat": _concat,
    "Gather": _gather,
    "GatherND": _gather_nd,
    "Slice": _slice,
    "Expand": _expand,
    "Pad": _pad,
    **{op: _ufunc for op in _UFUNCS},
    "Cast": _cast,
}

_SOD2_BUILDERS: dict[str, Callable[[Node, int], Body | None]] = {"Standardize": _standardize}
"""Builders of sod2's own ops (domain `sod2`)."""


def _declared_type_fits(node: Node) -> bool:
    """False when the first input's declared element type is one the op's loops do not take."""
    declared = node.inputs[0].dtype if node.inputs and node.inputs[0] is not None else None
    if declared is None:
        return True  # unknown until run time, where the kernel checks
    if node.op_type in _FLOAT32_ONLY:
        return declared == DType.FLOAT32
    if node.op_type in ("MatMul", "Gemm"):
        return declared in (DType.FLOAT32, DType.FLOAT64)
    return declared not in (DType.STRING,)


def fast_kernel(node: Node, opset: int) -> FastKernel | None:
    """A kernel for `node` (attributes read once here, at compile time), or None when this module
    has none for its op/attributes/dtypes (the runtime then uses the reference kernel)."""
    if node.subgraphs:
        return None
    if node.domain in ("", "ai.onnx"):
        builder = _BUILDERS.get(node.op_type)
    else:
        builder = _SOD2_BUILDERS.get(node.op_type) if node.domain == FUSED_DOMAIN else None
    if builder is None or not _declared_type_fits(node):
        return None
    body = builder(node, opset)
    return None if body is None else _Kernel(node, opset, body)


def supported_ops() -> list[str]:
    """The op types `fast_kernel` may cover (sod2's own as `sod2::Op`)."""
    return sorted([*_BUILDERS, *(f"{FUSED_DOMAIN}::{op}" for op in _SOD2_BUILDERS)])
