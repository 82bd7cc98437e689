"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear.

    quantize:   y = saturate(round(x / scale) + zero_point)
    dequantize: y = (x - zero_point) * scale

`scale` and `zero_point` share one shape, which picks the granularity: a scalar (per tensor), a
1-D tensor along `axis` (per axis), or the input's rank with one dim divided into blocks of
`block_size` (blocked, opset 21). The places where ONNX differs from a plain numpy formula:
- rounding is half to even (`np.rint`), then the zero point is added, then the result saturates
  to the integer type's range (uint8 [0, 255], int4 [-8, 7], int2 [-2, 1] ...);
- the division runs in the promoted type of x and scale (float32 for float32 inputs), or in the
  type named by the `precision` attribute; dequantization multiplies in float32 and casts to the
  scale's type (or `output_dtype`);
- the output type is the zero point's, or `output_dtype` when no zero point is given (uint8 by
  default);
- float8 outputs ignore the zero point and, with `saturate=1`, clip to the type's finite range
  before rounding; with `saturate=0` out-of-range values become inf or NaN as the type allows;
- float4/float6 outputs have no inf or NaN: their casts saturate whatever `saturate` says.
Narrow types (int4, int2, float8, float4, float6) are ml_dtypes arrays, as everywhere in sod2.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_dtypes
import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import optional
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import ceil_div, provably_equal
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis

_INTEGER_RANGES: dict[DType, tuple[int, int]] = {
    DType.UINT8: (0, 255),
    DType.INT8: (-128, 127),
    DType.UINT16: (0, 65535),
    DType.INT16: (-32768, 32767),
    DType.INT32: (-(2**31), 2**31 - 1),
    DType.UINT4: (0, 15),
    DType.INT4: (-8, 7),
    DType.UINT2: (0, 3),
    DType.INT2: (-2, 1),
}
_FLOAT8 = {DType.FLOAT8E4M3FN, DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2, DType.FLOAT8E5M2FNUZ}
_SELF_SATURATING_FLOATS = {DType.FLOAT4E2M1, DType.FLOAT6E2M3, DType.FLOAT6E3M2}


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def requantize(values: np.ndarray, zero_point: Value, dtype: np.dtype) -> np.ndarray:
    """saturate(round_half_even(values) + zero_point) in the integer type `dtype`."""
    kind = DType.from_numpy(dtype)
    low, high = _INTEGER_RANGES[kind]
    shifted = np.rint(values).astype(np.float64)
    if zero_point is not None:
        shifted = shifted + np.asarray(zero_point).astype(np.float64)
    return np.asarray(np.clip(shifted, low, high)).astype(dtype)


def broadcast_parameter(
    ctx: KernelContext,
    parameter: np.ndarray,
    shape: tuple[int, ...],
    axis: int,
    block_size: int,
    what: str,
) -> np.ndarray:
    """A scale or zero point made broadcastable to `shape`: per tensor, per axis or blocked."""
    if parameter.size == 1 and (parameter.ndim <= 1 or not block_size):
        return parameter.reshape(())
    axis = normalize_axis(ctx, axis, len(shape))
    if not block_size:
        if parameter.ndim != 1 or parameter.size != shape[axis]:
            raise ctx.fail(
                f"{what} of shape {list(parameter.shape)} must be a scalar or hold one value per "
                f"index of axis {axis} (dim {shape[axis]} of input shape {list(shape)})"
            )
        dims = [1] * len(shape)
        dims[axis] = parameter.size
        return parameter.reshape(dims)
    if block_size < 0:
        raise ctx.fail(f"block_size must be positive, got {block_size}")
    expected = list(shape)
    expected[axis] = -(-shape[axis] // block_size)
    if list(parameter.shape) != expected:
        raise ctx.fail(
            f"{what} of shape {list(parameter.shape)} does not fit blocks of {block_size} along "
            f"axis {axis} of input shape {list(shape)} (expected {expected})"
        )
    return np.repeat(parameter, block_size, axis=axis).take(range(shape[axis]), axis=axis)


def _granularity(ctx: KernelContext) -> tuple[int, int]:
    """(axis, block_size) of the node; the axis matters only for per-axis and blocked forms."""
    return int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))


