"""Shape computation and data movement: Shape, Reshape, Slice, Gather, Concat, Expand ...

These are the operators that carry shape arithmetic in exported models (`Shape -> Gather ->
Concat -> Reshape`), so constant folding and, later, value propagation lean on them.

Where an operator moved an attribute to an input in a newer opset (Reshape 5, Slice 10,
Squeeze/Unsqueeze 13, Split 13), one kernel reads either form according to the opset.
Negative axes count from the end; every axis is checked against the rank with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy

from sod2.analysis.facts import MAX_VALUE_ELEMENTS, Facts, TensorFact
from sod2.analysis.rule_kit import (
    Element,
    dims_or_unknown,
    int_values,
    optional,
    static_length,
    value_dims,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import ceil_div, dim_max, dim_min, floor_div
from sod2.ir.dims import Dim, as_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


def normalize_axis(
    ctx: KernelContext | ShapeContext, axis: int, rank: int, *, what: str = "axis"
) -> int:
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


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Shape tensors carry their value through these rules: a value is a tuple of elements, the
# tensor flattened in row-major order, so Reshape, Squeeze, Unsqueeze and Flatten keep it as is.


@shape_rule("Shape", op_class=OpClass.ISDO)
def shape_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Shape: [len(dims[start:end])], whose value is those dims."""
    dims = inputs[0].shape.dims
    if dims is None:
        return [TensorFact(DType.INT64, Shape([ctx.fresh(note="rank of an unknown-rank input")]))]
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    selected = tuple(dims[slice(start, end)])
    return [TensorFact(DType.INT64, Shape([len(selected)]), selected)]


@shape_rule("Size", op_class=OpClass.ISDO)
def size_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Size: a scalar whose value is the product of the dims."""
    count = inputs[0].shape.numel()
    return [TensorFact(DType.INT64, Shape([]), None if count is None else (count,))]


def _keeps_value(fact: TensorFact, shape: Shape) -> TensorFact:
    """`fact` reinterpreted with `shape`: same element type and flattened value."""
    return TensorFact(fact.dtype, shape, fact.value)


@shape_rule("Reshape", op_class=OpClass.ISVDOS)
def reshape_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Reshape: 0 copies the input dim (unless allowzero), -1 is numel / the product of the rest."""
    data = inputs[0]
    if ctx.opset < 5:
        requested: list[Element] | None = list(ctx.attr("shape"))
    else:
        requested = value_dims(inputs[1])
        if requested is None:
            rank = static_length(inputs[1])
            return [TensorFact(data.dtype, ctx.unknown_shape(rank, "reshape to an unknown shape"))]
    allow_zero = bool(ctx.attr("allowzero", 0))
    dims: list[Element] = []
    for index, dim in enumerate(requested):
        if dim == 0 and not allow_zero:
            if data.shape.dims is None or index >= len(data.shape.dims):
                dim = None
            else:
                dim = data.shape.dims[index]
        dims.append(dim)
    if dims.count(-1) == 1:
        dims[dims.index(-1)] = _inferred_extent(data.shape, dims)
    at_least = 0 if allow_zero else 1
    return [
        _keeps_value(data, Shape(dims_or_unknown(ctx, dims, "reshape extent", at_least=at_least)))
    ]


def _inferred_extent(shape: Shape, dims: list[Element]) -> Element:
    numel = shape.numel()
    others = [d for d in dims if d != -1]
    if numel is None or any(d is None for d in others):
        return None
    product = sympy.Mul(*others) if others else 1
    extent = floor_div(numel, product if isinstance(product, int) else as_dim(product))
    return extent


