"""Pooling: MaxPool, AveragePool, LpPool, their Global forms, and MaxUnpool.

A pooling window is a convolution window without weights, so these kernels reuse the geometry of
`sod2.ops.conv` (pads, auto_pad, strides, dilations) and its strided view of every window; the
reduction (max, mean, p-norm) runs over the trailing kernel axes of that view.

Where ONNX's rules need care:
- `ceil_mode` rounds the output size up: out = ceil((in + pads - dilation * (k - 1) - 1) / s) + 1,
  except that a last window starting in the right padding (or beyond) is dropped; the windows
  that then run past the padded input see extra padding that never counts as input;
- MaxPool pads with -inf (the smallest integer for integer inputs), so padding never wins;
- AveragePool divides by the number of input pixels in the window (`count_include_pad=0`) or by
  the pixels of input plus explicit pads (`count_include_pad=1`), never by ceil-mode overhang;
- MaxPool's Indices index the flattened input, batch and channel included; `storage_order=1`
  flattens the spatial dims column-major (the last spatial dim varies slowest);
- SAME padding follows the spec: out = ceil(in / stride) and the pads cover the dilated kernel
  (onnxruntime ignores the dilation there); a SAME padding the formula makes negative (kernel
  shorter than the stride) is 0;
- MaxUnpool scatters values back by those flat indices into zeros of the output shape; an
  `output_shape` other than the inferred one is refused, because the onnx reference and
  onnxruntime place the indices differently then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import dims_or_unknown, optional, value_dims
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.conv import (
    WindowGeometry,
    assume_nonnegative,
    pad_spatial,
    sliding_windows,
    spatial_ints,
    window_geometry,
    window_output_dims,
)
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _kernel_shape(ctx: KernelContext, x: np.ndarray) -> tuple[int, ...]:
    if x.ndim < 3:
        raise ctx.fail(f"input X {list(x.shape)} must be (N, C, *spatial)")
    kernel = ctx.attr("kernel_shape")
    if kernel is None or len(kernel) != x.ndim - 2:
        raise ctx.fail(
            f"kernel_shape {kernel} must give one size per spatial dim of {list(x.shape)}"
        )
    return tuple(int(k) for k in kernel)


def pool_geometry(ctx: KernelContext, x: np.ndarray) -> tuple[WindowGeometry, tuple[int, ...]]:
    """The windows of a pooling node and its output spatial shape (ceil_mode included)."""
    spatial = x.shape[2:]
    geometry = window_geometry(ctx, spatial, _kernel_shape(ctx, x))
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    out = []
    for size, begin, end, extent, stride in zip(
        spatial,
        geometry.pads_begin,
        geometry.pads_end,
        geometry.extents,
        geometry.strides,
        strict=True,
    ):
        span = size + begin + end - extent
        if span < 0:
            raise ctx.fail(
                f"kernel extent {extent} exceeds the padded input {size + begin + end} "
                f"(input {list(spatial)})"
            )
        count = (-(-span // stride) if ceil_mode else span // stride) + 1
        if ceil_mode and (count - 1) * stride >= size + begin:
            count -= 1  # the last window would start in the right padding
        out.append(count)
    return geometry, tuple(out)


def _windows(
    x: np.ndarray, geometry: WindowGeometry, out: Sequence[int], fill: float | int
) -> np.ndarray:
    """The (N, C, *out, *kernel) windows, padded with `fill` (ceil-mode overhang included)."""
    ends = [
        max(end, (o - 1) * s + extent - size - begin)
        for o, s, extent, size, begin, end in zip(
            out,
            geometry.strides,
            geometry.extents,
            x.shape[2:],
            geometry.pads_begin,
            geometry.pads_end,
            strict=True,
        )
    ]
    windows = sliding_windows(pad_spatial(x, geometry.pads_begin, ends, fill), geometry)
    return windows[(slice(None), slice(None), *tuple(slice(0, o) for o in out))]


def _window_axes(rank: int) -> tuple[int, ...]:
    return tuple(range(2 + rank, 2 + 2 * rank))


def _lowest(dtype: np.dtype) -> float | int:
    return int(np.iinfo(dtype).min) if dtype.kind in "iu" else -np.inf


# -- MaxPool ---------------------------------------------------------------------------------


@register("MaxPool")
def max_pool(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MaxPool: Y[n, c, o] = max_k X_padded[n, c, o * s + k * d]; Indices: where that max lies."""
    x = as_array(inputs[0], ctx, "input X")
    geometry, out = pool_geometry(ctx, x)
    windows = _windows(x, geometry, out, _lowest(x.dtype))
    rank = x.ndim - 2
    y = windows.max(axis=_window_axes(rank)) if windows.size else _empty(x, out)
    wants_indices = len(ctx.node.outputs) > 1 and ctx.node.outputs[1] is not None
    if not wants_indices:
        return [y]
    storage_order = int(ctx.attr("storage_order", 0))
    flat_windows = windows.reshape(*windows.shape[: 2 + rank], math.prod(geometry.kernel))
    best = np.argmax(flat_windows, axis=-1)[..., None]
    positions = _windows(_flat_positions(x.shape, storage_order), geometry, out, -1)
    indices = np.take_along_axis(positions.reshape(flat_windows.shape), best, axis=-1)[..., 0]
    return [y, indices.astype(np.int64)]


