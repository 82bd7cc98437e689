"""Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv (1-D, 2-D, 3-D ...).

The idea: a convolution is a matrix product over image patches (im2col). `sliding_windows`
views the padded input as (N, C, *out, *kernel) without copying (numpy stride tricks, with
strides and dilations as steps of the view); one reshape gathers the patches into columns and one
batched `matmul` per call applies every filter of every group. ConvTranspose is the adjoint:
one matmul spreads each input pixel over a kernel-sized patch, and the patches are summed into
the output by strided slices, one slice per kernel offset (col2im).

Where ONNX's rules need care:
- `pads` lists all begins, then all ends: [x1_begin, x2_begin, ..., x1_end, x2_end, ...];
- `auto_pad` SAME_UPPER / SAME_LOWER pad so that out = ceil(in / stride), the odd pixel at the
  end (UPPER) or at the beginning (LOWER); VALID means no padding;
- ConvTranspose's weights are (C, M/group, *kernel), transposed relative to Conv's
  (M, C/group, *kernel), and its padding crops the full output instead of growing the input; an
  explicit `output_shape` (spatial dims, or all dims) overrides `pads`, and may exceed the full
  output by up to stride - 1 zeros at the end, as output_padding does;
- integer convolutions subtract zero points before padding, so padding contributes nothing;
- narrow floats (float16, bfloat16) are convolved in float32 and cast back.
The pooling operators (`sod2.ops.pooling`) share `WindowGeometry` and `sliding_windows`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import exact_div, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import ceil_div, floor_div
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.linalg import accumulation_dtype
from sod2.ops.quantize import requantize
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True, slots=True)
class WindowGeometry:
    """Where a kernel window lies along each spatial axis of a padded input."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]

    @property
    def extents(self) -> tuple[int, ...]:
        """The span of a dilated kernel: dilation * (k - 1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilations, strict=True))

    def output_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """out = floor((in + pads - dilation * (k - 1) - 1) / stride) + 1 along each axis."""
        return tuple(
            (size + begin + end - extent) // stride + 1
            for size, begin, end, extent, stride in zip(
                spatial, self.pads_begin, self.pads_end, self.extents, self.strides, strict=True
            )
        )


def spatial_ints(
    ctx: KernelContext | ShapeContext,
    name: str,
    rank: int,
    default: int,
    *,
    length: int | None = None,
) -> tuple[int, ...]:
    """An int-list attribute with one value per spatial axis (`length` values if given)."""
    expected = rank if length is None else length
    value = ctx.attr(name)
    if value is None:
        return (default,) * expected
    values = tuple(int(v) for v in value)
    if len(values) != expected:
        raise ctx.fail(f"attribute {name} has {len(values)} values, expected {expected}")
    return values


def same_pads(
    spatial: Sequence[int], strides: Sequence[int], extents: Sequence[int], upper: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """SAME padding: out = ceil(in / s), total = max(0, (out - 1) * s + extent - in), odd pixel
    at the end (SAME_UPPER) or at the beginning (SAME_LOWER)."""
    begins, ends = [], []
    for size, stride, extent in zip(spatial, strides, extents, strict=True):
        total = max(0, (math.ceil(size / stride) - 1) * stride + extent - size)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return tuple(begins), tuple(ends)


def window_geometry(
    ctx: KernelContext, spatial: Sequence[int], kernel: Sequence[int]
) -> WindowGeometry:
    """Strides, dilations and pads of a Conv or pooling node over `spatial` input dims."""
    rank = len(spatial)
    strides = spatial_ints(ctx, "strides", rank, 1)
    dilations = spatial_ints(ctx, "dilations", rank, 1)
    if min(strides + dilations, default=1) < 1:
        raise ctx.fail(f"strides {list(strides)} and dilations {list(dilations)} must be >= 1")
    kernel = tuple(int(k) for k in kernel)
    auto_pad = _auto_pad(ctx)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        extents = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True))
        begins, ends = same_pads(spatial, strides, extents, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        begins = ends = (0,) * rank
    else:
        pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
        if min(pads, default=0) < 0:
            raise ctx.fail(f"pads {list(pads)} must be >= 0")
        begins, ends = pads[:rank], pads[rank:]
    return WindowGeometry(kernel, strides, dilations, begins, ends)


def _auto_pad(ctx: KernelContext | ShapeContext) -> str:
    auto_pad = str(ctx.attr("auto_pad", "NOTSET")) or "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise ctx.fail(f"auto_pad {auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    return auto_pad


def pad_spatial(
    x: np.ndarray, begins: Sequence[int], ends: Sequence[int], value: float | int = 0
) -> np.ndarray:
    """Pad the trailing spatial axes of x (N, C, *spatial) with a constant."""
    if not any(begins) and not any(ends):
        return x
    widths = [(0, 0)] * (x.ndim - len(begins)) + list(zip(begins, ends, strict=True))
    return np.pad(x, widths, constant_values=value)


def sliding_windows(padded: np.ndarray, geometry: WindowGeometry) -> np.ndarray:
    """A view (N, C, *out, *kernel) of every (strided, dilated) kernel window of `padded`."""
    rank = len(geometry.kernel)
    axes = tuple(range(padded.ndim - rank, padded.ndim))
    windows = np.lib.stride_tricks.sliding_window_view(padded, geometry.extents, axis=axes)
    steps = (slice(None),) * (padded.ndim - rank)
    steps += tuple(slice(None, None, s) for s in geometry.strides)
    steps += tuple(slice(None, None, d) for d in geometry.dilations)
    return windows[steps]


def _check_output(ctx: KernelContext, spatial: Sequence[int], geometry: WindowGeometry) -> None:
    padded = [
        s + b + e for s, b, e in zip(spatial, geometry.pads_begin, geometry.pads_end, strict=True)
    ]
    if any(p < extent for p, extent in zip(padded, geometry.extents, strict=True)):
        raise ctx.fail(
            f"kernel {list(geometry.kernel)} (dilated extent {list(geometry.extents)}) does not fit "
            f"the padded input {padded} (input {list(spatial)})"
        )


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


# -- Conv ----------------------------------------------------------------------------------------


def _check_conv_shapes(ctx: KernelContext, x: np.ndarray, w: np.ndarray, group: int) -> None:
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ctx.fail(
            f"X {list(x.shape)} must be (N, C, *spatial) and W {list(w.shape)} (M, C/group, "
            f"*kernel) of the same rank"
        )
    if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ctx.fail(
            f"X has {x.shape[1]} channels and W is {list(w.shape)}: with group={group}, W must be "
            f"(M, C/group, *kernel) with M divisible by group"
        )
    kernel_shape = ctx.attr("kernel_shape")
    if kernel_shape is not None and tuple(kernel_shape) != w.shape[2:]:
        raise ctx.fail(f"kernel_shape {list(kernel_shape)} differs from W's {list(w.shape[2:])}")


def convolve(
    ctx: KernelContext, x: np.ndarray, w: np.ndarray, group: int, geometry: WindowGeometry
) -> np.ndarray:
    """Y[n, m, o] = sum_{c in group(m), k} X_padded[n, c, o * s + k * d] * W[m, c, k] (im2col)."""
    _check_output(ctx, x.shape[2:], geometry)
    windows = sliding_windows(pad_spatial(x, geometry.pads_begin, geometry.pads_end), geometry)
    batch, channels = x.shape[:2]
    rank = len(geometry.kernel)
    out_shape = windows.shape[2 : 2 + rank]
    # (N, C, *out, *k) -> (N, group, C/group * K, P): each column is one patch of one group
    order = (0, 1, *range(2 + rank, 2 + 2 * rank), *range(2, 2 + rank))
    patch_size = (channels // group) * math.prod(geometry.kernel)
    columns = windows.transpose(order).reshape(batch, group, patch_size, math.prod(out_shape))
    filters = w.reshape(group, w.shape[0] // group, patch_size)
    return np.matmul(filters, columns).reshape(batch, w.shape[0], *out_shape)


def _add_bias(ctx: KernelContext, y: np.ndarray, bias: Value, channels: int) -> np.ndarray:
    if bias is None:
        return y
    b = as_array(bias, ctx, "input B")
    if b.shape != (channels,):
        raise ctx.fail(
            f"bias B of shape {list(b.shape)} must have one value per output channel ({channels})"
        )
    return y + b.astype(y.dtype).reshape((channels,) + (1,) * (y.ndim - 2))


@register("Conv")
def conv(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Conv: Y = X * W + B, out = floor((in + pads - dilation * (k - 1) - 1) / stride) + 1."""
    x, w = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input W")
    group = int(ctx.attr("group", 1))
    _check_conv_shapes(ctx, x, w, group)
    geometry = window_geometry(ctx, x.shape[2:], w.shape[2:])
    work = accumulation_dtype(x.dtype)
    y = convolve(ctx, x.astype(work, copy=False), w.astype(work, copy=False), group, geometry)
    return [_add_bias(ctx, y, _optional(inputs, 2), w.shape[0]).astype(x.dtype, copy=False)]


