"""Reductions over axes (ReduceSum ... ReduceLogSumExp), ArgMax / ArgMin, CumSum / CumProd.

Each Reduce* operator is one row of `REDUCERS`: a function over the reduced axes (kept as size-1
dims) and the value of an empty reduction. The kernels around it only decide *which* axes:
- the axes are an attribute until opset 13 for ReduceSum and opset 18 for the others, and an
  optional int64 input afterwards (two catalogue entries per operator);
- no axes (attribute absent, input omitted or empty) means every axis, unless
  `noop_with_empty_axes=1`, which folds over no axis at all: the reduction is the identity but
  the pointwise steps remain (ReduceSumSquare squares, ReduceLogSum takes the log, ReduceL1 and
  ReduceL2 the absolute value);
- negative axes count from the end; a repeated axis is an error.

Where ONNX differs from numpy:
- `keepdims` defaults to 1;
- reducing an empty set gives the operator's identity: 0 for sums and norms, 1 for products,
  -inf (or the type's minimum, or False) for ReduceMax, +inf (maximum, True) for ReduceMin,
  -inf for ReduceLogSum and ReduceLogSumExp; numpy raises for max and min of nothing;
- integer sums and products wrap in the input's type (numpy would widen them to int64);
- ReduceLogSumExp subtracts the maximum first (log sum e^x = m + log sum e^(x - m)), so large
  inputs do not overflow;
- ArgMax / ArgMin with `select_last_index=1` return the last extreme index, numpy the first.

Narrow floats (float16, bfloat16) reduce in float32 and round once at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sod2.analysis.facts import Facts, TensorFact, ValueFact
from sod2.analysis.rule_kit import (
    VALUE_ADD,
    VALUE_DIV,
    VALUE_MAX,
    VALUE_MIN,
    VALUE_MUL,
    Element,
    ValueOp,
    int_values,
    optional,
    static_length,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.math import FLOAT_DTYPES, optional_input, scalar_int, scalar_value, working_dtype
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis

Axes = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Reducer:
    """How one Reduce* operator folds values: `fold(x, axes)` keeps the reduced dims as 1."""

    maths: str
    fold: Callable[[np.ndarray, Axes], np.ndarray]
    empty: str
    """The value of an empty reduction: "zero", "one", "lowest", "highest", "-inf" or "nan"."""
    real_valued: bool = False
    """True where integer inputs fold in float64 and truncate toward zero (as onnxruntime)."""


def _sum(x: np.ndarray, axes: Axes) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=True, dtype=x.dtype)


def _log_sum_exp(x: np.ndarray, axes: Axes) -> np.ndarray:
    peak = np.max(x, axis=axes, keepdims=True)
    shift = np.where(np.isfinite(peak), peak, 0).astype(x.dtype)
    return shift + np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True))


def _mean(x: np.ndarray, axes: Axes) -> np.ndarray:
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = _sum(x, axes)
    if x.dtype.kind in "iu":  # integer division truncates toward zero, as in C
        quotient = total // count
        return np.where((total < 0) & (quotient * count != total), quotient + 1, quotient)
    return total / np.asarray(count, dtype=x.dtype)


REDUCERS: dict[str, Reducer] = {
    "ReduceSum": Reducer("sum(x)", _sum, "zero"),
    "ReduceMean": Reducer("sum(x) / n", _mean, "nan"),
    "ReduceMax": Reducer("max(x)", lambda x, a: np.max(x, axis=a, keepdims=True), "lowest"),
    "ReduceMin": Reducer("min(x)", lambda x, a: np.min(x, axis=a, keepdims=True), "highest"),
    "ReduceProd": Reducer(
        "prod(x)", lambda x, a: np.prod(x, axis=a, keepdims=True, dtype=x.dtype), "one"
    ),
    "ReduceL1": Reducer("sum(|x|)", lambda x, a: _sum(np.abs(x), a), "zero"),
    "ReduceL2": Reducer("sqrt(sum(x^2))", lambda x, a: np.sqrt(_sum(x * x, a)), "zero", True),
    "ReduceSumSquare": Reducer("sum(x^2)", lambda x, a: _sum(x * x, a), "zero"),
    "ReduceLogSum": Reducer("log(sum(x))", lambda x, a: np.log(_sum(x, a)), "-inf", True),
    "ReduceLogSumExp": Reducer("log(sum(e^x))", _log_sum_exp, "-inf", True),
}
"""Reduce* operator -> how it folds."""

_AXES_BECOME_INPUT = {"ReduceSum": 13}
"""The opset where `axes` moved from attribute to input; 18 for the operators not listed."""


def _identity(empty: str, dtype: np.dtype) -> object:
    """The value of an empty reduction for `dtype` (None: ONNX leaves it undefined)."""
    if empty in ("zero", "one"):
        return 0 if empty == "zero" else 1
    if dtype == np.bool_:
        return empty == "highest"
    if dtype.kind in "iu":
        if empty in ("lowest", "highest"):
            limits = np.iinfo(dtype)
            return limits.min if empty == "lowest" else limits.max
        return None
    return {"lowest": -np.inf, "-inf": -np.inf, "highest": np.inf, "nan": np.nan}[empty]


def _compute_dtype(ctx: KernelContext, dtype: np.dtype, reducer: Reducer) -> np.dtype:
    """float32 for narrow floats, float64 for real-valued folds of integers, else the input's."""
    if dtype in FLOAT_DTYPES:
        return working_dtype(dtype)
    if dtype == np.bool_ and ctx.node.op_type in ("ReduceMax", "ReduceMin"):
        return dtype
    if dtype.kind not in "iu":
        raise ctx.unsupported(f"input data of element type {dtype}")
    return np.dtype(np.float64) if reducer.real_valued else dtype


