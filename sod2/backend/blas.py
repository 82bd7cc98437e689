"""Matrix products on Numba's threads: OpenBLAS's sgemm and dgemm called from a `prange` loop.

numpy's `matmul` hands a product to OpenBLAS, which runs it on a thread pool of its own, beside
the OpenMP pool that runs Numba's loops (`sod2.backend.threads`). A model alternates the two
hundreds of times per call, and each switch costs: the pool that was idle has to be woken (tens
of microseconds on a virtual machine, more than a small product takes), and while one pool's
threads wait awake they hold cores the other needs.

`matmul_into(a, b, out)` keeps every product on the one pool. It calls OpenBLAS's CBLAS gemm
itself, through its address, from the iterations of a `prange` loop: the product is split into
as many blocks of rows (or of columns, when the output is wider than tall) as there are threads,
or, for a stack of products at least as deep as that, each product is one iteration. Around the
loop, OpenBLAS's thread count is 1 (`openblas_set_num_threads_local`, which in a pthreads build
of OpenBLAS sets the count of the whole process, and returns the one before, which the loop
puts back), so each gemm computes its block in the thread that called it and OpenBLAS's pool is
never woken. Products too small to split run the same way on the calling thread alone. (While
such a loop runs, a product that another Python thread hands numpy runs on one thread.)

Invariants: the result is the one `np.matmul` gives (the same gemm kernels, on blocks of the
same product); operands are read in place, row-major or transposed, never copied; anything the
gemm cannot take as it is (another dtype, an output in column order or overlapping an operand,
a stack whose layers are not evenly spaced, no OpenBLAS with these functions) goes to
`np.matmul` unchanged, as is every product where the environment sets SOD2_MATMUL=numpy. The
library's functions are found once, at import, by name; their
addresses are arguments of the compiled loops, so the loops are cached on disk like any other.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange, types

from .intrinsics import call_gemm_scaled, call_int_function
from .jit import serial_and_parallel
from .threads import openblas_library

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
"""CBLAS's codes for row-major storage and for an operand read as stored or transposed."""

PARALLEL_MIN = 1 << 20
"""A product of at least this many multiply-adds (M * N * K, summed over a stack) is split over
every thread; a smaller one runs on the calling thread (about 10 microseconds of work: less
than it costs to hand out)."""


class Gemm(NamedTuple):
    """The functions of one BLAS that `matmul_into` calls, by address."""

    sgemm: int
    dgemm: int
    set_threads_local: int
    wide: bool
    """Whether the BLAS's integers are 64-bit (an ILP64 build)."""


def _address(library: ctypes.CDLL, name: str) -> int | None:
    try:
        function = getattr(library, name)
    except AttributeError:
        return None
    return ctypes.cast(function, ctypes.c_void_p).value


def find_gemm() -> Gemm | None:
    """numpy's OpenBLAS's CBLAS sgemm and dgemm and `openblas_set_num_threads_local`, or None
    where numpy uses no OpenBLAS or one without that function (before 0.3.27)."""
    library = openblas_library()
    if library is None:
        return None
    local = _address(library, "openblas_set_num_threads_local")
    if not local:
        return None
    # scipy-openblas's ILP64 names, an ILP64 build's, then the plain LP64 ones
    for prefix, suffix, wide in (
        ("scipy_cblas_", "64_", True),
        ("cblas_", "64_", True),
        ("cblas_", "", False),
    ):
        sgemm = _address(library, f"{prefix}sgemm{suffix}")
        dgemm = _address(library, f"{prefix}dgemm{suffix}")
        if sgemm and dgemm:
            return Gemm(sgemm, dgemm, local, wide)
    return None


GEMM = None if os.environ.get("SOD2_MATMUL") == "numpy" else find_gemm()
"""The BLAS `matmul_into` calls (None: every product goes to `np.matmul`, as it does where the
environment sets SOD2_MATMUL=numpy, to compare or to work around a BLAS)."""


