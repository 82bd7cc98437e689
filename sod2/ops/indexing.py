"""Indexing: reading and writing tensors at computed positions, padding and masking.

The gathers and scatters (GatherElements, GatherND, ScatterElements, ScatterND, Scatter,
TensorScatter) turn their index tensors into one numpy fancy index, so every element moves in one
vectorized step. The other operators here (Pad, Trilu, OneHot, EyeLike, Compress,
ReverseSequence) build a tensor from positions as well: a mask, a window or an index map.

Where ONNX and numpy differ:
- indices may be negative (counting from the end of their axis) but must lie in [-s, s-1]; numpy
  would wrap any value, so each index tensor is checked and normalized first;
- scatters with a reduction apply it once per update, duplicates included (`ufunc.at`), where a
  numpy assignment would keep only the last duplicate;
- Pad takes negative pads, which crop. Cropping happens before padding, so reflect, edge and wrap
  read the cropped tensor (onnxruntime's behaviour). Reflect needs pads smaller than the dim;
- OneHot maps indices outside [-depth, depth-1] to a row of `off` values instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

from sod2.analysis.facts import Facts, SymbolOrigin, TensorFact
from sod2.analysis.rule_kit import (
    Element,
    int_values,
    optional,
    same_as_input,
    static_length,
    value_dims,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import dim_min
from sod2.ir.dims import Dim, as_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis

_REDUCTIONS = {
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


def _input(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _integers(ctx: KernelContext, value: Value, what: str) -> np.ndarray:
    array = as_array(value, ctx, what)
    if array.dtype.kind not in "iu":
        raise ctx.fail(f"{what} must hold integers, got {array.dtype}")
    return array.astype(np.int64)


def _scalar_int(ctx: KernelContext, value: Value, what: str) -> int:
    array = as_array(value, ctx, what)
    if array.size != 1:
        raise ctx.fail(f"{what} must hold one value, got shape {list(array.shape)}")
    return int(array.reshape(-1)[0])


def wrap_indices(
    ctx: KernelContext, indices: np.ndarray, extent: int | np.ndarray, what: str
) -> np.ndarray:
    """Indices in [0, s): i + s for i in [-s, 0), i for i in [0, s); anything else is an error.

    `extent` is the axis size s, or an array of sizes that broadcasts against `indices`.
    """
    extent = np.asarray(extent, dtype=np.int64)
    if indices.size and (np.any(indices < -extent) or np.any(indices >= extent)):
        raise ctx.fail(
            f"{what} out of range: values from {int(indices.min())} to {int(indices.max())} "
            f"for dims {extent.reshape(-1).tolist()}"
        )
    return np.where(indices < 0, indices + extent, indices)


def _element_index(indices: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """A fancy index that reads position `indices[p]` along `axis` and p elsewhere."""
    grids = list(np.ogrid[tuple(slice(0, d) for d in indices.shape)])
    grids[axis] = indices
    return tuple(grids)


def _check_element_shapes(
    ctx: KernelContext, data: np.ndarray, indices: np.ndarray, axis: int, updates: np.ndarray | None
) -> None:
    if indices.ndim != data.ndim:
        raise ctx.fail(
            f"indices of shape {list(indices.shape)} must have the rank of data {list(data.shape)}"
        )
    for dim, (size, limit) in enumerate(zip(indices.shape, data.shape, strict=True)):
        if dim != axis and size > limit:
            raise ctx.fail(
                f"indices shape {list(indices.shape)} exceeds data shape {list(data.shape)} "
                f"in dim {dim}"
            )
    if updates is not None and updates.shape != indices.shape:
        raise ctx.fail(
            f"updates shape {list(updates.shape)} differs from indices shape {list(indices.shape)}"
        )


@register("GatherElements", since=11)
def gather_elements(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GatherElements: out[p] = data[p with p[axis] replaced by indices[p]]."""
    data = as_array(inputs[0], ctx, "input data")
    indices = _integers(ctx, inputs[1], "input indices")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), data.ndim)
    _check_element_shapes(ctx, data, indices, axis, None)
    indices = wrap_indices(ctx, indices, data.shape[axis], "indices")
    return [data[_element_index(indices, axis)]]