def _reduce(ctx: KernelContext, x: np.ndarray, axes: list[int] | None) -> np.ndarray:
    """Apply the node's reducer over `axes` (None or empty: see noop_with_empty_axes)."""
    if not axes:  # noop_with_empty_axes folds over no axis: only the pointwise steps remain
        axes = [] if ctx.attr("noop_with_empty_axes", 0) else list(range(x.ndim))
    normal = tuple(normalize_axis(ctx, a, x.ndim, what="axes entry") for a in axes)
    if len(set(normal)) != len(normal):
        raise ctx.fail(f"axes {axes} repeat an axis")
    reducer = REDUCERS[ctx.node.op_type]
    compute = _compute_dtype(ctx, x.dtype, reducer)
    with np.errstate(all="ignore"):
        if any(x.shape[a] == 0 for a in normal):
            reduced = _empty_reduction(ctx, x, normal, reducer, compute)
        else:
            reduced = reducer.fold(x.astype(compute, copy=False), normal)
    if not ctx.attr("keepdims", 1):
        reduced = np.squeeze(reduced, axis=normal)
    return _to_input_type(ctx, np.asarray(reduced), x.dtype)


def _empty_reduction(
    ctx: KernelContext, x: np.ndarray, axes: Axes, reducer: Reducer, compute: np.dtype
) -> np.ndarray:
    identity = _identity(reducer.empty, x.dtype if x.dtype.kind in "iub" else compute)
    if identity is None:
        raise ctx.unsupported(f"{ctx.node.op_type} of an empty set of {x.dtype} is undefined")
    shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    return np.full(shape, identity, dtype=compute)