def _empty(x: np.ndarray, out: Sequence[int]) -> np.ndarray:
    return np.zeros(x.shape[:2] + tuple(out), dtype=x.dtype)


def _flat_positions(shape: Sequence[int], storage_order: int) -> np.ndarray:
    """Each element's index in the flattened input; spatial dims column-major if storage_order."""
    batch_channels, spatial = math.prod(shape[:2]), tuple(shape[2:])
    order = "F" if storage_order else "C"
    within = np.arange(math.prod(spatial), dtype=np.int64).reshape(spatial, order=order)
    offsets = np.arange(batch_channels, dtype=np.int64) * math.prod(spatial)
    return (offsets.reshape(batch_channels, *(1,) * len(spatial)) + within).reshape(shape)


# -- AveragePool and LpPool --------------------------------------------------------------------


def _window_counts(
    spatial: Sequence[int], geometry: WindowGeometry, out: Sequence[int], include_pad: bool
) -> np.ndarray:
    """How many pixels each window averages: input pixels, plus explicit pads if include_pad."""
    if include_pad:
        ones = np.ones(
            [
                s + b + e
                for s, b, e in zip(spatial, geometry.pads_begin, geometry.pads_end, strict=True)
            ]
        )
        counted = WindowGeometry(
            geometry.kernel,
            geometry.strides,
            geometry.dilations,
            (0,) * len(spatial),
            (0,) * len(spatial),
        )
    else:
        ones, counted = np.ones(tuple(spatial)), geometry
    windows = _windows(ones[None, None], counted, out, 0.0)
    return windows.sum(axis=_window_axes(len(spatial)))


