"""Shape computation and data movement: Shape, Reshape, Slice, Gather, Concat, Expand ...

These are the operators that carry shape arithmetic in exported models (`Shape -> Gather ->
Concat -> Reshape`), so constant folding and, later, value propagation lean on them.

Where an operator moved an attribute to an input in a newer opset (Reshape 5, Slice 10,
Squeeze/Unsqueeze 13, Split 13), one kernel reads either form according to the opset.
Negative axes count from the end; every axis is checked against the rank with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.ops.registry import KernelContext, Value, as_array, register


def normalize_axis(ctx: KernelContext, axis: int, rank: int, *, what: str = "axis") -> int:
    """`axis` in [0, rank), counting negative values from the end; error if out of range."""
    if not -rank <= axis < rank:
        raise ctx.fail(f"{what} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _ints(ctx: KernelContext, value: Value, what: str) -> list[int]:
    array = as_array(value, ctx, what)
    if array.dtype.kind not in "iu":
        raise ctx.fail(f"{what} must hold integers, got {array.dtype}")
    return [int(v) for v in array.reshape(-1)]


def _optional_input(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


@register("Shape")
def shape(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Shape: the input's dims as int64, sliced by `start`/`end` (opset 15) like Python slicing."""
    dims = as_array(inputs[0], ctx, "input data").shape
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return [np.array(dims[slice(start, end)], dtype=np.int64)]