def _integer_convolution(
    ctx: KernelContext, x: np.ndarray, w: np.ndarray, x_zero: Value, w_zero: Value
) -> np.ndarray:
    """sum (X - x_zero_point) * (W - w_zero_point[m]) over each window, exact, as int64."""
    group = int(ctx.attr("group", 1))
    _check_conv_shapes(ctx, x, w, group)
    shifted_x = x.astype(np.float64) - _zero_point(x_zero)
    shifted_w = w.astype(np.float64) - _channel_values(
        ctx, w_zero, w.shape[0], w.ndim, "w_zero_point"
    )
    geometry = window_geometry(ctx, x.shape[2:], w.shape[2:])
    # float64 products of 8-bit values and their sums stay exact far beyond any real kernel size
    return np.rint(convolve(ctx, shifted_x, shifted_w, group, geometry)).astype(np.int64)


def _zero_point(value: Value) -> np.ndarray | float:
    return 0.0 if value is None else np.asarray(value).astype(np.float64).reshape(())


def _channel_values(
    ctx: KernelContext, value: Value, channels: int, rank: int, what: str
) -> np.ndarray | float:
    """A scalar, or one value per output channel shaped (M, 1, ...) to broadcast over W or Y."""
    if value is None:
        return 0.0
    array = np.asarray(value).astype(np.float64)
    if array.size == 1:
        return array.reshape(())
    if array.shape != (channels,):
        raise ctx.fail(
            f"{what} of shape {list(array.shape)} must be a scalar or hold {channels} values"
        )
    return array.reshape((channels,) + (1,) * (rank - 1))