@register("AveragePool")
def average_pool(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """AveragePool: Y = sum of the window / number of counted pixels (see count_include_pad)."""
    x = as_array(inputs[0], ctx, "input X")
    geometry, out = pool_geometry(ctx, x)
    work = np.float64
    sums = _windows(x.astype(work), geometry, out, 0.0).sum(axis=_window_axes(x.ndim - 2))
    counts = _window_counts(x.shape[2:], geometry, out, bool(ctx.attr("count_include_pad", 0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return [(sums / counts).astype(x.dtype)]


def _lp_order(ctx: KernelContext) -> float:
    p = float(ctx.attr("p", 2))
    if p <= 0:
        raise ctx.fail(f"p must be positive, got {p}")
    return p


def _lp_norm(values: np.ndarray, p: float, axes: tuple[int, ...]) -> np.ndarray:
    """(sum |v|^p) ^ (1/p) over `axes`."""
    return np.power(np.power(np.abs(values), p).sum(axis=axes), 1.0 / p)


@register("LpPool")
def lp_pool(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """LpPool: Y = (sum over the window of |X|^p)^(1/p), padding counting as 0."""
    x = as_array(inputs[0], ctx, "input X")
    geometry, out = pool_geometry(ctx, x)
    windows = _windows(x.astype(np.float64), geometry, out, 0.0)
    return [_lp_norm(windows, _lp_order(ctx), _window_axes(x.ndim - 2)).astype(x.dtype)]


# -- Global pooling --------------------------------------------------------------------------


def _global(
    op_type: str, reduce: Callable[[KernelContext, np.ndarray, tuple[int, ...]], np.ndarray]
) -> None:
    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = as_array(inputs[0], ctx, "input X")
        if x.ndim < 3:
            raise ctx.fail(f"input X {list(x.shape)} must be (N, C, *spatial)")
        axes = tuple(range(2, x.ndim))
        result = reduce(ctx, x, axes)
        return [np.asarray(result).reshape(x.shape[:2] + (1,) * len(axes)).astype(x.dtype)]

    kernel.__name__ = op_type.lower()
    kernel.__doc__ = f"{op_type}: reduce every spatial dim to size 1."
    register(op_type)(kernel)


_global("GlobalAveragePool", lambda ctx, x, axes: x.astype(np.float64).mean(axis=axes))
_global("GlobalMaxPool", lambda ctx, x, axes: x.max(axis=axes))
_global("GlobalLpPool", lambda ctx, x, axes: _lp_norm(x.astype(np.float64), _lp_order(ctx), axes))


# -- MaxUnpool -------------------------------------------------------------------------------


@register("MaxUnpool", since=9)
def max_unpool(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MaxUnpool: zeros of the output shape, out.flat[I] = X; by default
    out = (in - 1) * stride + kernel - pads along each spatial axis."""
    x = as_array(inputs[0], ctx, "input X")
    indices = as_array(inputs[1], ctx, "input I")
    if indices.shape != x.shape:
        raise ctx.fail(f"indices I {list(indices.shape)} must have X's shape {list(x.shape)}")
    rank = x.ndim - 2
    kernel = _kernel_shape(ctx, x)
    strides = spatial_ints(ctx, "strides", rank, 1)
    pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
    spatial = [
        (size - 1) * s + k - b - e
        for size, s, k, b, e in zip(
            x.shape[2:], strides, kernel, pads[:rank], pads[rank:], strict=True
        )
    ]
    shape = x.shape[:2] + tuple(spatial)
    requested = _optional(inputs, 2)
    if requested is not None:
        wanted = tuple(int(v) for v in as_array(requested, ctx, "output_shape"))
        if wanted != shape:
            # onnx's reference scatters into the inferred shape and pads the result at the end;
            # onnxruntime scatters into the requested shape: the spec does not settle which.
            raise ctx.unsupported(
                f"output_shape {list(wanted)} differing from the inferred {list(shape)} (the ONNX "
                f"reference and onnxruntime place the indices differently)"
            )
    out = np.zeros(math.prod(shape), dtype=x.dtype)
    flat = indices.reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= out.size):
        raise ctx.fail(
            f"indices range over [{flat.min()}, {flat.max()}], outside output {list(shape)}"
        )
    out[flat] = x.reshape(-1)
    return [out.reshape(shape)]


# -- shape rules (RDP) -------------------------------------------------------------------------


def _pooled_shape(ctx: ShapeContext, x: TensorFact) -> Shape:
    """[N, C, *out], out = floor((in + pads - dil*(k-1) - 1)/stride) + 1 (ceil with ceil_mode,
    the last window dropped if it starts in the right padding; SAME: ceil(in/stride))."""
    kernel = ctx.attr("kernel_shape")
    dims = x.shape.dims
    if dims is None:
        return ctx.unknown_shape(None if kernel is None else len(kernel) + 2, "pooling")
    if len(dims) < 3 or kernel is None or len(kernel) != len(dims) - 2:
        raise ctx.fail(f"kernel_shape {kernel} must give one size per spatial dim of {x.shape}")
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    spatial = window_output_dims(ctx, dims[2:], [int(k) for k in kernel], ceil_mode=ceil_mode)
    return Shape([dims[0], dims[1], *spatial])


@shape_rule("MaxPool", op_class=OpClass.ISDOS)
def max_pool_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """MaxPool: Y and Indices (int64) are [N, C, *out] (see `_pooled_shape`)."""
    shape = _pooled_shape(ctx, inputs[0])
    return [TensorFact(inputs[0].dtype, shape), TensorFact(DType.INT64, shape)]


def _pooled(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """AveragePool, LpPool: [N, C, *out] (see `_pooled_shape`)."""
    return [TensorFact(inputs[0].dtype, _pooled_shape(ctx, inputs[0]))]


def _global_pooled(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Global pooling: [N, C, 1, ..., 1]."""
    dims = inputs[0].shape.dims
    if dims is None:
        return [TensorFact(inputs[0].dtype, Shape.unknown())]
    if len(dims) < 3:
        raise ctx.fail(f"input X {inputs[0].shape} must be (N, C, *spatial)")
    return [TensorFact(inputs[0].dtype, Shape([dims[0], dims[1], *(1,) * (len(dims) - 2)]))]


for _name in ("AveragePool", "LpPool"):
    shape_rule(_name, op_class=OpClass.ISDOS)(_pooled)
for _name in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
    shape_rule(_name, op_class=OpClass.ISDOS)(_global_pooled)


@shape_rule("MaxUnpool", since=9, op_class=OpClass.ISDOS)
def max_unpool_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """MaxUnpool: [N, C, *out], out = (in - 1) * stride + k - pads, or the output_shape input;
    I has X's shape."""
    x, indices = inputs[0], inputs[1]
    dims = x.shape.dims
    if dims is None:
        return [TensorFact(x.dtype, Shape.unknown())]
    if indices.shape.dims is not None:
        if len(indices.shape.dims) != len(dims):
            raise ctx.fail(f"indices I {indices.shape} must have X's shape {x.shape}")
        for axis, (a, b) in enumerate(zip(indices.shape.dims, dims, strict=True)):
            ctx.same(a, b, f"I's dim {axis} = X's")
    rank = len(dims) - 2
    kernel = ctx.attr("kernel_shape")
    if rank < 1 or kernel is None or len(kernel) != rank:
        raise ctx.fail(f"kernel_shape {kernel} must give one size per spatial dim of {x.shape}")
    strides = spatial_ints(ctx, "strides", rank, 1)
    pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
    spatial: list[Dim] = []
    for axis, size in enumerate(dims[2:]):
        extent = (size - 1) * strides[axis] + int(kernel[axis]) - pads[axis] - pads[rank + axis]
        assume_nonnegative(ctx, extent, f"pads leave a non-negative output along axis {axis}")
        spatial.append(extent)
    return [TensorFact(x.dtype, _requested_or(ctx, optional(inputs, 2), [*dims[:2], *spatial]))]


def _requested_or(ctx: ShapeContext, requested: TensorFact | None, inferred: list[Dim]) -> Shape:
    """The output_shape input's known elements (the spec's output shape), else `inferred`."""
    wanted = None if requested is None else value_dims(requested)
    if wanted is None:
        return Shape(inferred)
    if len(wanted) != len(inferred):
        raise ctx.fail(f"output_shape has {len(wanted)} dims, the input {len(inferred)}")
    chosen = [dim if value is None else value for dim, value in zip(inferred, wanted, strict=True)]
    return Shape(dims_or_unknown(ctx, chosen, "MaxUnpool output_shape"))
