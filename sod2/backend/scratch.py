"""How much scratch each step's kernels take: the size of its workspace in the memory plan.

A convolution's fast kernel (`sod2.backend.kernels`) needs scratch memory while it runs: im2col's
patches, kn2row's padded rows and products, Winograd's transformed tiles, a strided direct
loop's column phases, ConvTranspose's products, a chain's bands. The runtime serves that scratch
from a *workspace* storage that the memory plan places like any tensor, alive at its step only
(`sod2.opt.memory_plan`, `plan_memory(workspace=...)`), so that it takes arena bytes only where
the tensors alive at that step leave room, and the order search (SEP) weighs it too.

Its size is read off the node before any input is seen: the strategy a convolution runs as
depends only on its weights' shape and attributes (`kernels.conv_strategy`), and each strategy's
scratch is a formula of the symbolic shapes RDP proved, the same block sizes the kernel computes
with its default budgets (`IM2COL_BLOCK_BYTES` and the like), so the size is a sympy expression
over the model's symbols. It is capped by the caller (`CompileOptions.workspace`): the kernels
size their blocks to the region they get (`kernels.use_workspace`), so a smaller region costs
time, not correctness.

Invariants: `workspace_floats` is 0 for a node whose kernels take no scratch, None where a shape
it needs is unknown; otherwise at least what the kernel takes from a region of that size with
its default budgets (a test runs every strategy in such a region and checks that nothing
spills to the thread's own buffers).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import sympy

from sod2.analysis.facts import TensorFact
from sod2.backend import kernels
from sod2.backend.kernels import conv_strategy
from sod2.ir.dims import Dim
from sod2.ir.graph import Node, Tensor
from sod2.ops.fused import is_fused

NAME_SLACK = 64
"""Floats added for the alignment of the named slices a kernel takes (16 floats each at most,
four names at most)."""

_STANDARD = ("", "ai.onnx")


def workspace_floats(node: Node, facts: Mapping[Tensor, TensorFact]) -> Dim | None:
    """The float32 scratch elements `node`'s step takes with its kernels' default budgets (see
    the module docstring): a Conv's or ConvTranspose's, the largest of a fused group's, plus
    the bands of a chain. 0: none; None: a shape it depends on is unknown."""
    return _floats(node, facts, {})


def workspace_bytes(node: Node, facts: Mapping[Tensor, TensorFact], cap: int) -> Dim | None:
    """The bytes of `node`'s workspace storage: its scratch (`workspace_floats`, with the
    slices' alignment, in whole 64-byte lines) but at most `cap` (rounded down to lines), `cap`
    where the scratch is unknown; None where its kernels take none."""
    floats = workspace_floats(node, facts)
    if floats is None:
        return cap // 64 * 64
    if floats == 0:
        return None
    return _capped_lines(floats, cap)


@functools.lru_cache(maxsize=4096)
def _capped_lines(floats: Dim, cap: int) -> Dim:
    # in whole cache lines (16 floats), so that the plan need not round the size up
    total = sympy.sympify(floats + NAME_SLACK)
    if total.is_Number:
        return 64 * min(cap // 64, int(sympy.ceiling(total / 16)))
    # Left unevaluated: over a size holding Max, Min and floor, sympy's evaluation of ceiling
    # and Min asks questions of every term and took seconds per node (yolov6: 33 s of 46 s
    # of a cold compile). Both are evaluated as they stand when the plan is made concrete.
    lines = sympy.ceiling(total / 16, evaluate=False)
    return 64 * sympy.Min(cap // 64, lines, evaluate=False)


def _floats(
    node: Node, facts: Mapping[Tensor, TensorFact], outer: Mapping[Tensor, Tensor]
) -> Dim | None:
    if is_fused(node):
        body = node.attr("body")
        inner = dict(outer)
        for tensor, source in zip(body.inputs, node.inputs, strict=False):
            if source is not None:
                inner[tensor] = outer.get(source, source)
        needs = [_floats(n, facts, inner) for n in body.nodes]
        if any(need is None for need in needs):
            return None
        terms = [need for need in needs if need != 0]
        if node.attr("kind", "") == "chain":
            bands = _chain_bands(body, facts)
            if bands is None:
                return None
            terms.append(bands)
        return _max(terms)
    if node.domain not in _STANDARD or node.op_type not in ("Conv", "ConvTranspose"):
        return 0
    shapes = [_dims(t, facts) for t in (node.inputs[0], node.inputs[1], node.outputs[0])]
    x, w, y = shapes
    if x is None or w is None or y is None or len(x) not in (3, 4) or len(w) != len(x):
        return None
    if not all(isinstance(d, int) for d in w):
        return None
    rank = len(x) - 2
    if rank == 1:  # a 1-D convolution runs as a 2-D one over a height of 1
        x, w, y = (*x[:2], 1, x[2]), (*w[:2], 1, w[2]), (*y[:2], 1, y[2])
    weight = node.inputs[1]
    constant = weight is not None and outer.get(weight, weight).is_constant
    if node.op_type == "Conv":
        return _conv_floats(node, rank, x, w, y, constant)  # type: ignore[arg-type]
    return _conv_transpose_floats(node, x, w)  # type: ignore[arg-type]


def _conv_floats(
    node: Node, rank: int, x: Sequence[Dim], w: Sequence[int], y: Sequence[Dim], constant: bool
) -> Dim:
    """A Conv's scratch, by the strategy `ConvKernel` picks for it (`x`, `w` and `y` lifted to
    2-D where the convolution is 1-D, of `rank`)."""
    strides = _pair(node.attr("strides", None), rank)
    dilations = _pair(node.attr("dilations", None), rank)
    group = int(node.attr("group", 1))
    auto_pad = str(node.attr("auto_pad", "NOTSET")) or "NOTSET"
    if auto_pad == "VALID":
        unpadded = True
    elif auto_pad == "NOTSET":
        unpadded = not any(int(p) for p in node.attr("pads", None) or ())
    else:  # SAME pads nothing only where the window is one pixel at unit stride
        unpadded = all(k == 1 for k in w[2:]) and strides == (1, 1)
    strategy = conv_strategy(group, x[1], w, strides, dilations, unpadded)
    if kernels.tiles_fit(strategy, group, w):
        return _tiles_floats(strides, dilations, tuple(x), tuple(w), tuple(y))
    return _strategy_floats(
        strategy, group, strides, dilations, tuple(x), tuple(w), tuple(y), constant
    )


@functools.lru_cache(maxsize=4096)
def _tiles_floats(
    strides: tuple[int, int],
    dilations: tuple[int, int],
    x: tuple[Dim, ...],
    w: tuple[int, ...],
    y: tuple[Dim, ...],
) -> Dim:
    """The scratch of a convolution that runs as `tiles` (its weights are small enough,
    `kernels.tiles_fit`), with the default budget: a block of output rows' padded input
    planes, split by row and column phase, and their slack (`kernels._tiles_block`, which
    takes this much at most)."""
    assert kernels.panel.TILE is not None
    batch, channels = x[0], x[1]
    out_h, out_w = y[2], y[3]
    sh, sw = strides
    span, extra = kernels.tiles_extents(out_w, w[2:], strides, dilations)
    row = batch * channels * sh * sw * span
    block = _blocked(out_h, kernels.DIRECT_BLOCK_BYTES, row)
    return _int(row * (block + extra) + kernels._tiles_slack(span))


@functools.lru_cache(maxsize=4096)
def _strategy_floats(
    strategy: str,
    group: int,
    strides: tuple[int, int],
    dilations: tuple[int, int],
    x: tuple[Dim, ...],
    w: tuple[int, ...],
    y: tuple[Dim, ...],
    constant: bool,
) -> Dim:
    """The scratch of `strategy` over these shapes (cached: building the sympy expressions is
    what costs, and a model repeats its convolutions' shapes)."""
    batch, channels, height, width = x
    filters, _, kh, kw = w
    out_h, out_w = y[2], y[3]
    if strategy == "pointwise":
        return 0
    if strategy == "direct":  # with a horizontal stride, a block's input rows split by phase
        sh, sw = strides
        if sw == 1:
            return 0
        row = batch * channels * sw * _ceil(width, sw)
        block = _blocked(out_h, kernels.DIRECT_BLOCK_BYTES, sh * row)
        reach = (kh - 1) * dilations[0] + 1
        return _int(row * sympy.Min(height, (block - 1) * sh + reach))
    if strategy == "winograd":
        row = 16 * (channels + filters) * _ceil(out_w, 2)  # a row of 2x2 tiles
        return row * _blocked(_ceil(out_h, 2), kernels.WINOGRAD_BLOCK_BYTES, row)
    if strategy == "kn2row":
        stacked = 0 if constant else kh * kw * filters * channels
        return _int(_kn2row_floats(channels, filters, kh, kw, dilations, out_h, out_w) + stacked)
    taps = channels // group * kh * kw  # im2col
    return taps * out_w * _blocked(out_h, kernels.IM2COL_BLOCK_BYTES, taps * out_w)


def _kn2row_floats(
    channels: Dim,
    filters: int,
    kh: int,
    kw: int,
    dilations: tuple[int, int],
    out_h: Dim,
    out_w: Dim,
) -> Dim:
    """kn2row's products and padded rows, as `ConvKernel._kn2row_block` sizes them: blocks of
    every tap's products, at least KN2ROW_MIN_ROWS rows, or a kernel row of taps at a time
    where such blocks (or the image) have under KN2ROW_MIN_ROWS rows per row of reach."""
    reach = (kh - 1) * dilations[0]
    padded_w = out_w + (kw - 1) * dilations[1]
    budget, least = kernels.KN2ROW_BLOCK_BYTES, kernels.KN2ROW_MIN_ROWS

    def floats(rows_of_taps: int, block: Dim, span: int) -> Dim:
        rows = sympy.Min(out_h, sympy.Max(least, block))
        return (rows_of_taps * kw * filters * (rows + span) + channels * (rows + reach)) * padded_w

    every = kh * kw * filters * padded_w  # products of every tap for one output row
    block = sympy.floor(sympy.Integer(budget) / (4 * every)) - reach
    whole = floats(kh, block, reach)
    if kh == 1:
        return whole
    by_row = floats(1, sympy.floor(sympy.Integer(budget) / (4 * kw * filters * padded_w)), 0)
    # 1 where blocks would be thin (in a region sized so, the kernel finds them thin too)
    thin = sympy.Min(1, sympy.Max(0, least * reach - sympy.Min(out_h, block)))
    return thin * by_row + (1 - thin) * whole


def _conv_transpose_floats(node: Node, x: Sequence[Dim], w: Sequence[int]) -> Dim:
    """A ConvTranspose's scratch: every tap's stacked filters and a block of their products."""
    channels, height, width = x[1], x[2], x[3]
    taps, filters = w[2] * w[3], w[1]
    row = taps * filters * width
    return _int(
        taps * filters * channels + row * _blocked(height, kernels.CONV_TRANSPOSE_BLOCK_BYTES, row)
    )


def _chain_bands(body: object, facts: Mapping[Tensor, TensorFact]) -> Dim | None:
    """A chain's band buffers for one image: two bands of the stages' results but the last
    (alternating; one where there is one such stage) and a block of the output, each at most
    about CHAIN_BAND_BYTES and at most the whole value it holds."""
    per_image: list[Dim] = []
    for node in body.nodes:  # type: ignore[attr-defined]
        dims = _dims(node.outputs[0], facts)
        if dims is None or not dims:
            return None
        per_image.append(_int(sympy.Mul(*dims[1:])))
    band = kernels.CHAIN_BAND_BYTES // 4
    *middle, last = per_image
    bands = min(2, len(middle)) * sympy.Min(band, _max(middle)) if middle else 0
    return _int(bands + sympy.Min(band, last))


def _blocked(rows: Dim, budget: int, row: Dim) -> Dim:
    """The rows of a block of `row` floats per row within `budget` bytes: at least one, at
    most `rows` (as the kernels size them)."""
    return _int(sympy.Min(rows, sympy.Max(1, sympy.floor(sympy.Integer(budget) / (4 * row)))))


def _dims(tensor: Tensor | None, facts: Mapping[Tensor, TensorFact]) -> tuple[Dim, ...] | None:
    fact = facts.get(tensor) if tensor is not None else None
    if fact is None or fact.shape.dims is None:
        return None
    return tuple(fact.shape.dims)


def _pair(values: Sequence[int] | None, rank: int) -> tuple[int, int]:
    """Strides or dilations as (height, width); a 1-D window has a height of 1."""
    found = tuple(int(v) for v in values) if values else (1,) * rank
    return (1, *found) if rank == 1 else found  # type: ignore[return-value]


def _ceil(a: Dim, b: int) -> Dim:
    return _int(sympy.ceiling(sympy.sympify(a) / b))


def _max(terms: Sequence[Dim]) -> Dim:
    if not terms:
        return 0
    return _int(sympy.Max(*terms)) if len(terms) > 1 else terms[0]


def _int(value: Dim) -> Dim:
    """A sympy integer as a Python int (the plan keeps plain ints where sizes are static)."""
    return int(value) if getattr(value, "is_Integer", False) else value