@shape_rule("Flatten", op_class=OpClass.ISDOS)
def flatten_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Flatten: [prod(dims[:axis]), prod(dims[axis:])]."""
    dims = inputs[0].shape.dims
    if dims is None:
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(2, "flatten of unknown rank"))]
    axis = ctx.attr("axis", 1)
    axis = axis + len(dims) if axis < 0 else axis
    if not 0 <= axis <= len(dims):
        raise ctx.fail(f"axis {ctx.attr('axis', 1)} is out of range for rank {len(dims)}")
    outer, inner = Shape(dims[:axis]).numel(), Shape(dims[axis:]).numel()
    return [_keeps_value(inputs[0], Shape([outer, inner]))]


def _axes_fact(ctx: ShapeContext, inputs: Facts, attr_before: int) -> list[int] | str | None:
    """The axes of Squeeze/Unsqueeze: a list, None when absent, "unknown" when not followable."""
    if ctx.opset < attr_before:
        axes = ctx.attr("axes", None)
        return None if axes is None else list(axes)
    fact = optional(inputs, 1)
    if fact is None:
        return None
    values = int_values(fact)
    return "unknown" if values is None else values


@shape_rule("Squeeze", op_class=OpClass.ISVDOS)
def squeeze_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Squeeze: drop the listed dims (each must be 1), or every dim proven to be 1."""
    data = inputs[0]
    dims = data.shape.dims
    axes = _axes_fact(ctx, inputs, 13)
    if dims is None or axes == "unknown":
        rank = None if dims is None or axes == "unknown" else len(dims)
        return [TensorFact(data.dtype, ctx.unknown_shape(rank, "squeeze"))]
    if axes is None:
        if any(not isinstance(d, int) for d in dims):
            # a symbolic dim may be 1 at run time: only execution tells the rank
            return [TensorFact(data.dtype, Shape.unknown())]
        return [_keeps_value(data, Shape([d for d in dims if d != 1]))]
    drop = {normalize_axis(ctx, a, len(dims)) for a in axes}  # type: ignore[union-attr]
    for axis in drop:
        ctx.same(dims[axis], 1, f"squeezed axis {axis}")
    return [_keeps_value(data, Shape([d for i, d in enumerate(dims) if i not in drop]))]


@shape_rule("Unsqueeze", op_class=OpClass.ISVDOS)
def unsqueeze_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Unsqueeze: insert dims of 1 at the listed positions of the output."""
    data = inputs[0]
    axes = _axes_fact(ctx, inputs, 13)
    if axes is None:
        raise ctx.fail("Unsqueeze needs axes")
    dims = data.shape.dims
    if dims is None or axes == "unknown":
        return [TensorFact(data.dtype, Shape.unknown())]
    rank = len(dims) + len(axes)  # type: ignore[arg-type]
    positions = sorted(normalize_axis(ctx, a, rank) for a in axes)  # type: ignore[union-attr]
    result = list(dims)
    for axis in positions:
        result.insert(axis, 1)
    return [_keeps_value(data, Shape(result))]


@shape_rule("Concat", op_class=OpClass.ISDOS)
def concat_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Concat: dims agree except on `axis`, where they add up; values concatenate."""
    facts = [f for f in inputs if f is not None]
    known = [f.shape.dims for f in facts if f.shape.dims is not None]
    if not known:
        return [TensorFact(facts[0].dtype, Shape.unknown())]
    rank = len(known[0])
    axis = normalize_axis(ctx, ctx.attr("axis", 0), rank)
    if any(f.shape.dims is None for f in facts):
        return [TensorFact(facts[0].dtype, ctx.unknown_shape(rank, "concat with unknown rank"))]
    result: list[Dim] = []
    for index in range(rank):
        column = [dims[index] for dims in known]
        if index == axis:
            total = sympy.Add(*column)
            result.append(int(total) if total.is_Integer else total)
        else:
            dim = column[0]
            for other in column[1:]:
                dim = ctx.same(dim, other, f"concatenated inputs' dim {index}")
            result.append(dim)
    value = None
    if rank == 1 and all(f.value is not None for f in facts):
        value = tuple(v for f in facts for v in f.value)  # type: ignore[union-attr]
    return [TensorFact(facts[0].dtype, Shape(result), value)]