def _quantized_type(ctx: KernelContext, zero_point: Value) -> DType:
    """The output type: the zero point's, else `output_dtype`, else uint8."""
    requested = int(ctx.attr("output_dtype", 0))
    if zero_point is not None:
        found = DType.from_numpy(np.asarray(zero_point).dtype)
        if requested and requested != found.onnx:
            raise ctx.fail(
                f"output_dtype {DType.from_onnx(requested)} differs from the zero point's type {found}"
            )
        return found
    return DType.from_onnx(requested) if requested else DType.UINT8


@register("QuantizeLinear", since=10)
def quantize_linear(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """QuantizeLinear: y = saturate(round(x / y_scale) + y_zero_point)."""
    x = as_array(inputs[0], ctx, "input x")
    scale = as_array(_optional(inputs, 1), ctx, "input y_scale")
    zero_point = _optional(inputs, 2)
    target = _quantized_type(ctx, zero_point)
    axis, block_size = _granularity(ctx)
    scale = broadcast_parameter(ctx, scale, x.shape, axis, block_size, "y_scale")
    scaled = _divide(ctx, x, scale)
    if zero_point is not None:
        zero_point = broadcast_parameter(
            ctx, np.asarray(zero_point), x.shape, axis, block_size, "y_zero_point"
        )
    if target in _INTEGER_RANGES:
        return [requantize(scaled, zero_point, target.numpy)]
    if target in _FLOAT8:
        return [_to_float8(scaled, target, bool(ctx.attr("saturate", 1)))]
    if target in _SELF_SATURATING_FLOATS:
        shifted = scaled if zero_point is None else scaled + zero_point.astype(np.float32)
        return [np.asarray(shifted).astype(target.numpy)]
    raise ctx.unsupported(f"quantization to element type {target}")


def _divide(ctx: KernelContext, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """x / scale in the `precision` type if given, else in the promoted type of x and scale."""
    precision = int(ctx.attr("precision", 0))
    if precision:
        work = DType.from_onnx(precision).numpy
        return x.astype(work) / scale.astype(work)
    work = np.result_type(_arithmetic(x.dtype), _arithmetic(scale.dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        return x.astype(work) / scale.astype(work)


def _arithmetic(dtype: np.dtype) -> np.dtype:
    """ml_dtypes floats (bfloat16, float8e8m0) compute in float32."""
    return dtype if dtype.kind in "iuf" else np.dtype(np.float32)


def _to_float8(values: np.ndarray, target: DType, saturate: bool) -> np.ndarray:
    """Round to a float8 type; saturation clips to the finite range first (NaN stays NaN)."""
    values = values.astype(np.float32)
    if saturate:
        largest = float(ml_dtypes.finfo(target.numpy).max)
        values = np.where(np.isnan(values), values, np.clip(values, -largest, largest))
    return np.asarray(values).astype(target.numpy)


@register("DequantizeLinear", since=10)
def dequantize_linear(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DequantizeLinear: y = (x - x_zero_point) * x_scale, in float32, cast to the output type."""
    x = as_array(inputs[0], ctx, "input x")
    scale = as_array(_optional(inputs, 1), ctx, "input x_scale")
    zero_point = _optional(inputs, 2)
    axis, block_size = _granularity(ctx)
    scale = broadcast_parameter(ctx, scale, x.shape, axis, block_size, "x_scale")
    source = DType.from_numpy(x.dtype)
    if source in _INTEGER_RANGES:
        shifted = x.astype(np.int64)
        if zero_point is not None:
            zero = broadcast_parameter(
                ctx, np.asarray(zero_point), x.shape, axis, block_size, "x_zero_point"
            )
            shifted = shifted - zero.astype(np.int64)
        values = shifted.astype(np.float32)
    elif source in _FLOAT8 or source in _SELF_SATURATING_FLOATS:
        if zero_point is not None and np.any(np.asarray(zero_point).astype(np.float32) != 0):
            raise ctx.unsupported(f"a non-zero zero point for {source} input")
        values = x.astype(np.float32)
    else:
        raise ctx.unsupported(f"dequantization of element type {source}")
    requested = int(ctx.attr("output_dtype", 0))
    output_type = DType.from_onnx(requested).numpy if requested else scale.dtype
    return [np.asarray(values * scale.astype(np.float32)).astype(output_type)]


@register("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DynamicQuantizeLinear to uint8: scale = (max(0, max x) - min(0, min x)) / 255,
    zero_point = saturate(round(-min(0, min x) / scale)), y = saturate(round(x / scale) + zp)."""
    x = as_array(inputs[0], ctx, "input x")
    if x.dtype != np.float32:
        raise ctx.fail(f"input x must be float32, got {x.dtype}")
    if x.size == 0:
        raise ctx.fail(f"input x of shape {list(x.shape)} is empty: no range to quantize")
    high = np.float32(max(0.0, float(x.max())))
    low = np.float32(min(0.0, float(x.min())))
    # onnxruntime's convention for a constant-zero input: scale 1 (the formula would divide by 0)
    scale = np.float32(1.0) if high == low else np.float32((high - low) / np.float32(255))
    zero_point = np.rint(np.clip(np.float32(0) - low / scale, 0, 255))
    quantized = requantize(x / scale, zero_point, np.dtype(np.uint8))
    return [quantized, np.array(scale, dtype=np.float32), np.array(zero_point, dtype=np.uint8)]


# -- shape rules (RDP) -------------------------------------------------------------------------


def _check_parameter(ctx: ShapeContext, parameter: TensorFact | None, x: Shape, what: str) -> None:
    """A scale or zero point is one value (per tensor), [x[axis]] (per axis), or x's shape with
    ceil(x[axis] / block_size) along axis (blocked)."""
    if parameter is None or parameter.shape.dims is None or x.dims is None:
        return
    dims = parameter.shape.dims
    if not dims or (len(dims) == 1 and provably_equal(dims[0], 1)):
        return
    axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    if block < 0:
        raise ctx.fail(f"block_size must be positive, got {block}")
    if not -len(x.dims) <= axis < len(x.dims):  # only a per-tensor parameter fits
        for dim in dims:
            ctx.same(dim, 1, f"{what} holds one value (axis {axis} is not one of x's)")
        return
    axis = normalize_axis(ctx, axis, len(x.dims))
    expected = [ceil_div(e, block) if block and i == axis else e for i, e in enumerate(x.dims)]
    if len(dims) == 1 and (not block or len(x.dims) == 1):
        _one_or(ctx, dims[0], expected[axis], f"{what} is per tensor or per axis {axis}")
    elif not block:
        for dim in dims:
            ctx.same(dim, 1, f"{what} of rank {len(dims)} holds one value")
    elif len(dims) != len(x.dims):
        raise ctx.fail(f"{what} {parameter.shape} must have the rank of x {x} (blocked)")
    else:
        for index, (dim, extent) in enumerate(zip(dims, expected, strict=True)):
            ctx.same(dim, extent, f"{what} dim {index} (blocks of {block} along axis {axis})")


def _one_or(ctx: ShapeContext, dim: Dim, extent: Dim, why: str) -> None:
    """`dim` is 1 or `extent` (`dim` is not provably 1)."""
    if provably_equal(dim, extent):
        return
    if isinstance(dim, int):  # not 1: it must be the extent
        ctx.same(dim, extent, why)
        return
    ctx.assume(sympy.Eq(dim, 1) | sympy.Eq(dim, extent), why)


@shape_rule("QuantizeLinear", since=10, op_class=OpClass.ISDOS)
def quantize_linear_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """QuantizeLinear: x's shape; the zero point's element type, else output_dtype, else uint8."""
    x, zero_point = inputs[0], optional(inputs, 2)
    _check_parameter(ctx, optional(inputs, 1), x.shape, "y_scale")
    _check_parameter(ctx, zero_point, x.shape, "y_zero_point")
    requested = int(ctx.attr("output_dtype", 0))
    if zero_point is not None:
        dtype = zero_point.dtype
    else:
        dtype = DType.from_onnx(requested) if requested else DType.UINT8
    return [TensorFact(dtype, x.shape)]


@shape_rule("DequantizeLinear", since=10, op_class=OpClass.ISDOS)
def dequantize_linear_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DequantizeLinear: x's shape; element type output_dtype, else the scale's."""
    x, scale = inputs[0], inputs[1]
    _check_parameter(ctx, scale, x.shape, "x_scale")
    _check_parameter(ctx, optional(inputs, 2), x.shape, "x_zero_point")
    requested = int(ctx.attr("output_dtype", 0))
    return [TensorFact(DType.from_onnx(requested) if requested else scale.dtype, x.shape)]


@shape_rule("DynamicQuantizeLinear", since=11, op_class=OpClass.ISDOS)
def dynamic_quantize_linear_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DynamicQuantizeLinear: y uint8 of x's shape, scalar float32 scale, scalar uint8 zero point."""
    return [
        TensorFact(DType.UINT8, inputs[0].shape),
        TensorFact(DType.FLOAT32, Shape([])),
        TensorFact(DType.UINT8, Shape([])),
    ]