@register("Size")
def size(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Size: the element count as an int64 scalar."""
    return [np.array(as_array(inputs[0], ctx, "input data").size, dtype=np.int64)]


@register("Reshape")
def reshape(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Reshape: 0 copies the input dim (unless `allowzero`), -1 takes what is left."""
    data = as_array(inputs[0], ctx, "input data")
    requested = ctx.attr("shape") if ctx.opset < 5 else _ints(ctx, inputs[1], "input shape")
    allow_zero = bool(ctx.attr("allowzero", 0))
    target = []
    for index, dim in enumerate(requested):
        if dim == 0 and not allow_zero:
            if index >= data.ndim:
                raise ctx.fail(
                    f"shape {list(requested)} copies dim {index} of a rank-{data.ndim} input"
                )
            dim = data.shape[index]
        target.append(int(dim))
    if target.count(-1) > 1:
        raise ctx.fail(f"shape {list(requested)} has more than one -1")
    try:
        return [data.reshape(target)]
    except ValueError:
        raise ctx.fail(f"cannot reshape {list(data.shape)} into {list(requested)}") from None


@register("Flatten")
def flatten(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Flatten: [d0..d(axis-1)] and [d(axis)..] each collapse into one dim."""
    data = as_array(inputs[0], ctx, "input")
    axis = ctx.attr("axis", 1)
    axis = axis + data.ndim if axis < 0 else axis
    if not 0 <= axis <= data.ndim:
        raise ctx.fail(f"axis {ctx.attr('axis', 1)} is out of range for rank {data.ndim}")
    outer = int(np.prod(data.shape[:axis], dtype=np.int64))
    inner = int(np.prod(data.shape[axis:], dtype=np.int64))
    return [data.reshape(outer, inner)]


def _axes(ctx: KernelContext, inputs: Sequence[Value], attr_before: int) -> list[int] | None:
    if ctx.opset < attr_before:
        axes = ctx.attr("axes", None)
        return None if axes is None else list(axes)
    value = _optional_input(inputs, 1)
    return None if value is None else _ints(ctx, value, "input axes")


@register("Squeeze")
def squeeze(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Squeeze: drop the listed dims (each must be 1), or every dim of size 1."""
    data = as_array(inputs[0], ctx, "input data")
    axes = _axes(ctx, inputs, 13)
    if axes is None:
        return [data.reshape([d for d in data.shape if d != 1])]
    normal = sorted({normalize_axis(ctx, a, data.ndim) for a in axes})
    for axis in normal:
        if data.shape[axis] != 1:
            raise ctx.fail(f"cannot squeeze axis {axis} of size {data.shape[axis]}")
    return [np.squeeze(data, axis=tuple(normal))]


@register("Unsqueeze")
def unsqueeze(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Unsqueeze: insert dims of size 1 at the listed positions of the output."""
    data = as_array(inputs[0], ctx, "input data")
    axes = _axes(ctx, inputs, 13)
    if axes is None:
        raise ctx.fail("Unsqueeze needs axes")
    rank = data.ndim + len(axes)
    normal = sorted(normalize_axis(ctx, a, rank) for a in axes)
    if len(set(normal)) != len(normal):
        raise ctx.fail(f"axes {axes} repeat an axis")
    shape = list(data.shape)
    for axis in normal:
        shape.insert(axis, 1)
    return [data.reshape(shape)]


@register("Concat")
def concat(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Concat: join along `axis`; all other dims must agree."""
    arrays = [as_array(v, ctx, f"input {i}") for i, v in enumerate(inputs)]
    axis = normalize_axis(ctx, ctx.attr("axis", 0), arrays[0].ndim)
    try:
        return [np.concatenate(arrays, axis=axis)]
    except ValueError:
        shapes = ", ".join(str(list(a.shape)) for a in arrays)
        raise ctx.fail(f"cannot concatenate shapes {shapes} along axis {axis}") from None


@register("Split")
def split(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Split: cut along `axis` into the given sizes, or into equal parts (last one smaller)."""
    data = as_array(inputs[0], ctx, "input")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), data.ndim)
    outputs = len(ctx.node.outputs)
    sizes = ctx.attr("split", None) if ctx.opset < 13 else None
    if ctx.opset >= 13 and _optional_input(inputs, 1) is not None:
        sizes = _ints(ctx, inputs[1], "input split")
    extent = data.shape[axis]
    if sizes is None:
        parts = ctx.attr("num_outputs", outputs) if ctx.opset >= 18 else outputs
        if ctx.opset < 18 and extent % parts:
            raise ctx.fail(f"dim {extent} does not split into {parts} equal parts")
        chunk = -(-extent // parts)
        sizes = [min(chunk, max(extent - i * chunk, 0)) for i in range(parts)]
    if sum(sizes) != extent:
        raise ctx.fail(f"split sizes {list(sizes)} do not add up to dim {extent}")
    bounds = np.cumsum(sizes)[:-1]
    return list(np.split(data, bounds, axis=axis))


@register("Gather")
def gather(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Gather: out = data.take(indices, axis); negative indices count from the end."""
    data = as_array(inputs[0], ctx, "input data")
    indices = as_array(inputs[1], ctx, "input indices")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), data.ndim)
    extent = data.shape[axis]
    if indices.size and (indices.min() < -extent or indices.max() >= extent):
        raise ctx.fail(f"indices out of range for dim {extent} along axis {axis}")
    return [np.asarray(np.take(data, indices.astype(np.int64), axis=axis))]


@register("Slice")
def slice_(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Slice: per listed axis, data[start:end:step], bounds clamped as Python does."""
    data = as_array(inputs[0], ctx, "input data")
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes", None), None
    else:
        starts, ends = _ints(ctx, inputs[1], "input starts"), _ints(ctx, inputs[2], "input ends")
        axes = _optional_input(inputs, 3)
        axes = None if axes is None else _ints(ctx, axes, "input axes")
        steps = _optional_input(inputs, 4)
        steps = None if steps is None else _ints(ctx, steps, "input steps")
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail("starts, ends, axes and steps must have the same length")
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step == 0:
            raise ctx.fail("a slice step cannot be 0")
        index[normalize_axis(ctx, axis, data.ndim)] = slice(start, end, step)
    return [data[tuple(index)].copy()]


@register("Transpose")
def transpose(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Transpose: permute dims by `perm` (default: reverse them)."""
    data = as_array(inputs[0], ctx, "input data")
    perm = ctx.attr("perm", None)
    perm = list(reversed(range(data.ndim))) if perm is None else list(perm)
    if sorted(perm) != list(range(data.ndim)):
        raise ctx.fail(f"perm {perm} is not a permutation of the {data.ndim} dims")
    return [np.transpose(data, perm)]


@register("Range", since=11)
def range_(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Range: max(ceil((limit - start) / delta), 0) values start, start + delta, ..."""
    start, limit, delta = (
        _scalar(ctx, v, n) for v, n in zip(inputs, ("start", "limit", "delta"), strict=True)
    )
    if delta == 0:
        raise ctx.fail("Range delta cannot be 0")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    steps = np.arange(count, dtype=np.int64).astype(start.dtype)
    return [(start + steps * delta).astype(start.dtype)]


def _scalar(ctx: KernelContext, value: Value, what: str) -> np.ndarray:
    """A one-element input as a 0-d array (exporters sometimes pass shape [1] for scalars)."""
    array = as_array(value, ctx, what)
    if array.size != 1:
        raise ctx.fail(f"{what} must be a scalar, got shape {list(array.shape)}")
    return array.reshape(())


@register("ConstantOfShape", since=9)
def constant_of_shape(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ConstantOfShape: a tensor of the given shape filled with `value` (default float 0)."""
    dims = _ints(ctx, inputs[0], "input shape")
    if any(d < 0 for d in dims):
        raise ctx.fail(f"shape {dims} has a negative dim")
    value = ctx.attr("value", None)
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(dims, fill[0], dtype=fill.dtype)]


@register("Expand", since=8)
def expand(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Expand: broadcast the input and the requested shape against each other."""
    data = as_array(inputs[0], ctx, "input")
    dims = _ints(ctx, inputs[1], "input shape")
    try:
        target = np.broadcast_shapes(data.shape, tuple(dims))
    except ValueError:
        raise ctx.fail(f"cannot expand {list(data.shape)} to {dims}") from None
    return [np.array(np.broadcast_to(data, target))]


@register("Tile", since=6)
def tile(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Tile: repeat the input `repeats[i]` times along dim i."""
    data = as_array(inputs[0], ctx, "input")
    repeats = _ints(ctx, inputs[1], "input repeats")
    if len(repeats) != data.ndim or any(r < 0 for r in repeats):
        raise ctx.fail(f"repeats {repeats} must be {data.ndim} non-negative values")
    return [np.tile(data, repeats)]