@shape_rule("Split", op_class=OpClass.ISVDOS)
def split_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Split: the `axis` dim cut into the given sizes, or into equal parts (last one smaller)."""
    data = inputs[0]
    count = ctx.output_count()
    dims = data.shape.dims
    if dims is None:
        return [TensorFact(data.dtype, Shape.unknown()) for _ in range(count)]
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(dims))
    sizes: list[Element] | None = None
    if ctx.opset < 13 and ctx.attr("split", None) is not None:
        sizes = list(ctx.attr("split"))
    elif ctx.opset >= 13 and optional(inputs, 1) is not None:
        sizes = value_dims(inputs[1])  # type: ignore[arg-type]
        if sizes is None:
            sizes = [None] * count
    if sizes is None:
        sizes = _equal_parts(ctx, dims[axis], count)
    outputs = []
    for size in dims_or_unknown(ctx, sizes, "split size"):
        part = list(dims)
        part[axis] = size
        outputs.append(TensorFact(data.dtype, Shape(part)))
    return outputs


def _equal_parts(ctx: ShapeContext, extent: Dim, parts: int) -> list[Element]:
    parts = ctx.attr("num_outputs", parts) if ctx.opset >= 18 else parts
    chunk = ceil_div(extent, parts)
    if isinstance(extent, int):
        return [min(chunk, max(extent - i * chunk, 0)) for i in range(parts)]  # type: ignore[operator]
    if ctx.opset < 18:
        ctx.assume(sympy.Eq(sympy.Mod(extent, parts), 0), f"dim {extent} splits into {parts} parts")
        return [floor_div(extent, parts)] * parts
    last = extent - (parts - 1) * chunk
    return [chunk] * (parts - 1) + [None if not sympy.sympify(last).is_positive else last]


@shape_rule("Gather", op_class=OpClass.ISDOS)
def gather_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Gather: data.dims[:axis] + indices.dims + data.dims[axis+1:]; values picked when known."""
    data, indices = inputs[0], inputs[1]
    dims, index_dims = data.shape.dims, indices.shape.dims
    if dims is None or index_dims is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(dims))
    shape = Shape([*dims[:axis], *index_dims, *dims[axis + 1 :]])
    value = None
    picks = int_values(indices)
    if data.value is not None and len(dims) == 1 and picks is not None:
        length = len(data.value)
        if all(-length <= p < length for p in picks):
            value = tuple(data.value[p] for p in picks)
    return [TensorFact(data.dtype, shape, value)]


@shape_rule("Slice", op_class=OpClass.ISVDOS)
def slice_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Slice: per axis, max(0, ceil((end' - start') / step)) with start and end clamped."""
    data = inputs[0]
    dims = data.shape.dims
    params = _slice_params(ctx, inputs)
    if dims is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    if params is None:
        return [TensorFact(data.dtype, ctx.unknown_shape(len(dims), "slice bounds not followed"))]
    starts, ends, axes, steps = params
    result: list[Element] = list(dims)
    slices = [slice(None)] * len(dims)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = normalize_axis(ctx, axis, len(dims))
        if step == 0:
            raise ctx.fail("a slice step cannot be 0")
        result[axis] = sliced_extent(dims[axis], start, end, step, ctx.assume)
        slices[axis] = slice(start, end, step)
    value = None
    bounds = slices[0]
    plain = all(isinstance(b, int) or b is None for b in (bounds.start, bounds.stop))
    if data.value is not None and len(dims) == 1 and plain:
        value = tuple(data.value[bounds])
    return [TensorFact(data.dtype, Shape(dims_or_unknown(ctx, result, "slice extent")), value)]


def _slice_params(ctx: ShapeContext, inputs: Facts) -> tuple[list, list, list, list] | None:
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = ctx.attr("axes", None)
        return starts, ends, list(axes) if axes else list(range(len(starts))), [1] * len(starts)
    starts, ends = value_dims(inputs[1]), value_dims(inputs[2])
    axes_fact, steps_fact = optional(inputs, 3), optional(inputs, 4)
    axes = None if axes_fact is None else int_values(axes_fact)
    steps = None if steps_fact is None else int_values(steps_fact)
    if (
        starts is None
        or ends is None
        or (axes_fact and axes is None)
        or (steps_fact and steps is None)
    ):
        return None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail("starts, ends, axes and steps must have the same length")
    return starts, ends, axes, steps


def sliced_extent(
    extent: Dim,
    start: Element,
    end: Element,
    step: int,
    assume: Callable[[sympy.Basic, str], None] | None = None,
) -> Element:
    """How many elements `range(extent)[start:end:step]` has, symbolically.

    Bounds are clamped as Python does: a negative bound counts from the end, then lands in
    [0, extent] (or [-1, extent - 1] for a negative step). A symbolic bound of unknown sign is
    taken as non-negative under an assumption recorded with `assume` (else the count is None).
    """
    if isinstance(extent, int) and isinstance(start, int) and isinstance(end, int):
        return len(range(extent)[start:end:step])
    low, high = (0, extent) if step > 0 else (-1, extent - 1)

    def clamp(index: Element) -> Element:
        if index is None:
            return None
        if isinstance(index, int):
            position = index if index >= 0 else extent + index
        elif index.is_nonnegative:
            position = index
        elif index.is_negative:
            position = extent + index
        elif assume is not None:
            assume(sympy.Ge(index, 0), f"slice bound {index} is non-negative")
            position = index
        else:
            return None
        return dim_min(dim_max(position, low), high)

    first, last = clamp(start), clamp(end)
    if first is None or last is None:
        return None
    span = last - first if step > 0 else first - last
    return dim_max(ceil_div(span, abs(step)), 0)


@shape_rule("Transpose", op_class=OpClass.ISDOS)
def transpose_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Transpose: dims permuted by `perm` (default reversed)."""
    dims = inputs[0].shape.dims
    if dims is None:
        return [TensorFact(inputs[0].dtype, Shape.unknown())]
    perm = ctx.attr("perm", None)
    perm = list(reversed(range(len(dims)))) if perm is None else list(perm)
    if sorted(perm) != list(range(len(dims))):
        raise ctx.fail(f"perm {perm} is not a permutation of the {len(dims)} dims")
    return [TensorFact(inputs[0].dtype, Shape([dims[p] for p in perm]))]