def _to_input_type(ctx: KernelContext, reduced: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round a float result of an integer reduction toward zero; error if it has no value."""
    if dtype.kind in "iu" and reduced.dtype.kind == "f":
        if not np.all(np.isfinite(reduced)):
            raise ctx.unsupported(
                f"{ctx.node.op_type} of {dtype} data gives a non-finite value (log of a sum <= 0)"
            )
        return np.asarray(np.trunc(reduced)).astype(dtype)
    return reduced.astype(dtype, copy=False)


def _axes_input(ctx: KernelContext, inputs: Sequence[Value]) -> list[int] | None:
    value = optional_input(inputs, 1)
    if value is None:
        return None
    axes = as_array(value, ctx, "input axes")
    if axes.dtype.kind not in "iu" or axes.ndim > 1:
        raise ctx.fail(
            f"input axes must be a 1-D int64 tensor, got {axes.dtype} {list(axes.shape)}"
        )
    return [int(a) for a in axes.reshape(-1)]


def _register_reduce(op_type: str) -> None:
    maths = (
        f"{op_type}: y = {REDUCERS[op_type].maths} over the axes (keepdims=1 keeps them as size 1)"
    )

    def axes_attribute(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        axes = ctx.attr("axes", None)
        x = as_array(inputs[0], ctx, "input data")
        return [_reduce(ctx, x, None if axes is None else list(axes))]

    def axes_input(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = as_array(inputs[0], ctx, "input data")
        return [_reduce(ctx, x, _axes_input(ctx, inputs))]

    becomes_input = _AXES_BECOME_INPUT.get(op_type, 18)
    axes_attribute.__name__ = f"{op_type.lower()}_axes_attribute"
    axes_input.__name__ = f"{op_type.lower()}_axes_input"
    axes_attribute.__doc__ = f"{maths}; axes attribute (opset 1-{becomes_input - 1})."
    axes_input.__doc__ = f"{maths}; axes input (opset {becomes_input})."
    register(op_type, since=1)(axes_attribute)
    register(op_type, since=becomes_input)(axes_input)


for _op in REDUCERS:
    _register_reduce(_op)


# -- ArgMax / ArgMin ---------------------------------------------------------------------------


def _arg_extreme(ctx: KernelContext, inputs: Sequence[Value], pick: Callable) -> np.ndarray:
    """Index of the extreme along `axis` (first, or last with select_last_index) as int64."""
    x = as_array(inputs[0], ctx, "input data")
    if x.dtype not in FLOAT_DTYPES and x.dtype.kind not in "iu":
        raise ctx.unsupported(f"input data of element type {x.dtype}")
    axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), x.ndim)
    if x.shape[axis] == 0:
        raise ctx.fail(f"cannot take {ctx.node.op_type} along axis {axis} of size 0")
    values = x.astype(working_dtype(x.dtype), copy=False) if x.dtype in FLOAT_DTYPES else x
    if ctx.attr("select_last_index", 0):
        index = x.shape[axis] - 1 - pick(np.flip(values, axis=axis), axis=axis)
    else:
        index = pick(values, axis=axis)
    if ctx.attr("keepdims", 1):
        index = np.expand_dims(index, axis)
    return np.asarray(index, dtype=np.int64)


@register("ArgMax", since=1)
def arg_max(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ArgMax: y = the index of max(x) along `axis` (first one, or last if select_last_index)."""
    return [_arg_extreme(ctx, inputs, np.argmax)]


@register("ArgMin", since=1)
def arg_min(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ArgMin: y = the index of min(x) along `axis` (first one, or last if select_last_index)."""
    return [_arg_extreme(ctx, inputs, np.argmin)]


# -- cumulative sums and products --------------------------------------------------------------


def _cumulative(
    ctx: KernelContext, inputs: Sequence[Value], accumulate: Callable, identity: int
) -> np.ndarray:
    """Running fold along the `axis` input; `exclusive` shifts in `identity`, `reverse` flips."""
    x = as_array(inputs[0], ctx, "input x")
    if x.dtype not in FLOAT_DTYPES and x.dtype.kind not in "iu":
        raise ctx.unsupported(f"input x of element type {x.dtype}")
    axis = normalize_axis(ctx, scalar_int(ctx, inputs[1], "input axis"), x.ndim)
    compute = working_dtype(x.dtype) if x.dtype in FLOAT_DTYPES else x.dtype
    values = x.astype(compute, copy=False)
    reverse = bool(ctx.attr("reverse", 0))
    if reverse:
        values = np.flip(values, axis=axis)
    with np.errstate(all="ignore"):
        running = accumulate(values, axis=axis, dtype=compute)
    if ctx.attr("exclusive", 0) and x.shape[axis] > 0:
        head_shape = list(x.shape)
        head_shape[axis] = 1
        kept = np.take(running, np.arange(x.shape[axis] - 1), axis=axis)
        running = np.concatenate([np.full(head_shape, identity, dtype=compute), kept], axis=axis)
    if reverse:
        running = np.flip(running, axis=axis)
    return np.ascontiguousarray(running).astype(x.dtype, copy=False)


@register("CumSum", since=11)
def cum_sum(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """CumSum: y[i] = sum(x[:i+1]) along `axis` (x[:i] if exclusive; from the end if reverse)."""
    return [_cumulative(ctx, inputs, np.cumsum, 0)]


@register("CumProd", since=26)
def cum_prod(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """CumProd: y[i] = prod(x[:i+1]) along `axis` (x[:i] if exclusive; from the end if reverse)."""
    return [_cumulative(ctx, inputs, np.cumprod, 1)]


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# A reduction keeps the other dims and makes each reduced dim 1 (keepdims=1) or drops it. Where
# the axes are an input (ISVDOS) RDP follows their value; when it cannot, keepdims=1 still keeps
# the rank (each dim d becomes d or 1), and keepdims=0 knows the rank only from a static number
# of axes. Over a 1-D shape tensor ReduceSum, ReduceProd, ReduceMax, ReduceMin and ReduceMean
# compute the value (ReduceProd of Shape(x) is x's element count), and so do ArgMax, ArgMin,
# CumSum and CumProd where the elements are known.


Fold = Callable[[list[Element], DType | None], Element]


def _fold(op: ValueOp, empty: Element = None) -> Fold:
    """A fold of value elements with `op` (`empty`: the fold of nothing), unknown where the
    result overflows the element type (the kernels wrap)."""

    def fold(elements: list[Element], dtype: DType | None) -> Element:
        if not elements:
            return empty
        result = elements[0]
        for element in elements[1:]:
            result = op(result, element)
        return _in_range([result], dtype)[0]

    return fold


def _mean_value(elements: list[Element], dtype: DType | None) -> Element:
    """Integer mean: the (wrapping) sum divided by the count, truncated toward zero."""
    total = _fold(VALUE_ADD)(elements, dtype)
    return VALUE_DIV(total, len(elements)) if elements else None


_VALUE_FOLDS: dict[str, Fold] = {
    "ReduceSum": _fold(VALUE_ADD, 0),
    "ReduceProd": _fold(VALUE_MUL, 1),
    "ReduceMax": _fold(VALUE_MAX),
    "ReduceMin": _fold(VALUE_MIN),
    "ReduceMean": _mean_value,
}
"""Reductions whose value RDP computes on shape tensors; they are the identity over no axis."""


def _in_range(elements: Sequence[Element], dtype: DType | None) -> ValueFact:
    """`elements`, with the ints that overflow `dtype` made unknown."""
    if dtype is None or not dtype.is_integer:
        return tuple(elements)
    low, high = (-(2 ** (dtype.bits - 1)), 2 ** (dtype.bits - 1) - 1)
    if not dtype.is_signed:
        low, high = 0, 2**dtype.bits - 1
    return tuple(None if isinstance(e, int) and not low <= e <= high else e for e in elements)


def _reduce_fact(ctx: ShapeContext, data: TensorFact, axes: list[int] | None) -> TensorFact:
    """Reduce* over `axes`: each reduced dim becomes 1 (keepdims=1) or is dropped; no axes means
    every axis, or none at all with noop_with_empty_axes=1."""
    fold = _VALUE_FOLDS.get(ctx.node.op_type)
    keep = bool(ctx.attr("keepdims", 1))
    if not axes and ctx.attr("noop_with_empty_axes", 0):
        return TensorFact(data.dtype, data.shape, data.value if fold else None)
    dims = data.shape.dims
    if dims is None:
        return TensorFact(data.dtype, Shape.unknown() if axes or keep else Shape.scalar())
    reduced = range(len(dims)) if not axes else _axis_set(ctx, axes, len(dims))
    if keep:
        shape = Shape([1 if i in reduced else d for i, d in enumerate(dims)])
    else:
        shape = Shape([d for i, d in enumerate(dims) if i not in reduced])
    value = None
    if fold and data.value is not None and len(dims) <= 1 and len(reduced) == len(dims):
        value = (fold(list(data.value), data.dtype),)
    return TensorFact(data.dtype, shape, value)


def _axis_set(ctx: ShapeContext, axes: list[int], rank: int) -> set[int]:
    normal = [normalize_axis(ctx, a, rank, what="axes entry") for a in axes]
    if len(set(normal)) != len(normal):
        raise ctx.fail(f"axes {axes} repeat an axis")
    return set(normal)


def reduce_attribute_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Reduce* with an `axes` attribute: see `_reduce_fact`."""
    axes = ctx.attr("axes", None)
    return [_reduce_fact(ctx, inputs[0], None if axes is None else list(axes))]


def reduce_input_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Reduce* with an `axes` input: `_reduce_fact` over its value; when the value is unknown,
    keepdims=1 turns each dim d into a symbol that is d or 1, keepdims=0 drops len(axes) dims."""
    data, axes_fact = inputs[0], optional(inputs, 1)
    count = None if axes_fact is None else static_length(axes_fact)
    axes = None if axes_fact is None or count == 0 else int_values(axes_fact)
    if axes_fact is None or count == 0 or axes is not None:
        return [_reduce_fact(ctx, data, axes)]
    dims = data.shape.dims
    if ctx.attr("keepdims", 1) and dims is not None:
        return [TensorFact(data.dtype, Shape([_maybe_reduced(ctx, d) for d in dims]))]
    if dims is None or count is None:
        return [TensorFact(data.dtype, Shape.unknown())]
    if count > len(dims):
        raise ctx.fail(f"{count} distinct axes for an input of rank {len(dims)}")
    return [TensorFact(data.dtype, ctx.unknown_shape(len(dims) - count, "reduced by unknown axes"))]


def _maybe_reduced(ctx: ShapeContext, dim: Dim) -> Dim:
    if dim == 1:
        return 1
    return ctx.fresh(upper_bound=dim, possible_values=(dim, 1), note="reduced or kept")


for _op in REDUCERS:
    shape_rule(_op, since=1, op_class=OpClass.ISDOS)(reduce_attribute_shape)
    shape_rule(_op, since=_AXES_BECOME_INPUT.get(_op, 18), op_class=OpClass.ISVDOS)(
        reduce_input_shape
    )


def _arg_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ArgMax / ArgMin: int64 indices; the `axis` dim becomes 1 (keepdims=1) or is dropped."""
    data = inputs[0]
    dims = data.shape.dims
    if dims is None:
        return [TensorFact(DType.INT64, Shape.unknown())]
    axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), len(dims))
    if ctx.attr("keepdims", 1):
        shape = Shape([1 if i == axis else d for i, d in enumerate(dims)])
    else:
        shape = Shape([d for i, d in enumerate(dims) if i != axis])
    elements = int_values(data) if len(dims) == 1 else None
    value = None
    if elements:
        pick = max if ctx.node.op_type == "ArgMax" else min
        extreme = pick(elements)
        positions = [i for i, e in enumerate(elements) if e == extreme]
        value = (positions[-1] if ctx.attr("select_last_index", 0) else positions[0],)
    return [TensorFact(DType.INT64, shape, value)]