# -- the loops -----------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _operand(x, rows, cols):  # type: ignore[no-untyped-def]
    """(CBLAS trans code, leading dimension) under which gemm reads the last two axes of `x`
    in place; (0, 0) where it cannot (a zero, negative or uneven stride)."""
    size = x.itemsize
    row, col = x.strides[x.ndim - 2], x.strides[x.ndim - 1]
    if cols == 1:
        col = size
    if rows == 1:
        row = cols * size if col == size else size
    if col == size and row % size == 0 and row >= cols * size:
        return NO_TRANS, max(1, row // size)
    if row == size and col % size == 0 and col >= rows * size:
        return TRANS, max(1, col // size)
    return 0, 0


@numba.njit(cache=True, inline="always")
def _layer_step(x, layers):  # type: ignore[no-untyped-def]
    """The bytes between the matrices of `x`'s stack (its axes before the last two, read as
    one): 0 for a single matrix, -1 where they are not evenly spaced."""
    step = 0
    span = 1
    if layers <= 1:
        return 0
    for axis in range(x.ndim - 3, -1, -1):
        extent, stride = x.shape[axis], x.strides[axis]
        if extent == 1:
            continue
        if span == 1:
            step = stride
        elif stride != step * span:
            return -1
        span *= extent
    return step if step > 0 else -1


@numba.njit(cache=True, inline="always")
def _bounds(x):  # type: ignore[no-untyped-def]
    """The first and one past the last byte address `x` may touch (its strides non-negative)."""
    first = x.ctypes.data
    last = first + x.itemsize
    for axis in range(x.ndim):
        last += (x.shape[axis] - 1) * x.strides[axis]
    return first, last


def _gemm_blocks(a, b, out, gemm, local, parts, integer, bias, rows):  # type: ignore[no-untyped-def]
    """out = a @ b (+ bias) by CBLAS gemm calls, or False (nothing written) where the layout
    does not fit a gemm. A stack of products (a's axes before the last two; b either one matrix
    or a stack as deep) is one product per iteration; `parts` > 1 splits each product into that
    many blocks of rows, or of columns where the output is wider than tall. OpenBLAS's thread
    count is 1 while the loop runs. `integer`'s type is the BLAS's integer. Where `bias` (one
    value per row of each layer: (layers, m)) is not empty, `rows` is a view of `out` as
    (layers, m, n): each block is filled with its rows' values, then gemm adds the product to
    it (beta 1), while the block is in the thread's cache."""
    m, k = a.shape[a.ndim - 2], a.shape[a.ndim - 1]
    n = b.shape[b.ndim - 1]
    layers = 1
    for axis in range(a.ndim - 2):
        layers *= a.shape[axis]
    trans_a, lda = _operand(a, m, k)
    trans_b, ldb = _operand(b, k, n)
    trans_c, ldc = _operand(out, m, n)
    if trans_a == 0 or trans_b == 0 or trans_c != NO_TRANS:
        return False
    step_a, step_c = _layer_step(a, layers), _layer_step(out, layers)
    step_b = _layer_step(b, layers) if b.ndim > 2 else 0
    if step_a < 0 or step_b < 0 or step_c < 0:
        return False
    lo_c, hi_c = _bounds(out)
    lo_a, hi_a = _bounds(a)
    lo_b, hi_b = _bounds(b)
    if (lo_a < hi_c and lo_c < hi_a) or (lo_b < hi_c and lo_c < hi_b):
        return False  # the output overlaps an operand
    size = out.itemsize
    by_rows = m >= n
    filled = bias.size > 0
    scales = (a.dtype.type(1), a.dtype.type(1 if filled else 0))
    codes = (ROW_MAJOR, trans_a, trans_b)
    strides = (lda, ldb, ldc)
    base_a, base_b, base_c = a.ctypes.data, b.ctypes.data, out.ctypes.data
    before = call_int_function(local, 1)
    for task in prange(layers * parts):
        layer, part = task // parts, task % parts
        whole = m if by_rows else n
        lo, hi = whole * part // parts, whole * (part + 1) // parts
        if hi > lo:
            pa = base_a + layer * step_a
            pb = base_b + layer * step_b
            pc = base_c + layer * step_c
            if by_rows:
                pa += lo * size * (1 if trans_a == TRANS else lda)
                pc += lo * size * ldc
                sizes = (hi - lo, n, k)
                if filled:
                    for i in range(lo, hi):
                        rows[layer, i, :] = bias[layer, i]
            else:
                pb += lo * size * (ldb if trans_b == TRANS else 1)
                pc += lo * size
                sizes = (m, hi - lo, k)
                if filled:
                    for i in range(m):
                        rows[layer, i, lo:hi] = bias[layer, i]
            call_gemm_scaled(gemm, codes, sizes, scales, pa, pb, pc, strides, integer)
    call_int_function(local, before)
    return True


_LOOPS: dict[tuple[int, int, np.dtype], tuple[Any, Any]] = {}
"""The serial and parallel `_gemm_blocks` per (a's rank, b's rank, element type), each compiled
for arrays of any layout: a product's operands come in many (rows padded, matrices stored by
columns, stacks of slices), and one compilation per combination would cost a second each."""


def _loops(a_rank: int, b_rank: int, kind: np.dtype) -> tuple[Any, Any]:
    key = (a_rank, b_rank, kind)
    loops = _LOOPS.get(key)
    if loops is None:
        element = numba.from_dtype(kind)
        read = [types.Array(element, rank, "A", readonly=True) for rank in (a_rank, b_rank)]
        written = types.Array(element, a_rank, "A")
        integer = numba.typeof(_INTEGER[GEMM.wide])  # type: ignore[union-attr]
        bias = types.Array(element, 2, "A", readonly=True)
        rows = types.Array(element, 3, "A")
        signature = types.boolean(
            *read, written, types.intp, types.intp, types.intp, integer, bias, rows
        )
        loops = _LOOPS[key] = serial_and_parallel(_gemm_blocks, signature=signature)
    return loops


# -- the entry point -----------------------------------------------------------------------------


def matmul_into(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None = None
) -> None:
    """out = a @ b for float32 or float64 arrays: matrices, or stacks of them (a, b and out
    with the same leading axes, or b one matrix for every layer of a), on Numba's threads (see
    the module docstring); `np.matmul(a, b, out=out)` where these loops do not apply. `bias`,
    of shape out.shape[:-1] (one value per row of the output), is added to the product's
    rows: in each block, as gemm writes it (after the product where numpy computes it)."""
    if bias is not None and bias.shape != out.shape[:-1]:
        raise ValueError(
            f"matmul_into: a bias of shape {list(bias.shape)} for an output of shape "
            f"{list(out.shape)} (it needs one value per row: {list(out.shape[:-1])})"
        )
    if bias is not None and np.may_share_memory(bias, out):
        bias = bias.copy()  # the product overwrites it
    if not (
        isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and isinstance(out, np.ndarray)
    ):
        _numpy(a, b, out, bias)
        return
    if _stacks_broadcast(a, b, out):
        # one stack is repeated along the first axis: a product per layer of that axis
        for i in range(out.shape[0]):
            layer_bias = None if bias is None else bias[i]
            matmul_into(a[min(i, a.shape[0] - 1)], b[min(i, b.shape[0] - 1)], out[i], layer_bias)
        return
    kind = out.dtype
    if (
        GEMM is None
        or a.dtype != kind
        or b.dtype != kind
        or kind not in _TYPES
        or a.ndim < 2
        or out.ndim != a.ndim
        or b.ndim not in (2, a.ndim)
        or a.shape[-1] != b.shape[-2]
        or out.shape != a.shape[:-1] + b.shape[-1:]
        or (b.ndim > 2 and b.shape[:-2] != a.shape[:-2])
        or out.size == 0
        or a.shape[-1] == 0
        or not out.flags.writeable
        or (
            bias is not None
            and (bias.dtype != kind or (out.ndim > 3 and not out.flags.c_contiguous))
        )
    ):
        _numpy(a, b, out, bias)
        return
    work = out.size * a.shape[-1]
    threads = numba.get_num_threads()
    gemm = GEMM.sgemm if kind.itemsize == 4 else GEMM.dgemm
    serial, parallel = _loops(a.ndim, b.ndim, kind)
    if bias is None:
        bias, rows = _NO_BIAS[kind]
    else:
        m, n = out.shape[-2:]
        rows = out.reshape(-1, m, n) if out.ndim > 2 else out[None]  # a view: checked above
        bias = bias.reshape(-1, m)
    integer = _INTEGER[GEMM.wide]
    if work < PARALLEL_MIN or threads == 1:
        done = serial(a, b, out, gemm, GEMM.set_threads_local, 1, integer, bias, rows)
    else:
        parts = 1 if out.size // (out.shape[-2] * out.shape[-1]) >= threads else threads
        done = parallel(a, b, out, gemm, GEMM.set_threads_local, parts, integer, bias, rows)
    if not done:
        _numpy(a, b, out, None if bias.size == 0 else bias.reshape(out.shape[:-1]))


def _stacks_broadcast(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether `a` and `b` are stacks of one rank whose first axes differ, one of them 1 (the
    other repeated along it: a batch of queries against one stack of keys), and `out` the
    stack of their products' shape."""
    return (
        a.ndim == b.ndim > 2
        and a.shape[0] != b.shape[0]
        and 1 in (a.shape[0], b.shape[0])
        and out.ndim == a.ndim
        and out.shape[0] == max(a.shape[0], b.shape[0])
    )


def _numpy(a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None) -> None:
    """`matmul_into` by numpy: the product, then the bias."""
    np.matmul(a, b, out=out)
    if bias is not None:
        np.add(out, bias[..., None], out=out)


_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INTEGER = {True: np.int64(0), False: np.int32(0)}
_NO_BIAS = {kind: (np.empty((0, 0), kind), np.empty((0, 0, 0), kind)) for kind in _TYPES}
"""The empty bias and rows that mean "no bias" to the loops."""