@register("ConvInteger", since=10)
def conv_integer(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ConvInteger: Y = (X - x_zero_point) * (W - w_zero_point), accumulated in int32."""
    x, w = as_array(inputs[0], ctx, "input x"), as_array(inputs[1], ctx, "input w")
    accumulated = _integer_convolution(ctx, x, w, _optional(inputs, 2), _optional(inputs, 3))
    return [accumulated.astype(np.int32)]


@register("QLinearConv", since=10)
def qlinear_conv(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """QLinearConv: y = saturate(round((conv(x - x_zp, w - w_zp) + B) * x_scale * w_scale / y_scale) + y_zp)."""
    x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, bias = (
        _optional(inputs, i) for i in range(9)
    )
    x, w = as_array(x, ctx, "input x"), as_array(w, ctx, "input w")
    accumulated = _integer_convolution(ctx, x, w, x_zero, w_zero)
    if bias is not None:
        accumulated = accumulated + as_array(bias, ctx, "input B").astype(np.int64).reshape(
            (-1,) + (1,) * (x.ndim - 2)
        )
    x_scale_value = as_array(x_scale, ctx, "x_scale")
    channel_scale = as_array(w_scale, ctx, "w_scale")
    if channel_scale.size > 1:
        channel_scale = channel_scale.reshape((-1,) + (1,) * (x.ndim - 2))
    multiplier = (x_scale_value * channel_scale / as_array(y_scale, ctx, "y_scale")).astype(
        np.float64
    )
    output_type = x.dtype if y_zero is None else np.asarray(y_zero).dtype
    return [requantize(accumulated.astype(np.int32) * multiplier, y_zero, output_type)]


# -- ConvTranspose ---------------------------------------------------------------------------


def _transpose_pads(
    ctx: KernelContext,
    spatial: Sequence[int],
    full: Sequence[int],
    output_padding: Sequence[int],
    strides: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """ConvTranspose pads: from `output_shape` or auto_pad SAME (total = full + output_padding -
    wanted, split with the odd pixel at the end for SAME_UPPER, else at the beginning), or given."""
    rank = len(spatial)
    auto_pad = _auto_pad(ctx)
    requested = ctx.attr("output_shape")
    if requested is not None:
        wanted = [int(v) for v in requested][-rank:]
        if len(wanted) != rank:
            raise ctx.fail(f"output_shape {list(requested)} needs {rank} spatial dims")
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [size * stride for size, stride in zip(spatial, strides, strict=True)]
    elif auto_pad == "VALID":
        return (0,) * rank, (0,) * rank
    else:
        pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
        return pads[:rank], pads[rank:]
    begins, ends = [], []
    for size, extra, target, stride in zip(full, output_padding, wanted, strides, strict=True):
        begin, end = _split_padding(ctx, size + extra - target, auto_pad, stride)
        begins.append(begin)
        ends.append(end)
    return tuple(begins), tuple(ends)


def _split_padding(ctx: KernelContext, total: int, auto_pad: str, stride: int) -> tuple[int, int]:
    """(begin, end) pads summing to `total`: the odd pixel at the end for SAME_UPPER, else at
    the beginning. A negative total (an output longer than the full transposed convolution)
    adds zeros at the end, like output_padding, at most stride - 1 of them."""
    if total >= 0:
        small, large = total // 2, total - total // 2
        return (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    if auto_pad != "NOTSET":
        # SAME asks for more outputs than the transposed convolution produces (stride larger
        # than the kernel extent): onnxruntime and the onnx reference place them differently
        raise ctx.unsupported(
            f"auto_pad {auto_pad} with an output {-total} longer than the full ConvTranspose "
            f"output (stride larger than the kernel extent)"
        )
    if -total >= stride:
        raise ctx.fail(
            f"output_shape exceeds the full output by {-total} >= stride {stride}: it belongs "
            f"to a longer input"
        )
    return 0, total


def _crop_or_extend(array: np.ndarray, begins: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """out[..., j] = array[..., j + begin] along each trailing axis, zero where out of range."""
    rank = len(begins)
    result = np.zeros(array.shape[: array.ndim - rank] + tuple(lengths), dtype=array.dtype)
    source, target = [], []
    for size, begin, length in zip(array.shape[array.ndim - rank :], begins, lengths, strict=True):
        low, high = max(begin, 0), min(begin + length, size)
        source.append(slice(low, max(high, low)))
        target.append(slice(low - begin, max(high, low) - begin))
    lead = (slice(None),) * (array.ndim - rank)
    result[lead + tuple(target)] = array[lead + tuple(source)]
    return result


def scatter_patches(
    patches: np.ndarray, full: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> np.ndarray:
    """col2im: out[..., i * s + k * d] += patches[..., k, i], over every kernel offset k."""
    rank = len(full)
    lead = patches.shape[: patches.ndim - 2 * rank]
    kernel = patches.shape[len(lead) : len(lead) + rank]
    positions = patches.shape[len(lead) + rank :]
    out = np.zeros(lead + tuple(full), dtype=patches.dtype)
    prefix = (slice(None),) * len(lead)
    for offset in itertools.product(*(range(k) for k in kernel)):
        where = tuple(
            slice(k * d, k * d + s * (p - 1) + 1, s)
            for k, d, s, p in zip(offset, dilations, strides, positions, strict=True)
        )
        out[prefix + where] += patches[prefix + offset]
    return out


def transpose_geometry(
    ctx: KernelContext, spatial: Sequence[int], kernel: Sequence[int]
) -> tuple[tuple[int, ...], ...]:
    """ConvTranspose's strides, dilations, full (uncropped) extents, leading pads and output
    extents for an input of `spatial` extents: output position o along an axis takes input i at
    tap k where o = i * stride + k * dilation - pad. Raises when the pads leave a negative
    extent."""
    rank = len(spatial)
    strides = spatial_ints(ctx, "strides", rank, 1)
    dilations = spatial_ints(ctx, "dilations", rank, 1)
    output_padding = spatial_ints(ctx, "output_padding", rank, 0)
    full = [
        s * (n - 1) + d * (k - 1) + 1
        for s, n, d, k in zip(strides, spatial, dilations, kernel, strict=True)
    ]
    begins, ends = _transpose_pads(ctx, spatial, full, output_padding, strides)
    lengths = [
        f + extra - b - e for f, extra, b, e in zip(full, output_padding, begins, ends, strict=True)
    ]
    if min(lengths, default=1) < 0:
        raise ctx.fail(f"pads {list(begins)} + {list(ends)} leave a negative output size {lengths}")
    return tuple(strides), tuple(dilations), tuple(full), tuple(begins), tuple(lengths)


@register("ConvTranspose")
def conv_transpose(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ConvTranspose: out = stride * (in - 1) + output_padding + dilation * (k - 1) + 1 - pads."""
    x, w = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input W")
    group = int(ctx.attr("group", 1))
    if (
        x.ndim < 3
        or w.ndim != x.ndim
        or group < 1
        or x.shape[1] != w.shape[0]
        or w.shape[0] % group
    ):
        raise ctx.fail(
            f"X {list(x.shape)} must be (N, C, *spatial) and W {list(w.shape)} (C, M/group, "
            f"*kernel) with C divisible by group={group}"
        )
    strides, dilations, full, begins, lengths = transpose_geometry(ctx, x.shape[2:], w.shape[2:])
    work = accumulation_dtype(x.dtype)
    patches = _transpose_patches(x.astype(work, copy=False), w.astype(work, copy=False), group)
    y = _crop_or_extend(scatter_patches(patches, full, strides, dilations), begins, lengths)
    channels = w.shape[1] * group
    return [_add_bias(ctx, y, _optional(inputs, 2), channels).astype(x.dtype, copy=False)]


def _transpose_patches(x: np.ndarray, w: np.ndarray, group: int) -> np.ndarray:
    """patches[n, m, k, i] = sum_{c in group(m)} X[n, c, i] * W[c, m, k], shaped (N, M, *k, *in)."""
    batch, channels = x.shape[:2]
    spatial, kernel = x.shape[2:], w.shape[2:]
    per_group = w.shape[1]
    columns = x.reshape(batch, group, channels // group, math.prod(spatial))  # (N, G, C/G, P)
    filters = w.reshape(group, channels // group, per_group * math.prod(kernel))
    patches = np.matmul(filters.transpose(0, 2, 1), columns)  # (N, G, M/G * K, P)
    return patches.reshape(batch, group * per_group, *kernel, *spatial)


# -- DeformConv ------------------------------------------------------------------------------


@register("DeformConv", since=19)
def deform_conv(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DeformConv: Y[n, m, o] = sum_{c, k} W[m, c, k] * mask[n, g(c), k, o] *
    bilinear(X[n, c], o * stride - pad_begin + k * dilation + offset[n, g(c), k, :, o])."""
    x, w = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input W")
    offset = as_array(_optional(inputs, 2), ctx, "input offset")
    group = int(ctx.attr("group", 1))
    offset_groups = int(ctx.attr("offset_group", 1))
    _check_conv_shapes(ctx, x, w, group)
    rank, batch, channels = x.ndim - 2, x.shape[0], x.shape[1]
    kernel = w.shape[2:]
    geometry = window_geometry(ctx, x.shape[2:], kernel)
    out_shape = geometry.output_shape(x.shape[2:])
    kernel_size, positions = math.prod(kernel), math.prod(out_shape)
    if channels % offset_groups or offset.shape != (
        batch,
        offset_groups * kernel_size * rank,
        *out_shape,
    ):
        raise ctx.fail(
            f"offset {list(offset.shape)} must be (N, offset_group * prod(kernel) * {rank}, "
            f"*{list(out_shape)}) with offset_group={offset_groups} dividing C={channels}"
        )
    mask = _deform_mask(ctx, _optional(inputs, 4), batch, offset_groups, kernel_size, out_shape)
    work = accumulation_dtype(x.dtype)
    points = _deform_points(geometry, out_shape, offset.astype(np.float64), offset_groups)
    sampled = _sample_zero_padded(x.astype(work), points, offset_groups)  # (N, G', C/G', K*P)
    sampled = sampled.reshape(
        batch, offset_groups, channels // offset_groups, kernel_size, positions
    )
    sampled = sampled * mask.astype(work).reshape(batch, offset_groups, 1, kernel_size, positions)
    columns = sampled.reshape(batch, group, (channels // group) * kernel_size, positions)
    filters = w.astype(work).reshape(group, w.shape[0] // group, (channels // group) * kernel_size)
    y = np.matmul(filters, columns).reshape(batch, w.shape[0], *out_shape)
    return [_add_bias(ctx, y, _optional(inputs, 3), w.shape[0]).astype(x.dtype, copy=False)]


def _deform_mask(
    ctx: KernelContext, mask: Value, batch: int, groups: int, kernel_size: int, out: Sequence[int]
) -> np.ndarray:
    if mask is None:
        return np.ones((batch, groups, kernel_size, math.prod(out)))
    array = as_array(mask, ctx, "input mask")
    if array.shape != (batch, groups * kernel_size, *out):
        raise ctx.fail(
            f"mask {list(array.shape)} must be (N, offset_group * prod(kernel), *{list(out)})"
        )
    return array.reshape(batch, groups, kernel_size, math.prod(out))


def _deform_points(
    geometry: WindowGeometry, out_shape: Sequence[int], offset: np.ndarray, groups: int
) -> np.ndarray:
    """Sampling coordinates (N, G', rank, K * P): the regular grid of each kernel tap, moved."""
    rank, batch = len(out_shape), offset.shape[0]
    kernel_size = math.prod(geometry.kernel)
    taps = np.stack(np.meshgrid(*(np.arange(k) for k in geometry.kernel), indexing="ij"))
    starts = np.stack(np.meshgrid(*(np.arange(o) for o in out_shape), indexing="ij"))
    taps = taps.reshape(rank, kernel_size, 1) * np.array(geometry.dilations).reshape(rank, 1, 1)
    positions = math.prod(out_shape)
    starts = starts.reshape(rank, 1, positions) * np.array(geometry.strides).reshape(rank, 1, 1)
    grid = taps + starts - np.array(geometry.pads_begin).reshape(rank, 1, 1)  # (rank, K, P)
    moved = offset.reshape(batch, groups, kernel_size, rank, positions).transpose(0, 1, 3, 2, 4)
    return (grid + moved).reshape(batch, groups, rank, kernel_size * positions)


def _sample_zero_padded(x: np.ndarray, points: np.ndarray, groups: int) -> np.ndarray:
    """Multilinear interpolation of x (N, C, *spatial) at points (N, G, rank, Q), zero outside;
    each group of C/G channels reads its own points. Returns (N, G, C/G, Q)."""
    batch, channels = x.shape[:2]
    spatial = x.shape[2:]
    flat = x.reshape(batch, groups, channels // groups, math.prod(spatial))
    floors = np.floor(points)
    fractions = points - floors
    result = np.zeros((batch, groups, channels // groups, points.shape[-1]), dtype=x.dtype)
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        weight = np.ones(points.shape[:2] + points.shape[3:])
        index = np.zeros(weight.shape, dtype=np.int64)
        inside = np.ones(weight.shape, dtype=bool)
        for axis, (size, step) in enumerate(zip(spatial, corner, strict=True)):
            position = floors[:, :, axis] + step
            weight = weight * (fractions[:, :, axis] if step else 1 - fractions[:, :, axis])
            inside &= (position >= 0) & (position < size)
            index = index * size + np.clip(position, 0, size - 1).astype(np.int64)
        gathered = np.take_along_axis(flat, index[:, :, None, :], axis=3)
        result += gathered * np.where(inside, weight, 0.0)[:, :, None, :].astype(x.dtype)
    return result


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Along each spatial axis a window of dilated extent ext = dil * (k - 1) + 1 slides over the
# padded input: out = floor((in + pad_begin + pad_end - ext) / stride) + 1, or ceil(in / stride)
# with SAME padding. Pooling (`sod2.ops.pooling`) shares `window_output_dims`, ceil_mode included.


def window_output_dims(
    ctx: ShapeContext, spatial: Sequence[Dim], kernel: Sequence[Dim], *, ceil_mode: bool = False
) -> list[Dim]:
    """out = floor((in + pads - dil*(k-1) - 1)/stride) + 1 per axis (ceil_mode: see
    `_ceil_mode_extent`); SAME padding: out = ceil(in/stride); VALID: no padding."""
    rank = len(spatial)
    strides = spatial_ints(ctx, "strides", rank, 1)
    dilations = spatial_ints(ctx, "dilations", rank, 1)
    if min(strides + dilations, default=1) < 1:
        raise ctx.fail(f"strides {list(strides)} and dilations {list(dilations)} must be >= 1")
    auto_pad = _auto_pad(ctx)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return [ceil_div(size, stride) for size, stride in zip(spatial, strides, strict=True)]
    pads = (0,) * (2 * rank)
    if auto_pad != "VALID":
        pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
    if min(pads, default=0) < 0:
        raise ctx.fail(f"pads {list(pads)} must be >= 0")
    out: list[Dim] = []
    for axis, (size, k, stride, dilation) in enumerate(
        zip(spatial, kernel, strides, dilations, strict=True)
    ):
        begin, end = pads[axis], pads[rank + axis]
        extent = dilation * (k - 1) + 1
        span = size + begin + end - extent
        assume_nonnegative(ctx, span, f"the kernel fits the padded input along spatial axis {axis}")
        if ceil_mode and isinstance(extent, int):
            out.append(_ceil_mode_extent(size + begin, stride, end - extent))
        elif ceil_mode:
            raise ctx.fail("ceil_mode needs a static kernel_shape")
        else:
            out.append(floor_div(span, stride) + 1)
    return out


def assume_nonnegative(ctx: ShapeContext, extent: Dim, why: str) -> None:
    """Record `extent >= 0` unless it holds for every binding (a ShapeError when it never does).

    Proof: sympy's, or `extent` does not decrease as any symbol grows and is >= 0 with every
    symbol at its least value 1 (so `floor((H + 1)/2) - 1 >= 0` needs no runtime check)."""
    if isinstance(extent, int) or not _nondecreasing(extent) or _at_least_binding(extent) < 0:
        ctx.assume(sympy.Ge(extent, 0), why)


def _at_least_binding(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with every symbol at its least value, 1."""
    return expr.xreplace({symbol: sympy.Integer(1) for symbol in expr.free_symbols})


def _nondecreasing(expr: sympy.Expr) -> bool:
    """True when `expr` provably does not decrease as any of its (positive) symbols grows."""
    if expr.is_Number or expr.is_Symbol:
        return True
    if isinstance(expr, sympy.Add | sympy.Min | sympy.Max | sympy.floor | sympy.ceiling):
        return all(_nondecreasing(arg) for arg in expr.args)
    if isinstance(expr, sympy.Mul):
        coefficient, factors = expr.as_coeff_mul()
        if coefficient < 0:
            return False
        return all(f.is_Symbol for f in factors) or (
            len(factors) == 1 and _nondecreasing(factors[0])
        )
    return False


def _ceil_mode_extent(limit: Dim, stride: int, excess: int) -> Dim:
    """ceil_mode: c + 1 windows, c = ceil((limit + excess)/stride) with limit = in + pad_begin and
    excess = pad_end - ext, less a last window that starts at or past limit, i.e.
    out = max(c, min(c + 1, ceil(limit/stride))). ceil is monotone, so the sign of the constant
    offsets decides both: c + 1 when excess + stride <= 0, ceil(limit/stride) when
    excess <= 0 < excess + stride, else c."""
    if excess + stride <= 0:
        return ceil_div(limit + excess, stride) + 1
    if excess <= 0:
        return ceil_div(limit, stride)
    return ceil_div(limit + excess, stride)


def _kernel_dims(ctx: ShapeContext, weight_kernel: Sequence[Dim]) -> list[Dim]:
    """The kernel extents: W's spatial dims, which `kernel_shape` (if given) must equal."""
    given = ctx.attr("kernel_shape")
    if given is None:
        return list(weight_kernel)
    if len(given) != len(weight_kernel):
        raise ctx.fail(f"kernel_shape {list(given)} differs in rank from W's {list(weight_kernel)}")
    for dim, k in zip(weight_kernel, given, strict=True):
        ctx.same(dim, int(k), "kernel_shape = W's spatial dims")
    return [int(k) for k in given]


def _operands(
    ctx: ShapeContext, x: TensorFact, w: TensorFact
) -> tuple[tuple[Dim, ...], tuple[Dim, ...], int] | None:
    """X's dims (N, C, *spatial), W's dims (same rank) and group; None when a rank is unknown."""
    x_dims, w_dims = x.shape.dims, w.shape.dims
    if x_dims is None or w_dims is None:
        return None
    if len(x_dims) < 3 or len(w_dims) != len(x_dims):
        raise ctx.fail(f"X {x.shape} must be (N, C, *spatial) and W {w.shape} of the same rank")
    group = int(ctx.attr("group", 1))
    if group < 1:
        raise ctx.fail(f"group must be positive, got {group}")
    return x_dims, w_dims, group


def _unknown_rank_output(ctx: ShapeContext, x: TensorFact, w: TensorFact) -> Shape:
    """The output when X's or W's rank is unknown: the other's rank, unknown dims."""
    known = x.shape.dims if x.shape.dims is not None else w.shape.dims
    return ctx.unknown_shape(None if known is None else len(known), "convolution of unknown rank")


def _conv_output(ctx: ShapeContext, x: TensorFact, w: TensorFact) -> Shape:
    """Conv: [N, M, *out] for X [N, C, *in] and W [M, C/group, *k]: C = W[1] * group, group | M."""
    operands = _operands(ctx, x, w)
    if operands is None:
        return _unknown_rank_output(ctx, x, w)
    x_dims, w_dims, group = operands
    ctx.same(x_dims[1], w_dims[1] * group, f"X's channels = W's dim 1 * group ({group})")
    exact_div(ctx, w_dims[0], group, f"W's output channels divisible by group ({group})")
    kernel = _kernel_dims(ctx, w_dims[2:])
    return Shape([x_dims[0], w_dims[0], *window_output_dims(ctx, x_dims[2:], kernel)])


def _check_bias(ctx: ShapeContext, bias: TensorFact | None, output: Shape) -> None:
    """B holds one value per output channel."""
    if bias is None or bias.shape.dims is None or output.dims is None:
        return
    if len(bias.shape.dims) != 1:
        raise ctx.fail(f"bias B {bias.shape} must be 1-D")
    ctx.same(bias.shape.dims[0], output.dims[1], "one bias value per output channel")


@shape_rule("Conv", op_class=OpClass.ISDOS)
def conv_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Conv: [N, M, *out], out = floor((in + pads - dil*(k-1) - 1)/stride) + 1 (SAME:
    ceil(in/stride))."""
    shape = _conv_output(ctx, inputs[0], inputs[1])
    _check_bias(ctx, optional(inputs, 2), shape)
    return [TensorFact(inputs[0].dtype, shape)]


@shape_rule("ConvInteger", since=10, op_class=OpClass.ISDOS)
def conv_integer_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ConvInteger: Conv's shape, int32."""
    return [TensorFact(DType.INT32, _conv_output(ctx, inputs[0], inputs[1]))]


@shape_rule("QLinearConv", since=10, op_class=OpClass.ISDOS)
def qlinear_conv_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """QLinearConv: Conv's shape of x (input 0) and w (input 3), y_zero_point's element type."""
    shape = _conv_output(ctx, inputs[0], inputs[3])
    _check_bias(ctx, optional(inputs, 8), shape)
    y_zero = optional(inputs, 7)
    return [TensorFact(inputs[0].dtype if y_zero is None else y_zero.dtype, shape)]


@shape_rule("ConvTranspose", op_class=OpClass.ISDOS)
def conv_transpose_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ConvTranspose: [N, W[1] * group, *out], out = stride*(in-1) + output_padding +
    dil*(k-1) + 1 - pads; `output_shape` gives out itself, SAME padding out = in * stride."""
    x, w = inputs[0], inputs[1]
    operands = _operands(ctx, x, w)
    if operands is None:
        return [TensorFact(x.dtype, _unknown_rank_output(ctx, x, w))]
    x_dims, w_dims, group = operands
    ctx.same(x_dims[1], w_dims[0], "X's channels = W's dim 0")
    exact_div(ctx, w_dims[0], group, f"W's input channels divisible by group ({group})")
    spatial = _transposed_extents(ctx, x_dims[2:], _kernel_dims(ctx, w_dims[2:]))
    shape = Shape([x_dims[0], w_dims[1] * group, *spatial])
    _check_bias(ctx, optional(inputs, 2), shape)
    return [TensorFact(x.dtype, shape)]


def _transposed_extents(
    ctx: ShapeContext, spatial: Sequence[Dim], kernel: Sequence[Dim]
) -> list[Dim]:
    """ConvTranspose's spatial output extents (see `conv_transpose_shape`)."""
    rank = len(spatial)
    requested = ctx.attr("output_shape")
    if requested is not None:
        wanted: list[Dim] = [int(v) for v in requested][-rank:]
        if len(wanted) != rank:
            raise ctx.fail(f"output_shape {list(requested)} needs {rank} spatial dims")
        return wanted
    strides = spatial_ints(ctx, "strides", rank, 1)
    auto_pad = _auto_pad(ctx)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return [size * stride for size, stride in zip(spatial, strides, strict=True)]
    dilations = spatial_ints(ctx, "dilations", rank, 1)
    extra = spatial_ints(ctx, "output_padding", rank, 0)
    pads = (0,) * (2 * rank)
    if auto_pad != "VALID":
        pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
    out: list[Dim] = []
    for axis, (size, k) in enumerate(zip(spatial, kernel, strict=True)):
        full = strides[axis] * (size - 1) + dilations[axis] * (k - 1) + 1
        length = full + extra[axis] - pads[axis] - pads[rank + axis]
        assume_nonnegative(ctx, length, f"pads leave a non-negative output along axis {axis}")
        out.append(length)
    return out


@shape_rule("DeformConv", since=19, op_class=OpClass.ISDOS)
def deform_conv_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DeformConv: Conv's [N, M, *out]; offset is [N, offset_group * prod(k) * rank, *out]."""
    shape = _conv_output(ctx, inputs[0], inputs[1])
    offset = optional(inputs, 2)
    dims = shape.dims
    if offset is not None and dims is not None and offset.shape.dims is not None:
        if len(offset.shape.dims) != len(dims):
            raise ctx.fail(f"offset {offset.shape} must have the rank of the output {shape}")
        for axis in (0, *range(2, len(dims))):
            ctx.same(offset.shape.dims[axis], dims[axis], f"offset's dim {axis} = the output's")
    _check_bias(ctx, optional(inputs, 3), shape)
    return [TensorFact(inputs[0].dtype, shape)]