shape_rule("ArgMax", since=1, op_class=OpClass.ISDOS)(_arg_shape)
shape_rule("ArgMin", since=1, op_class=OpClass.ISDOS)(_arg_shape)


def _cumulative_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """CumSum / CumProd: y has x's shape; the running fold of a 1-D shape tensor's value."""
    data = inputs[0]
    value = None
    axis = scalar_value(inputs[1])
    if data.value is not None and data.shape.rank == 1 and axis in (0, -1):
        product = ctx.node.op_type == "CumProd"
        op, identity = (VALUE_MUL, 1) if product else (VALUE_ADD, 0)
        value = _in_range(_running(list(data.value), op, identity, ctx), data.dtype)
    return [TensorFact(data.dtype, data.shape, value)]


def _running(elements: list[Element], op: ValueOp, identity: int, ctx: ShapeContext) -> list:
    """y[i] = fold(x[:i+1]) (x[:i] if exclusive; folding from the end if reverse)."""
    reverse, exclusive = bool(ctx.attr("reverse", 0)), bool(ctx.attr("exclusive", 0))
    ordered = elements[::-1] if reverse else elements
    running: list[Element] = []
    total: Element = identity
    for element in ordered:
        if exclusive:
            running.append(total)
        total = op(total, element)
        if not exclusive:
            running.append(total)
    return running[::-1] if reverse else running


shape_rule("CumSum", since=11, op_class=OpClass.ISDOS)(_cumulative_shape)
shape_rule("CumProd", since=26, op_class=OpClass.ISDOS)(_cumulative_shape)