def _scatter_elements(
    ctx: KernelContext, inputs: Sequence[Value], reduction: str = "none"
) -> list[Value]:
    data = as_array(inputs[0], ctx, "input data")
    indices = _integers(ctx, inputs[1], "input indices")
    updates = as_array(inputs[2], ctx, "input updates")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), data.ndim)
    _check_element_shapes(ctx, data, indices, axis, updates)
    indices = wrap_indices(ctx, indices, data.shape[axis], "indices")
    output = data.copy()
    _scatter_into(ctx, output, _element_index(indices, axis), updates.astype(data.dtype), reduction)
    return [output]


def _scatter_into(
    ctx: KernelContext,
    output: np.ndarray,
    index: tuple[np.ndarray, ...],
    updates: np.ndarray,
    reduction: str,
) -> None:
    """output[index] = updates, or output[index] = f(output[index], update) once per update."""
    if reduction == "none":
        output[index] = updates
        return
    if reduction not in _REDUCTIONS:
        raise ctx.unsupported(f"reduction {reduction!r}")
    if output.dtype == object or (output.dtype == np.bool_ and reduction in ("add", "mul")):
        raise ctx.unsupported(f"reduction {reduction!r} on element type {output.dtype}")
    _REDUCTIONS[reduction].at(output, index, updates)