@shape_rule("Range", since=11, op_class=OpClass.ISVDOS)
def range_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Range: [max(ceil((limit - start) / delta), 0)], its values when they are few and known."""
    start, limit, delta = (value_dims(f) for f in inputs[:3])
    dtype = inputs[0].dtype
    if not (start and limit and delta) or None in (start[0], limit[0], delta[0]):
        return [TensorFact(dtype, Shape([ctx.fresh(note="Range count")]))]
    first, stop, step = start[0], limit[0], delta[0]
    if not isinstance(step, int) or step == 0:
        return [TensorFact(dtype, Shape([ctx.fresh(note="Range count")]))]
    span = stop - first if step > 0 else first - stop
    count = _to_count(span, abs(step))
    if count is None:
        return [TensorFact(dtype, Shape([ctx.fresh(note="Range count")]))]
    value = None
    if isinstance(count, int) and count <= MAX_VALUE_ELEMENTS:
        value = tuple(_plain(first + i * step) for i in range(count))
    return [TensorFact(dtype, Shape([count]), value)]


def _to_count(span: int | sympy.Expr, step: int) -> Dim | None:
    """max(ceil(span / step), 0) for an integer span and a positive step."""
    if isinstance(span, int):
        return max(-(-span // step), 0)
    return dim_max(ceil_div(span, step), 0)


def _plain(value: int | sympy.Expr) -> Element:
    return int(value) if isinstance(value, sympy.Expr) and value.is_Integer else value


@shape_rule("ConstantOfShape", since=9, op_class=OpClass.ISVDOS)
def constant_of_shape_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ConstantOfShape: the shape is the input's value; filled with `value` (float 0 by default)."""
    value_attr = ctx.attr("value", None)
    fill = (
        np.zeros(1, dtype=np.float32) if value_attr is None else np.asarray(value_attr).reshape(-1)
    )
    dtype = DType.from_numpy(fill.dtype)
    requested = value_dims(inputs[0])
    if requested is None:
        return [TensorFact(dtype, ctx.unknown_shape(static_length(inputs[0]), "ConstantOfShape"))]
    shape = Shape(dims_or_unknown(ctx, requested, "ConstantOfShape extent"))
    value = None
    count = shape.numel()
    if (
        dtype.is_integer
        and isinstance(count, int)
        and count <= MAX_VALUE_ELEMENTS
        and shape.rank <= 1
    ):
        value = (int(fill[0]),) * count
    return [TensorFact(dtype, shape, value)]


@shape_rule("Expand", since=8, op_class=OpClass.ISVDOS)
def expand_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Expand: broadcast of the input's shape and the requested shape."""
    requested = value_dims(inputs[1])
    if requested is None:
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(None, "Expand"))]
    target = Shape(dims_or_unknown(ctx, requested, "Expand extent"))
    shape = ctx.broadcast(inputs[0].shape, target)
    value = None
    if inputs[0].value is not None and len(inputs[0].value) == 1 and isinstance(shape.numel(), int):
        count = shape.numel()
        if count <= MAX_VALUE_ELEMENTS and (shape.rank or 0) <= 1:
            value = inputs[0].value * count
    return [TensorFact(inputs[0].dtype, shape, value)]


@shape_rule("Tile", since=6, op_class=OpClass.ISVDOS)
def tile_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Tile: dim i times repeats[i]."""
    dims = inputs[0].shape.dims
    repeats = value_dims(inputs[1])
    if dims is None or repeats is None:
        rank = None if dims is None else len(dims)
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(rank, "Tile"))]
    if len(repeats) != len(dims):
        raise ctx.fail(f"{len(repeats)} repeats for a rank-{len(dims)} input")
    tiled = [None if r is None else _plain(d * r) for d, r in zip(dims, repeats, strict=True)]
    return [TensorFact(inputs[0].dtype, Shape(dims_or_unknown(ctx, tiled, "Tile extent")))]