@register("Scatter", since=9)
def scatter(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Scatter (the deprecated ScatterElements): out[p with p[axis] = indices[p]] = updates[p]."""
    return _scatter_elements(ctx, inputs)


@register("ScatterElements", since=11)
def scatter_elements(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ScatterElements: out[p with p[axis] = indices[p]] = f(out[...], updates[p]); f is the
    `reduction` (opset 16) or plain assignment."""
    reduction = ctx.attr("reduction", "none") if ctx.opset >= 16 else "none"
    return _scatter_elements(ctx, inputs, reduction)


def _tuple_index(
    ctx: KernelContext, data: np.ndarray, indices: np.ndarray, batch_dims: int = 0
) -> tuple[np.ndarray, ...]:
    """The fancy index that reads data[batch..., indices[..., 0], ..., indices[..., k-1]].

    `indices` has shape batch + middle + (k,); the result indexes a tensor of data's shape and
    yields shape batch + middle + data.shape[batch_dims + k:].
    """
    depth = indices.shape[-1] if indices.ndim else 0
    if indices.ndim < 1 or not 1 <= depth <= data.ndim - batch_dims:
        raise ctx.fail(
            f"indices of shape {list(indices.shape)} must end in a dim between 1 and "
            f"{data.ndim - batch_dims} for data of shape {list(data.shape)}"
        )
    extents = np.array(data.shape[batch_dims : batch_dims + depth], dtype=np.int64)
    indices = wrap_indices(ctx, indices, extents, "indices")
    middle_rank = indices.ndim - 1 - batch_dims
    batch_index = [
        np.arange(size).reshape((-1,) + (1,) * (batch_dims - 1 - axis + middle_rank))
        for axis, size in enumerate(data.shape[:batch_dims])
    ]
    return (*batch_index, *np.moveaxis(indices, -1, 0))


@register("GatherND", since=11)
def gather_nd(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GatherND: out[b..., m...] = data[b..., indices[b..., m..., :]] (b: the batch_dims dims)."""
    data = as_array(inputs[0], ctx, "input data")
    indices = _integers(ctx, inputs[1], "input indices")
    batch_dims = int(ctx.attr("batch_dims", 0)) if ctx.opset >= 12 else 0
    if not 0 <= batch_dims < min(data.ndim, max(indices.ndim, 1)):
        raise ctx.fail(f"batch_dims {batch_dims} must be below the ranks of data and indices")
    if indices.shape[:batch_dims] != data.shape[:batch_dims]:
        raise ctx.fail(
            f"the first {batch_dims} dims of indices {list(indices.shape)} and data "
            f"{list(data.shape)} differ"
        )
    return [data[_tuple_index(ctx, data, indices, batch_dims)]]


@register("ScatterND", since=11)
def scatter_nd(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ScatterND: out[indices[m..., :]] = f(out[...], updates[m...]); f is the `reduction`
    (opset 16) or plain assignment."""
    data = as_array(inputs[0], ctx, "input data")
    indices = _integers(ctx, inputs[1], "input indices")
    updates = as_array(inputs[2], ctx, "input updates")
    index = _tuple_index(ctx, data, indices)
    expected = indices.shape[:-1] + data.shape[indices.shape[-1] :]
    if updates.shape != expected:
        raise ctx.fail(
            f"updates shape {list(updates.shape)} must be {list(expected)} for data "
            f"{list(data.shape)} and indices {list(indices.shape)}"
        )
    reduction = ctx.attr("reduction", "none") if ctx.opset >= 16 else "none"
    output = data.copy()
    _scatter_into(ctx, output, index, updates.astype(data.dtype), reduction)
    return [output]


@register("TensorScatter", since=24)
def tensor_scatter(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """TensorScatter: out = past; out[b, ..., w[b] + s, ...] = update[b, ..., s, ...] (mod S_max
    when `mode` is circular), s along `axis`, for s < update's length there."""
    past = as_array(inputs[0], ctx, "input past_cache")
    update = as_array(inputs[1], ctx, "input update")
    axis = normalize_axis(ctx, ctx.attr("axis", -2), past.ndim)
    if axis == 0:
        raise ctx.fail("axis cannot be 0, the batch dim")
    if update.ndim != past.ndim or any(
        u != p
        for dim, (u, p) in enumerate(zip(update.shape, past.shape, strict=True))
        if dim != axis
    ):
        raise ctx.fail(
            f"update shape {list(update.shape)} must equal past_cache shape {list(past.shape)} "
            f"outside axis {axis}"
        )
    batch, capacity, length = past.shape[0], past.shape[axis], update.shape[axis]
    write = _input(inputs, 2)
    starts = np.zeros(batch, np.int64) if write is None else _integers(ctx, write, "write_indices")
    if starts.shape != (batch,):
        raise ctx.fail(f"write_indices must have shape [{batch}], got {list(starts.shape)}")
    positions = starts[:, None] + np.arange(length, dtype=np.int64)
    mode = ctx.attr("mode", "linear")
    if mode == "circular":
        positions = positions % capacity
    elif mode != "linear":
        raise ctx.unsupported(f"mode {mode!r}")
    if positions.size and (positions.min() < 0 or positions.max() >= capacity):
        raise ctx.fail(f"writes reach positions outside [0, {capacity}) along axis {axis}")
    output = past.copy()
    np.moveaxis(output, axis, 1)[np.arange(batch)[:, None], positions] = np.moveaxis(
        update, axis, 1
    )
    return [output]


# -- padding ------------------------------------------------------------------------------------

_NUMPY_PAD_MODES = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad_spec(ctx: KernelContext, inputs: Sequence[Value], rank: int) -> list[int]:
    """The pads as [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}] over all dims."""
    if ctx.opset < 11:
        pads = list(ctx.attr("pads" if ctx.opset >= 2 else "paddings"))
    else:
        pads = _integers(ctx, inputs[1], "input pads").reshape(-1).tolist()
    axes_value = _input(inputs, 3) if ctx.opset >= 18 else None
    if axes_value is None:
        axes = list(range(rank))
    else:
        raw_axes = _integers(ctx, axes_value, "input axes").reshape(-1).tolist()
        axes = [normalize_axis(ctx, a, rank, what="pad axis") for a in raw_axes]
        if len(set(axes)) != len(axes):
            raise ctx.fail(f"axes {raw_axes} repeat an axis")
    if len(pads) != 2 * len(axes):
        raise ctx.fail(f"pads {pads} must hold 2 values per padded axis ({len(axes)} axes)")
    full = [0] * (2 * rank)
    for position, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[position], pads[len(axes) + position]
    return full


def _pad_value(ctx: KernelContext, inputs: Sequence[Value], dtype: np.dtype) -> object:
    if ctx.opset < 11:
        return np.asarray(ctx.attr("value", 0.0)).astype(dtype)
    given = _input(inputs, 2)
    if given is not None:
        array = as_array(given, ctx, "input constant_value")
        if array.size != 1:
            raise ctx.fail(f"constant_value must hold one value, got shape {list(array.shape)}")
        return array.reshape(-1)[0]
    return "" if dtype.kind == "O" else np.zeros((), dtype)


@register("Pad", since=1)
def pad(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Pad: out dim i = pads_begin[i] + d_i + pads_end[i]; negative pads crop (before padding)."""
    data = as_array(inputs[0], ctx, "input data")
    pads = _pad_spec(ctx, inputs, data.ndim)
    begins, ends = pads[: data.ndim], pads[data.ndim :]
    crop = []
    for axis, (begin, end) in enumerate(zip(begins, ends, strict=True)):
        if -min(begin, 0) - min(end, 0) > data.shape[axis]:
            raise ctx.fail(f"pads {pads} crop more than dim {axis} of size {data.shape[axis]}")
        crop.append(slice(-min(begin, 0), data.shape[axis] + min(end, 0)))
    cropped = data[tuple(crop)]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends, strict=True)]
    mode = ctx.attr("mode", "constant")
    if mode == "constant":
        fill = _pad_value(ctx, inputs, data.dtype)
        return [np.pad(cropped, widths, mode="constant", constant_values=fill)]
    if mode not in _NUMPY_PAD_MODES or (mode == "wrap" and ctx.opset < 19):
        raise ctx.fail(f"pad mode {mode!r} does not exist at opset {ctx.opset}")
    for axis, (begin, end) in enumerate(widths):
        size = cropped.shape[axis]
        if (begin or end) and size == 0:
            raise ctx.fail(f"{mode} padding of dim {axis}, which is empty")
        if mode == "reflect" and max(begin, end) >= size:
            raise ctx.fail(f"reflect pads {widths[axis]} must be below dim {axis} of size {size}")
    return [np.pad(cropped, widths, mode=_NUMPY_PAD_MODES[mode])]


# -- masks and one-hot rows ---------------------------------------------------------------------


@register("Trilu", since=14)
def trilu(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Trilu: keep x[..., i, j] where j - i >= k (upper) or j - i <= k (lower), else 0."""
    data = as_array(inputs[0], ctx, "input")
    if data.ndim < 2:
        raise ctx.fail(f"input must have rank >= 2, got shape {list(data.shape)}")
    k_value = _input(inputs, 1)
    k = 0 if k_value is None else _scalar_int(ctx, k_value, "input k")
    rows, cols = data.shape[-2:]
    offset = np.arange(cols, dtype=np.int64)[None, :] - np.arange(rows, dtype=np.int64)[:, None]
    keep = offset >= k if ctx.attr("upper", 1) else offset <= k
    return [np.where(keep, data, np.zeros((), data.dtype))]


@register("OneHot", since=9)
def one_hot(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """OneHot: out[..., j, ...] = on if j == i (i + depth for i < 0) else off, j at `axis`."""
    indices = as_array(inputs[0], ctx, "input indices")
    depth_array = as_array(inputs[1], ctx, "input depth")
    values = as_array(inputs[2], ctx, "input values")
    if depth_array.size != 1:
        raise ctx.fail(f"depth must hold one value, got shape {list(depth_array.shape)}")
    depth = int(depth_array.reshape(-1)[0])
    if depth < 1:
        raise ctx.fail(f"depth must be positive, got {depth}")
    if values.size != 2:
        raise ctx.fail(f"values must hold [off, on], got shape {list(values.shape)}")
    axis = ctx.attr("axis", -1)
    if not -indices.ndim - 1 <= axis <= indices.ndim:
        raise ctx.fail(f"axis {axis} is out of range for rank {indices.ndim + 1}")
    axis = axis + indices.ndim + 1 if axis < 0 else axis
    whole = np.trunc(indices) if indices.dtype.kind == "f" else indices
    positions = whole.astype(np.int64)
    positions = np.where(positions < 0, positions + depth, positions)
    hits = positions[..., None] == np.arange(depth, dtype=np.int64)
    off, on = values.reshape(-1)
    return [np.moveaxis(np.where(hits, on, off).astype(values.dtype), -1, axis)]


@register("EyeLike", since=9)
def eye_like(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """EyeLike: out[i, j] = 1 if j - i == k else 0, shaped like the 2-D input."""
    data = as_array(inputs[0], ctx, "input")
    if data.ndim != 2:
        raise ctx.fail(f"input must be 2-D, got shape {list(data.shape)}")
    code = ctx.attr("dtype", None)
    dtype = data.dtype if code is None else DType.from_onnx(int(code)).numpy
    rows, cols = data.shape
    k = int(ctx.attr("k", 0))
    diagonal = np.arange(cols)[None, :] - np.arange(rows)[:, None] == k
    return [diagonal.astype(dtype)]


@register("Compress", since=9)
def compress(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Compress: keep the slices i along `axis` (or elements of the flattened input) where
    condition[i]; a condition shorter than the axis keeps nothing beyond its end."""
    data = as_array(inputs[0], ctx, "input")
    condition = as_array(inputs[1], ctx, "input condition").reshape(-1).astype(bool)
    axis = ctx.attr("axis", None)
    if axis is None:
        data, axis = data.reshape(-1), 0
    else:
        axis = normalize_axis(ctx, axis, data.ndim)
    extent = data.shape[axis]
    if condition.size > extent and condition[extent:].any():
        raise ctx.fail(f"condition selects positions beyond dim {axis} of size {extent}")
    keep = np.flatnonzero(condition[:extent])
    return [np.take(data, keep, axis=axis)]


@register("ReverseSequence", since=10)
def reverse_sequence(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ReverseSequence: out[b, t] = x[b, L[b] - 1 - t] for t < L[b], else x[b, t]."""
    data = as_array(inputs[0], ctx, "input")
    lengths = _integers(ctx, inputs[1], "input sequence_lens").reshape(-1)
    batch_axis, time_axis = int(ctx.attr("batch_axis", 1)), int(ctx.attr("time_axis", 0))
    if {batch_axis, time_axis} != {0, 1} or data.ndim < 2:
        raise ctx.fail(
            f"batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1 in some order "
            f"for input of shape {list(data.shape)}"
        )
    batch_major = data if batch_axis == 0 else np.swapaxes(data, 0, 1)
    batch, steps = batch_major.shape[:2]
    if lengths.shape != (batch,) or np.any(lengths < 0) or np.any(lengths > steps):
        raise ctx.fail(
            f"sequence_lens must be {batch} values in [0, {steps}], got {lengths.tolist()}"
        )
    time = np.arange(steps, dtype=np.int64)[None, :]
    source = np.where(time < lengths[:, None], lengths[:, None] - 1 - time, time)
    reversed_ = batch_major[np.arange(batch)[:, None], source]
    return [reversed_ if batch_axis == 0 else np.swapaxes(reversed_, 0, 1)]


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Gathers take their output shape from the indices, scatters keep the data's shape and only
# constrain the other operands (`ctx.same`). Pad and OneHot need input values (ISVDOS); Compress
# keeps a number of slices only execution knows (EDO), unless its condition is a known constant.


def _same_dims(ctx: ShapeContext, left: Shape, right: Shape, why: str) -> None:
    """Two shapes the op needs equal, dim by dim (nothing to say when a rank is unknown)."""
    if left.dims is None or right.dims is None:
        return
    if len(left.dims) != len(right.dims):
        raise ctx.fail(f"{why}: shapes {left} and {right} differ in rank")
    for axis, (a, b) in enumerate(zip(left.dims, right.dims, strict=True)):
        ctx.same(a, b, f"{why}, dim {axis}")


def _same_rank(ctx: ShapeContext, data: TensorFact, indices: TensorFact) -> None:
    if data.shape.rank is not None and indices.shape.rank not in (None, data.shape.rank):
        raise ctx.fail(f"indices {indices.shape} must have the rank of data {data.shape}")


@shape_rule("GatherElements", since=11, op_class=OpClass.ISDOS)
def gather_elements_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """GatherElements: out.shape = indices.shape, with the data's element type."""
    data, indices = inputs[0], inputs[1]
    _same_rank(ctx, data, indices)
    if data.shape.rank is not None:
        normalize_axis(ctx, ctx.attr("axis", 0), data.shape.rank)
    return [TensorFact(data.dtype, indices.shape)]


def _scatter_elements_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ScatterElements: out.shape = data.shape; updates.shape = indices.shape."""
    data, indices, updates = inputs[0], inputs[1], inputs[2]
    _same_rank(ctx, data, indices)
    _same_dims(ctx, indices.shape, updates.shape, "updates have the shape of indices")
    return [TensorFact(data.dtype, data.shape)]


shape_rule("Scatter", since=9, op_class=OpClass.ISDOS)(_scatter_elements_shape)
shape_rule("ScatterElements", since=11, op_class=OpClass.ISDOS)(_scatter_elements_shape)


def _index_depth(ctx: ShapeContext, data_rank: int, index_dims: tuple[Dim, ...], batch: int) -> Dim:
    """k = indices.dims[-1], in [1, r - b]: fixed to 1 when r - b = 1."""
    if not index_dims or not 0 <= batch < min(data_rank, len(index_dims)):
        raise ctx.fail(f"batch_dims {batch} must be below the ranks of data and indices")
    depth = index_dims[-1]
    if data_rank - batch == 1:
        depth = ctx.same(depth, 1, "the index tuples address the one dim after the batch dims")
    if isinstance(depth, int) and not 1 <= depth <= data_rank - batch:
        raise ctx.fail(f"index tuples of length {depth} for {data_rank - batch} indexable dims")
    return depth


@shape_rule("GatherND", since=11, op_class=OpClass.ISDOS)
def gather_nd_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """GatherND: out = indices.dims[:-1] + data.dims[b + k:], k = indices.dims[-1], b =
    batch_dims; data and indices agree on the first b dims."""
    data, indices = inputs[0], inputs[1]
    dims, index_dims = data.shape.dims, indices.shape.dims
    if dims is None or index_dims is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    batch = int(ctx.attr("batch_dims", 0)) if ctx.opset >= 12 else 0
    depth = _index_depth(ctx, len(dims), index_dims, batch)
    if not isinstance(depth, int):
        return [TensorFact(data.dtype, Shape.unknown())]
    lead = [
        ctx.same(dims[i], index_dims[i], f"batch dim {i} of data and indices") for i in range(batch)
    ]
    return [TensorFact(data.dtype, Shape([*lead, *index_dims[batch:-1], *dims[batch + depth :]]))]


@shape_rule("ScatterND", since=11, op_class=OpClass.ISDOS)
def scatter_nd_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ScatterND: out.shape = data.shape; updates.shape = indices.dims[:-1] + data.dims[k:]."""
    data, indices, updates = inputs[0], inputs[1], inputs[2]
    dims, index_dims = data.shape.dims, indices.shape.dims
    if dims is not None and index_dims is not None:
        depth = _index_depth(ctx, len(dims), index_dims, 0)
        if isinstance(depth, int):
            expected = Shape([*index_dims[:-1], *dims[depth:]])
            _same_dims(ctx, expected, updates.shape, "updates of ScatterND")
    return [TensorFact(data.dtype, data.shape)]


@shape_rule("TensorScatter", since=24, op_class=OpClass.ISDOS)
def tensor_scatter_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """TensorScatter: out.shape = past_cache.shape; update agrees with it outside `axis` (and the
    batch dim is not the axis)."""
    past, update = inputs[0], inputs[1]
    dims, update_dims = past.shape.dims, update.shape.dims
    if dims is not None and update_dims is not None:
        if len(dims) != len(update_dims):
            raise ctx.fail(f"update {update.shape} must have the rank of past_cache {past.shape}")
        axis = normalize_axis(ctx, ctx.attr("axis", -2), len(dims))
        if axis == 0:
            raise ctx.fail("axis cannot be 0, the batch dim")
        for index, (a, b) in enumerate(zip(dims, update_dims, strict=True)):
            if index != axis:
                ctx.same(a, b, f"update and past_cache dim {index}")
    return [TensorFact(past.dtype, past.shape)]


def _pad_amounts(ctx: ShapeContext, inputs: Facts, rank: int) -> list[Element] | None:
    """[begin_0, ..., begin_(r-1), end_0, ..., end_(r-1)] (elements None where unknown); None
    when even the padded axes are unknown."""
    if ctx.opset < 11:
        given: list[Element] | None = list(ctx.attr("pads" if ctx.opset >= 2 else "paddings"))
    else:
        given = value_dims(inputs[1])
    axes = list(range(rank))
    axes_fact = optional(inputs, 3) if ctx.opset >= 18 else None
    if axes_fact is not None:
        listed = int_values(axes_fact)
        if listed is None:
            return None
        axes = [normalize_axis(ctx, a, rank, what="pad axis") for a in listed]
    if given is None:
        length = static_length(inputs[1])
        if length is not None and length != 2 * len(axes):
            raise ctx.fail(f"{length} pads for {len(axes)} padded axes")
        given = [None] * (2 * len(axes))
    if len(given) != 2 * len(axes):
        raise ctx.fail(f"pads {list(given)} must hold 2 values per padded axis ({len(axes)} axes)")
    amounts: list[Element] = [0] * (2 * rank)
    for position, axis in enumerate(axes):
        amounts[axis], amounts[rank + axis] = given[position], given[len(axes) + position]
    return amounts


@shape_rule("Pad", op_class=OpClass.ISVDOS)
def pad_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Pad: out_i = begin_i + d_i + end_i; negative pads crop, at most d_i in all."""
    data = inputs[0]
    dims = data.shape.dims
    if dims is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    amounts = _pad_amounts(ctx, inputs, len(dims))
    if amounts is None:
        return [TensorFact(data.dtype, ctx.unknown_shape(len(dims), "pad axes not followed"))]
    result: list[Dim] = []
    for axis, dim in enumerate(dims):
        begin, end = amounts[axis], amounts[len(dims) + axis]
        if begin is None or end is None:
            result.append(ctx.fresh(note="padded extent"))
            continue
        kept = as_dim(dim + dim_min(begin, 0) + dim_min(end, 0))
        if isinstance(kept, int) and kept < 0:
            raise ctx.fail(f"pads {begin}, {end} crop more than dim {axis} of size {dim}")
        ctx.assume(sympy.Ge(kept, 0), f"pads crop at most dim {axis}")
        result.append(as_dim(dim + begin + end))
    return [TensorFact(data.dtype, Shape(result))]


shape_rule("Trilu", since=14, op_class=OpClass.ISDOS)(same_as_input)


@shape_rule("OneHot", since=9, op_class=OpClass.ISVDOS)
def one_hot_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """OneHot: indices.dims with depth inserted at `axis`, the element type of `values`."""
    indices, depth_fact, values = inputs[0], inputs[1], inputs[2]
    dims = indices.shape.dims
    if dims is None:
        return [TensorFact(values.dtype, Shape.unknown())]
    axis = normalize_axis(ctx, ctx.attr("axis", -1), len(dims) + 1)
    given = value_dims(depth_fact)
    depth = given[0] if given is not None and len(given) == 1 else None
    if depth is None:
        depth = ctx.fresh(note="OneHot depth")
    elif isinstance(depth, int) and depth < 1:
        raise ctx.fail(f"depth must be positive, got {depth}")
    else:
        ctx.assume(sympy.Ge(depth, 1), "depth is positive")
    return [TensorFact(values.dtype, Shape([*dims[:axis], depth, *dims[axis:]]))]


@shape_rule("EyeLike", since=9, op_class=OpClass.ISDOS)
def eye_like_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """EyeLike: the 2-D input's shape, element type `dtype` (the input's by default)."""
    data = inputs[0]
    if data.shape.rank not in (None, 2):
        raise ctx.fail(f"input must be 2-D, got {data.shape}")
    code = ctx.attr("dtype", None)
    return [TensorFact(data.dtype if code is None else DType.from_onnx(int(code)), data.shape)]


@shape_rule("Compress", since=9, op_class=OpClass.EDO)
def compress_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Compress: the `axis` dim (or the flattened input) cut to the e selected slices,
    e <= min(extent, len(condition)): an EXECUTION symbol, or the count of set flags when the
    condition is a known constant."""
    data, condition = inputs[0], inputs[1]
    axis = ctx.attr("axis", None)
    if data.shape.dims is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    if axis is None:
        dims, axis = [data.shape.numel()], 0
    else:
        dims = list(data.shape.dims)
        axis = normalize_axis(ctx, axis, len(dims))
    dims[axis] = _selected_count(ctx, condition, dims[axis])
    return [TensorFact(data.dtype, Shape(dims))]


def _selected_count(ctx: ShapeContext, condition: TensorFact, extent: Dim) -> Dim:
    flags = int_values(condition)
    if flags is None:
        length = condition.shape.numel()
        bound = extent if length is None else dim_min(extent, length)
        return ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=bound, note="Compress count")
    ctx.classify(OpClass.ISVDOS)
    if isinstance(extent, int):
        return sum(1 for flag in flags[:extent] if flag)
    selected = [position for position, flag in enumerate(flags) if flag]
    if selected:  # the op fails when a set flag lies beyond the axis
        ctx.assume(sympy.Gt(extent, selected[-1]), "the condition selects inside the axis")
    return len(selected)


@shape_rule("ReverseSequence", since=10, op_class=OpClass.ISDOS)
def reverse_sequence_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ReverseSequence: the input's shape; sequence_lens holds one length per batch row."""
    data, lengths = inputs[0], inputs[1]
    dims, length_dims = data.shape.dims, lengths.shape.dims
    batch_axis = int(ctx.attr("batch_axis", 1))
    if dims is not None and len(dims) >= 2 and batch_axis in (0, 1) and length_dims is not None:
        if len(length_dims) != 1:
            raise ctx.fail(f"sequence_lens must be 1-D, got {lengths.shape}")
        ctx.same(dims[batch_axis], length_dims[0], "one sequence length per batch row")
    return [TensorFact(data.dtype, data.shape)]
