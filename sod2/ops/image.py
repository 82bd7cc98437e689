"""Image operators: Resize, Upsample, DepthToSpace, SpaceToDepth, GridSample, RoiAlign,
AffineGrid, Col2Im, CenterCropPad.

Resize is separable: it resizes one axis at a time. Along an axis, every output index x maps to
a source coordinate x' (the `coordinate_transformation_mode`), and the output is a weighted sum
of the input pixels around x'. Those weights form a small (out, in) matrix, so resizing an axis
is one `tensordot`; nearest mode is one `take` instead, which keeps integer types exact.

Where ONNX's rules need care:
- sizes give scale = out / in; scales give out = floor(in * scale) and keep the given scale for
  the coordinate mapping (so half_pixel uses the float scale, not out / in);
- the filter taps are the n pixels nearest x' (ties to the left); pixels past an edge repeat the
  edge pixel, unless `exclude_outside`, which drops them and renormalizes the rest;
- `antialias` (opset 18) stretches the linear / cubic filter by 1 / scale when downscaling and
  normalizes its taps to sum 1;
- tf_crop_and_resize maps into `roi` and writes `extrapolation_value` where x' falls outside
  [0, in - 1]; `keep_aspect_ratio_policy` rounds out = round_half_up(scale * in) with one scale;
- with scales, the resized length in align_corners, pytorch_half_pixel, half_pixel_symmetric
  and tf_crop_and_resize is the fractional in * scale, as in the onnx reference and its node
  cases (onnxruntime uses the floored output length there);
- Upsample and Resize-10 predate these modes: asymmetric coordinates and a nearest rule that
  floors when upscaling and takes the ceiling when downscaling (onnxruntime's "simple" rule).
GridSample, RoiAlign and DeformConv sample at fractional points; here that is done by gathering
the corner pixels of every point at once and summing them with their interpolation weights.
GridSample's cubic mode with border padding is refused: the onnx reference clamps the sampling
point, onnxruntime (like PyTorch) clamps each of the 4x4 taps, and the spec does not settle it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import (
    Element,
    dims_or_unknown,
    exact_div,
    optional,
    static_length,
    value_dims,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import floor_div
from sod2.ir.dims import Dim
from sod2.ir.types import Shape
from sod2.ops.conv import scatter_patches, spatial_ints, window_output_dims
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis

_COORDINATE_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
    "tf_half_pixel_for_nn",
)
_NEAREST_RULES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "round_prefer_floor": lambda x, scale: np.ceil(x - 0.5),
    "round_prefer_ceil": lambda x, scale: np.floor(x + 0.5),
    "floor": lambda x, scale: np.floor(x),
    "ceil": lambda x, scale: np.ceil(x),
    "legacy": lambda x, scale: np.floor(x) if scale >= 1 else np.ceil(x),
}


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _present(value: Value) -> bool:
    """An optional input that is given and not the empty tensor that stands for 'absent'."""
    return value is not None and np.asarray(value).size > 0


# -- Resize: the plan of one axis ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AxisResize:
    """How one axis is resized: sizes, the scale of the coordinate mapping, the crop region."""

    axis: int
    in_size: int
    out_size: int
    scale: float
    roi: tuple[float, float] = (0.0, 1.0)
    exact_length: bool = False
    """True when `sizes` gave the output length itself (scale = out / in)."""

    @property
    def resized_length(self) -> float:
        """The output length before flooring: out for sizes, scale * in (fractional) for scales."""
        return float(self.out_size) if self.exact_length else self.scale * self.in_size

    @property
    def is_identity(self) -> bool:
        """True when resizing leaves the axis unchanged (every mode maps x to x then)."""
        return self.out_size == self.in_size and self.scale == 1.0 and self.roi == (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class ResizeMode:
    """The attributes of a Resize node that shape its filter."""

    mode: str = "nearest"
    coordinates: str = "half_pixel"
    nearest: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


def source_coordinates(plan: AxisResize, mode: str) -> np.ndarray:
    """x' for every output index x along one axis, by `coordinate_transformation_mode`."""
    x = np.arange(plan.out_size, dtype=np.float64)
    in_size, length, scale = plan.in_size, plan.resized_length, plan.scale
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - plan.out_size / length)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if length != 1 else np.zeros_like(x)
    if mode == "align_corners":
        return x * (in_size - 1) / (length - 1) if length != 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    start, end = plan.roi  # tf_crop_and_resize
    if length != 1:
        return x * (end - start) * (in_size - 1) / (length - 1) + start * (in_size - 1)
    return np.full_like(x, 0.5 * (start + end) * (in_size - 1))


def _linear_kernel(t: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(t), 0, 1)


def _cubic_kernel(a: float) -> Callable[[np.ndarray], np.ndarray]:
    """Keys' cubic convolution kernel with coefficient a (support 2)."""

    def kernel(t: np.ndarray) -> np.ndarray:
        t = np.abs(t)
        inner = ((a + 2) * t - (a + 3)) * t * t + 1
        outer = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return np.where(t <= 1, inner, np.where(t < 2, outer, 0.0))

    return kernel


def filter_matrix(coords: np.ndarray, plan: AxisResize, mode: ResizeMode) -> np.ndarray:
    """W (out, in): out[x] = sum_i W[x, i] in[i], the taps of x' weighted by the filter."""
    kernel, support = (
        (_linear_kernel, 1.0) if mode.mode == "linear" else (_cubic_kernel(mode.cubic_a), 2.0)
    )
    stretch = min(plan.scale, 1.0) if mode.antialias else 1.0
    first = math.floor(-support / stretch) + 1
    count = 2 - 2 * first
    floors = np.floor(coords)
    left = np.where(coords == floors, coords - 1, floors)  # ties go to the pixel on the left
    taps = (left[:, None] + first + np.arange(count)).astype(np.int64)
    weights = kernel((taps - coords[:, None]) * stretch)
    if mode.antialias:
        weights = weights / weights.sum(axis=1, keepdims=True)
    if mode.exclude_outside:
        weights = np.where((taps >= 0) & (taps < plan.in_size), weights, 0.0)
        totals = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(totals == 0, 1.0, totals)
    matrix = np.zeros((plan.out_size, plan.in_size))
    rows = np.broadcast_to(np.arange(plan.out_size)[:, None], taps.shape)
    np.add.at(matrix, (rows, np.clip(taps, 0, plan.in_size - 1)), weights)
    return matrix


def resize_axis(values: np.ndarray, plan: AxisResize, mode: ResizeMode) -> np.ndarray:
    """Resize `values` along `plan.axis` (float64 values for linear and cubic)."""
    coords = source_coordinates(plan, mode.coordinates)
    if mode.mode == "nearest":
        nearest = _NEAREST_RULES[mode.nearest](coords, plan.scale)
        indices = np.clip(nearest, 0, plan.in_size - 1).astype(np.intp)
        result = np.take(values, indices, axis=plan.axis)
    else:
        matrix = filter_matrix(coords, plan, mode)
        result = np.moveaxis(np.tensordot(values, matrix, axes=([plan.axis], [1])), -1, plan.axis)
    if mode.coordinates == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > plan.in_size - 1)
        if outside.any():
            shape = [1] * values.ndim
            shape[plan.axis] = plan.out_size
            fill = np.asarray(mode.extrapolation).astype(result.dtype)
            result = np.where(outside.reshape(shape), fill, result)
    return result


def resize_array(x: np.ndarray, plans: Sequence[AxisResize], mode: ResizeMode) -> np.ndarray:
    """Resize every planned axis in turn; linear and cubic run in float64."""
    values = x if mode.mode == "nearest" else x.astype(np.float64)
    for plan in plans:
        if not plan.is_identity or mode.coordinates == "tf_crop_and_resize":
            values = resize_axis(values, plan, mode)
    return values.astype(x.dtype, copy=False)


# -- Resize: reading the node -----------------------------------------------------------------


def _resize_mode(ctx: KernelContext) -> ResizeMode:
    mode = ResizeMode(
        mode=str(ctx.attr("mode", "nearest")),
        coordinates=str(ctx.attr("coordinate_transformation_mode", "half_pixel")),
        nearest=str(ctx.attr("nearest_mode", "round_prefer_floor")),
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        antialias=bool(ctx.attr("antialias", 0)),
        extrapolation=float(ctx.attr("extrapolation_value", 0.0)),
    )
    if mode.mode not in ("nearest", "linear", "cubic"):
        raise ctx.fail(f"mode {mode.mode!r} is not nearest, linear or cubic")
    if mode.coordinates not in _COORDINATE_MODES:
        raise ctx.fail(f"coordinate_transformation_mode {mode.coordinates!r} is unknown")
    if mode.nearest not in _NEAREST_RULES or mode.nearest == "legacy":
        raise ctx.fail(f"nearest_mode {mode.nearest!r} is unknown")
    return mode


def _resize_axes(ctx: KernelContext, rank: int) -> list[int]:
    axes = ctx.attr("axes")
    if axes is None:
        return list(range(rank))
    return [normalize_axis(ctx, int(a), rank, what="axes value") for a in axes]


def _floats(ctx: KernelContext, value: Value, count: int, what: str) -> list[float]:
    array = as_array(value, ctx, what).astype(np.float64).reshape(-1)
    if array.size != count:
        raise ctx.fail(f"{what} has {array.size} values, expected {count}")
    return [float(v) for v in array]


def _plans_from_scales(
    ctx: KernelContext,
    x: np.ndarray,
    axes: list[int],
    scales: list[float],
    rois: list[tuple[float, float]],
) -> list[AxisResize]:
    """out = floor(in * scale), the scale kept for the coordinate mapping."""
    if min(scales, default=1.0) <= 0:
        raise ctx.fail(f"scales {scales} must be positive")
    return [
        AxisResize(axis, x.shape[axis], math.floor(x.shape[axis] * scale), scale, roi)
        for axis, scale, roi in zip(axes, scales, rois, strict=True)
    ]


def _plans_from_sizes(
    ctx: KernelContext,
    x: np.ndarray,
    axes: list[int],
    sizes: list[int],
    rois: list[tuple[float, float]],
) -> list[AxisResize]:
    """scale = out / in, or one scale for all axes by keep_aspect_ratio_policy."""
    if min(sizes, default=1) < 0:
        raise ctx.fail(f"sizes {sizes} must be non-negative")
    inputs = [x.shape[axis] for axis in axes]
    if 0 in inputs:
        raise ctx.fail(f"cannot resize empty axes of input {list(x.shape)} to sizes {sizes}")
    policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch"))
    ratios = [out / size for out, size in zip(sizes, inputs, strict=True)]
    if policy == "stretch":
        return [
            AxisResize(axis, size, out, ratio, roi, exact_length=True)
            for axis, size, out, ratio, roi in zip(axes, inputs, sizes, ratios, rois, strict=True)
        ]
    if policy not in ("not_larger", "not_smaller"):
        raise ctx.fail(f"keep_aspect_ratio_policy {policy!r} is unknown")
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    return [
        AxisResize(axis, size, int(scale * size + 0.5), scale, roi)
        for axis, size, roi in zip(axes, inputs, rois, strict=True)
    ]


def _regions(
    ctx: KernelContext, roi: Value, count: int, mode: ResizeMode
) -> list[tuple[float, float]]:
    """[start1 .. startN, end1 .. endN] as (start, end) pairs; only tf_crop_and_resize uses them."""
    if mode.coordinates != "tf_crop_and_resize":
        return [(0.0, 1.0)] * count
    if not _present(roi):
        raise ctx.fail("tf_crop_and_resize needs the roi input")
    values = _floats(ctx, roi, 2 * count, "roi")
    return list(zip(values[:count], values[count:], strict=True))


@register("Resize", since=11)
def resize(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Resize: out[x] = sum_i w(x' - i) in[i] along each axis, x' = the source coordinate of x."""
    x = as_array(inputs[0], ctx, "input X")
    roi, scales, sizes = (_optional(inputs, i) for i in (1, 2, 3))
    mode = _resize_mode(ctx)
    if mode.mode != "nearest" and x.dtype.kind not in "f":
        raise ctx.unsupported(f"{mode.mode} resize of element type {x.dtype}")
    axes = _resize_axes(ctx, x.ndim)
    rois = _regions(ctx, roi, len(axes), mode)
    if _present(scales) == _present(sizes):
        raise ctx.fail("exactly one of the scales and sizes inputs must be given")
    if _present(scales):
        plans = _plans_from_scales(ctx, x, axes, _floats(ctx, scales, len(axes), "scales"), rois)
    else:
        wanted = [int(v) for v in _floats(ctx, sizes, len(axes), "sizes")]
        plans = _plans_from_sizes(ctx, x, axes, wanted, rois)
    return [resize_array(x, plans, mode)]


def _legacy_resize(ctx: KernelContext, x: np.ndarray, scales: list[float]) -> np.ndarray:
    """Upsample / Resize-10: out = floor(in * scale), asymmetric coordinates x' = x / scale."""
    if len(scales) != x.ndim:
        raise ctx.fail(f"scales {scales} must have one value per dim of input {list(x.shape)}")
    mode_name = str(ctx.attr("mode", "nearest"))
    if mode_name == "bilinear":
        mode_name = "linear"
    if mode_name not in ("nearest", "linear"):
        raise ctx.fail(f"mode {mode_name!r} is not nearest or linear")
    if mode_name == "linear" and x.dtype.kind not in "f":
        raise ctx.unsupported(f"linear upsampling of element type {x.dtype}")
    mode = ResizeMode(mode=mode_name, coordinates="asymmetric", nearest="legacy")
    plans = _plans_from_scales(ctx, x, list(range(x.ndim)), scales, [(0.0, 1.0)] * x.ndim)
    return resize_array(x, plans, mode)


@register("Resize", since=10)
def resize_10(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Resize-10: Upsample's semantics, scales as the second input."""
    x = as_array(inputs[0], ctx, "input X")
    return [_legacy_resize(ctx, x, _floats(ctx, _optional(inputs, 1), x.ndim, "scales"))]


@register("Upsample", since=7)
def upsample(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Upsample: out = floor(in * scale); scales an attribute (opset 7) or an input (opset 9)."""
    x = as_array(inputs[0], ctx, "input X")
    if ctx.opset < 9:
        scales = [float(s) for s in ctx.attr("scales", ())]
    else:
        scales = _floats(ctx, _optional(inputs, 1), x.ndim, "scales")
    return [_legacy_resize(ctx, x, scales)]


# -- DepthToSpace, SpaceToDepth ----------------------------------------------------------------


def _block_size(ctx: KernelContext, x: np.ndarray) -> int:
    if x.ndim != 4:
        raise ctx.fail(f"input {list(x.shape)} must be (N, C, H, W)")
    block = int(ctx.attr("blocksize", 0))
    if block < 1:
        raise ctx.fail(f"blocksize must be positive, got {block}")
    return block


def _block_mode(ctx: KernelContext) -> str:
    mode = str(ctx.attr("mode", "DCR"))
    if mode not in ("DCR", "CRD"):
        raise ctx.fail(f"mode {mode!r} is not DCR or CRD")
    return mode


@register("DepthToSpace")
def depth_to_space(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DepthToSpace: (N, C, H, W) -> (N, C / b^2, H * b, W * b); the channel splits as
    (b, b, C / b^2) in DCR mode and as (C / b^2, b, b) in CRD mode."""
    x = as_array(inputs[0], ctx, "input")
    block = _block_size(ctx, x)
    n, c, h, w = x.shape
    if c % (block * block):
        raise ctx.fail(f"channels {c} are not divisible by blocksize^2 = {block * block}")
    depth = c // (block * block)
    if _block_mode(ctx) == "DCR":
        split = x.reshape(n, block, block, depth, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        split = x.reshape(n, depth, block, block, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [split.reshape(n, depth, h * block, w * block)]


@register("SpaceToDepth")
def space_to_depth(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SpaceToDepth: (N, C, H, W) -> (N, C * b^2, H / b, W / b), the inverse of DepthToSpace
    (DCR: channel = (row, column, c); CRD, opset 28: channel = (c, row, column))."""
    x = as_array(inputs[0], ctx, "input")
    block = _block_size(ctx, x)
    n, c, h, w = x.shape
    if h % block or w % block:
        raise ctx.fail(f"height {h} and width {w} must be divisible by blocksize {block}")
    blocks = x.reshape(n, c, h // block, block, w // block, block)
    order = (0, 3, 5, 1, 2, 4) if _block_mode(ctx) == "DCR" else (0, 1, 3, 5, 2, 4)
    return [blocks.transpose(order).reshape(n, c * block * block, h // block, w // block)]


# -- CenterCropPad, Col2Im -------------------------------------------------------------------


@register("CenterCropPad", since=18)
def center_crop_pad(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """CenterCropPad: per axis, crop from (in - out) // 2 or zero-pad (out - in) // 2 in front."""
    x = as_array(inputs[0], ctx, "input_data")
    targets = [int(v) for v in as_array(inputs[1], ctx, "shape").reshape(-1)]
    axes = _resize_axes(ctx, x.ndim)
    if len(targets) != len(axes):
        raise ctx.fail(f"shape {targets} must have one value per axis of {axes}")
    out_shape = list(x.shape)
    source = [slice(None)] * x.ndim
    target = [slice(None)] * x.ndim
    for axis, size in zip(axes, targets, strict=True):
        if size < 0:
            raise ctx.fail(f"shape {targets} must be non-negative")
        have = x.shape[axis]
        out_shape[axis] = size
        if size < have:
            start = (have - size) // 2
            source[axis] = slice(start, start + size)
        elif size > have:
            start = (size - have) // 2
            target[axis] = slice(start, start + have)
    result = np.zeros(out_shape, dtype=x.dtype)
    result[tuple(target)] = x[tuple(source)]
    return [result]


@register("Col2Im", since=18)
def col2im(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Col2Im: image[n, c, b * s + k * d - pad] += input[n, c * K + k, b], summed over blocks b."""
    columns = as_array(inputs[0], ctx, "input")
    image = [int(v) for v in as_array(inputs[1], ctx, "image_shape").reshape(-1)]
    kernel = [int(v) for v in as_array(inputs[2], ctx, "block_shape").reshape(-1)]
    rank = len(image)
    if len(kernel) != rank or columns.ndim != 3:
        raise ctx.fail(
            f"input {list(columns.shape)} must be (N, C * prod(block_shape), L) and block_shape "
            f"{kernel} must match image_shape {image}"
        )
    strides = spatial_ints(ctx, "strides", rank, 1)
    dilations = spatial_ints(ctx, "dilations", rank, 1)
    pads = spatial_ints(ctx, "pads", rank, 0, length=2 * rank)
    blocks = [
        (size + pads[i] + pads[rank + i] - d * (k - 1) - 1) // s + 1
        for i, (size, k, d, s) in enumerate(zip(image, kernel, dilations, strides, strict=True))
    ]
    batch, rows, length = columns.shape
    if min(blocks) < 1 or math.prod(blocks) != length or rows % math.prod(kernel):
        raise ctx.fail(
            f"input {list(columns.shape)} does not hold {math.prod(blocks)} blocks {blocks} of "
            f"kernel {kernel} for image {image}"
        )
    patches = columns.reshape(batch, rows // math.prod(kernel), *kernel, *blocks)
    full = [
        (b - 1) * s + d * (k - 1) + 1
        for b, s, d, k in zip(blocks, strides, dilations, kernel, strict=True)
    ]
    summed = scatter_patches(patches, full, strides, dilations)
    result = np.zeros((batch, patches.shape[1], *image), dtype=columns.dtype)
    source, target = [], []
    for size, begin, length_full in zip(image, pads[:rank], full, strict=True):
        high = min(size + begin, length_full)
        source.append(slice(begin, high))
        target.append(slice(0, high - begin))
    result[(slice(None), slice(None), *target)] = summed[(slice(None), slice(None), *source)]
    return [result]


# -- AffineGrid, GridSample ------------------------------------------------------------------


def _normalized_positions(size: int, align_corners: bool) -> np.ndarray:
    """Pixel centers in [-1, 1]: the corner centers at +-1 (align_corners) or the outer edges."""
    if align_corners:
        return np.linspace(-1.0, 1.0, size) if size > 1 else np.full(1, -1.0)
    return (np.arange(size) * 2 + 1) / size - 1


@register("AffineGrid", since=20)
def affine_grid(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """AffineGrid: grid[n, ..., :] = theta[n] @ (x, y[, z], 1) over a normalized pixel grid."""
    theta = as_array(inputs[0], ctx, "theta")
    size = [int(v) for v in as_array(inputs[1], ctx, "size").reshape(-1)]
    spatial = size[2:]
    rank = len(spatial)
    if rank not in (2, 3) or theta.shape[1:] != (rank, rank + 1) or theta.shape[0] != size[0]:
        raise ctx.fail(
            f"theta {list(theta.shape)} must be (N, r, r + 1) for size {size}, r = 2 or 3"
        )
    align = bool(ctx.attr("align_corners", 0))
    axes = [_normalized_positions(s, align) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")  # (D,) H, W
    homogeneous = np.stack([*reversed(mesh), np.ones(spatial)], axis=-1).reshape(-1, rank + 1)
    grid = np.einsum("nij,pj->npi", theta.astype(np.float64), homogeneous)
    return [grid.reshape(size[0], *spatial, rank).astype(theta.dtype)]


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold x back into [low, high] by mirroring at the borders as often as needed."""
    span = high - low
    if span <= 0:
        return np.full_like(x, low)
    below, above = low - x, x - high
    distance = np.where(x < low, below, above)
    folds = np.trunc(distance / span)
    rest = distance - folds * span
    even = folds % 2 == 0
    from_low = np.where(even, low + rest, high - rest)
    from_high = np.where(even, high - rest, low + rest)
    return np.where(x < low, from_low, np.where(x > high, from_high, x))


@dataclass(frozen=True, slots=True)
class SamplingRule:
    """How GridSample reads pixels: interpolation, padding and the pixel-center convention."""

    mode: str
    padding: str
    align_corners: bool

    def borders(self, size: int) -> tuple[float, float]:
        """The coordinate range that counts as inside the image."""
        return (0.0, size - 1.0) if self.align_corners else (-0.5, size - 0.5)


def _grid_taps(coords: np.ndarray, size: int, rule: SamplingRule) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices (..., taps) and weights (..., taps) along one axis, padding applied."""
    low, high = rule.borders(size)
    if rule.mode == "nearest":
        coords = np.rint(coords)
    if rule.padding == "border":
        coords = np.where((coords < low) | (coords > high), np.clip(coords, 0, size - 1), coords)
    elif rule.padding == "reflection":
        coords = _reflect(coords, low, high)
    if rule.mode == "nearest":
        taps = np.trunc(coords)[..., None]
        weights = np.ones_like(taps)
    else:
        start = np.floor(coords)
        t = coords - start
        if rule.mode == "linear":
            taps = start[..., None] + np.arange(2)
            weights = np.stack([1 - t, t], axis=-1)
        else:
            taps = start[..., None] + np.arange(-1, 3)
            weights = _cubic_kernel(-0.75)(taps - coords[..., None])
    return _pad_taps(taps, weights, size, rule)


def _pad_taps(
    taps: np.ndarray, weights: np.ndarray, size: int, rule: SamplingRule
) -> tuple[np.ndarray, np.ndarray]:
    """Move out-of-range taps into the image (border / reflection) or zero their weight."""
    if rule.padding == "zeros":
        inside = (taps >= 0) & (taps < size)
        return np.clip(taps, 0, size - 1).astype(np.int64), np.where(inside, weights, 0.0)
    if rule.padding == "border":
        return np.clip(taps, 0, size - 1).astype(np.int64), weights
    low, high = rule.borders(size)
    reflected = np.trunc(_reflect(taps, low, high))
    return np.clip(reflected, 0, size - 1).astype(np.int64), weights


def _grid_mode(ctx: KernelContext) -> str:
    mode = str(ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear"))
    names = {"bilinear": "linear", "bicubic": "cubic"}
    mode = names.get(mode, mode)
    if mode not in ("linear", "nearest", "cubic"):
        raise ctx.fail(f"mode {mode!r} is not linear, nearest or cubic")
    return mode


@register("GridSample", since=16)
def grid_sample(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GridSample: Y[n, c, o] = interpolate X[n, c] at grid[n, o] (normalized, last axis first)."""
    x, grid = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "grid")
    rank = x.ndim - 2
    if rank < 1 or grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != rank:
        raise ctx.fail(
            f"grid {list(grid.shape)} must be (N, *out, {rank}) for input {list(x.shape)}"
        )
    padding = str(ctx.attr("padding_mode", "zeros"))
    if padding not in ("zeros", "border", "reflection"):
        raise ctx.fail(f"padding_mode {padding!r} is not zeros, border or reflection")
    rule = SamplingRule(_grid_mode(ctx), padding, bool(ctx.attr("align_corners", 0)))
    if rule.mode == "cubic" and padding == "border":
        # the onnx reference clamps the sampling point into the image and onnxruntime (like
        # PyTorch) clamps only the 4x4 taps; the spec does not settle which
        raise ctx.unsupported("cubic GridSample with padding_mode border")
    if x.dtype.kind not in "f":
        raise ctx.unsupported(f"GridSample of element type {x.dtype}")
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    out_shape = grid.shape[1:-1]
    points = grid.reshape(batch, math.prod(out_shape), rank).astype(np.float64)
    per_axis = []
    for axis, size in enumerate(spatial):
        normalized = points[..., rank - 1 - axis]  # the grid lists x (the last axis) first
        if rule.align_corners:
            coords = (normalized + 1) / 2 * (size - 1)
        else:
            coords = ((normalized + 1) * size - 1) / 2
        per_axis.append(_grid_taps(coords.astype(np.float32).astype(np.float64), size, rule))
    flat = x.astype(np.float64).reshape(batch, channels, math.prod(spatial))
    values = _gather_weighted(flat, per_axis, spatial)
    return [values.reshape(batch, channels, *out_shape).astype(x.dtype)]


def _gather_weighted(
    flat: np.ndarray, per_axis: list[tuple[np.ndarray, np.ndarray]], spatial: Sequence[int]
) -> np.ndarray:
    """sum over tap combinations of prod(weights) * flat[n, c, linear index], shape (N, C, Q)."""
    result = np.zeros(flat.shape[:2] + per_axis[0][0].shape[1:2], dtype=flat.dtype)
    tap_counts = [taps.shape[-1] for taps, _ in per_axis]
    for combination in itertools.product(*(range(t) for t in tap_counts)):
        index = np.zeros(per_axis[0][0].shape[:2], dtype=np.int64)
        weight = np.ones(index.shape)
        for (taps, weights), size, tap in zip(per_axis, spatial, combination, strict=True):
            index = index * size + taps[..., tap]
            weight = weight * weights[..., tap]
        gathered = np.take_along_axis(flat, index[:, None, :], axis=2)
        result += gathered * weight[:, None, :]
    return result


# -- RoiAlign --------------------------------------------------------------------------------


@register("RoiAlign", since=10)
def roi_align(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RoiAlign: Y[r, c, i, j] = average (or max) of bilinear samples of X[batch[r], c] on a
    regular grid inside bin (i, j) of roi r (corners [x1, y1, x2, y2] * spatial_scale)."""
    x = as_array(inputs[0], ctx, "input X")
    rois = as_array(inputs[1], ctx, "rois")
    batch_indices = as_array(inputs[2], ctx, "batch_indices").reshape(-1).astype(np.int64)
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4 or rois.shape[0] != batch_indices.size:
        raise ctx.fail(
            f"X {list(x.shape)} must be (N, C, H, W), rois {list(rois.shape)} (R, 4) and "
            f"batch_indices {batch_indices.size} values"
        )
    if batch_indices.size and (batch_indices.min() < 0 or batch_indices.max() >= x.shape[0]):
        raise ctx.fail(f"batch_indices must lie in [0, {x.shape[0]})")
    mode = str(ctx.attr("mode", "avg")).lower()
    if mode not in ("avg", "max"):
        raise ctx.fail(f"mode {mode!r} is not avg or max")
    default_transform = "half_pixel" if ctx.opset >= 16 else "output_half_pixel"
    transform = str(ctx.attr("coordinate_transformation_mode", default_transform))
    if transform not in ("half_pixel", "output_half_pixel"):
        raise ctx.fail(f"coordinate_transformation_mode {transform!r} is unknown")
    pooled = (int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1)))
    settings = _RoiSettings(
        pooled,
        int(ctx.attr("sampling_ratio", 0)),
        float(ctx.attr("spatial_scale", 1.0)),
        transform == "half_pixel",
        mode,
    )
    values = x.astype(np.float64)
    pooled_rois = [
        _pool_roi(values[index], roi.astype(np.float64), settings)
        for roi, index in zip(rois, batch_indices, strict=True)
    ]
    shape = (rois.shape[0], x.shape[1], *pooled)
    return [np.array(pooled_rois).reshape(shape).astype(x.dtype)]


@dataclass(frozen=True, slots=True)
class _RoiSettings:
    pooled: tuple[int, int]
    sampling_ratio: int
    spatial_scale: float
    half_pixel: bool
    mode: str


def _roi_samples(start: float, length: float, bins: int, ratio: int) -> tuple[np.ndarray, int]:
    """Sample coordinates (bins, grid) of one axis: grid points per bin at (k + 0.5) / grid."""
    grid = ratio if ratio > 0 else math.ceil(length / bins)
    bin_size = length / bins
    offsets = (np.arange(grid) + 0.5) * bin_size / max(grid, 1)
    return start + np.arange(bins)[:, None] * bin_size + offsets[None, :], grid


def _bilinear_corners(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RoiAlign's clamped bilinear taps: (low, high) indices and (1 - l, l) weights; samples
    beyond [-1, size] get zero weight."""
    outside = (coords < -1.0) | (coords > size)
    clamped = np.maximum(coords, 0.0)
    low = np.trunc(clamped).astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    clamped = np.where(at_edge, low.astype(np.float64), clamped)
    fraction = clamped - low
    weights = np.stack([1 - fraction, fraction], axis=-1)
    return np.stack([low, high], axis=-1), np.where(outside[..., None], 0.0, weights), outside


def _pool_roi(image: np.ndarray, roi: np.ndarray, settings: _RoiSettings) -> np.ndarray:
    """One roi: (C, pooled_h, pooled_w)."""
    offset = 0.5 if settings.half_pixel else 0.0
    x1, y1, x2, y2 = roi * settings.spatial_scale - offset
    width, height = x2 - x1, y2 - y1
    if not settings.half_pixel:
        width, height = max(width, 1.0), max(height, 1.0)
    channels, rows, cols = image.shape
    ys, grid_h = _roi_samples(y1, height, settings.pooled[0], settings.sampling_ratio)
    xs, grid_w = _roi_samples(x1, width, settings.pooled[1], settings.sampling_ratio)
    y_taps, y_weights, y_out = _bilinear_corners(ys, rows)  # (ph, gh, 2)
    x_taps, x_weights, x_out = _bilinear_corners(xs, cols)  # (pw, gw, 2)
    # (ph, gh, pw, gw, 2, 2): the four corners of every sample point
    index = y_taps[:, :, None, None, :, None] * cols + x_taps[None, None, :, :, None, :]
    weight = y_weights[:, :, None, None, :, None] * x_weights[None, None, :, :, None, :]
    weight = np.where((y_out[:, :, None, None] | x_out[None, None])[..., None, None], 0.0, weight)
    corners = image.reshape(channels, -1)[:, index] * weight  # (C, ph, gh, pw, gw, 2, 2)
    if settings.mode == "avg":
        total = corners.sum(axis=(2, 4, 5, 6))
        return total / max(grid_h * grid_w, 1)
    return corners.max(axis=(5, 6)).max(axis=(2, 4))


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Resize's scales are floats, which facts do not carry: they are read from the node's input when
# it is a constant. floor(in * scale) is written as floor(in * p / q) only when the float scale is
# exactly p / q with small p and q (2.0, 0.5, 1.5 ...): the kernel's float product is then exact.
# Any other scale, or a scale known only at run time, gives a fresh symbol.

_EXACT_SCALE_LIMITS = (1024, 64)
"""Largest numerator and denominator of a scale written with integer arithmetic."""


def _constant_floats(ctx: ShapeContext, index: int) -> list[float] | None:
    """The values of the node's input `index` when it is a constant, as float64."""
    tensor = ctx.node.inputs[index] if index < len(ctx.node.inputs) else None
    if tensor is None or not tensor.is_constant:
        return None
    return [float(v) for v in np.asarray(tensor.const_value, dtype=np.float64).reshape(-1)]


def _scaled_extent(ctx: ShapeContext, extent: Dim, scale: float) -> Element:
    """floor(in * scale): computed for an int, floor(in * p / q) for a small exact ratio p / q,
    else None (unknown)."""
    if not scale > 0:
        raise ctx.fail(f"scale {scale} must be positive")
    if isinstance(extent, int):
        return math.floor(extent * scale)
    ratio = Fraction(scale)
    numerator_limit, denominator_limit = _EXACT_SCALE_LIMITS
    if ratio.numerator > numerator_limit or ratio.denominator > denominator_limit:
        return None
    return floor_div(extent * ratio.numerator, ratio.denominator)


def _scaled_extents(
    ctx: ShapeContext, extents: list[Dim], scales: list[float] | None
) -> list[Element]:
    """floor(in * scale) per axis; unknown scales give unknown extents."""
    if scales is None:
        return [None] * len(extents)
    if len(scales) != len(extents):
        raise ctx.fail(f"scales {scales} must hold {len(extents)} values")
    return [_scaled_extent(ctx, e, s) for e, s in zip(extents, scales, strict=True)]


def _sized_extents(ctx: ShapeContext, extents: list[Dim], sizes: list[Element]) -> list[Element]:
    """sizes as given (stretch), or with keep_aspect_ratio_policy one scale s = min (not_larger)
    or max (not_smaller) of sizes[i] / in[i] and out = floor(s * in + 1/2)."""
    if len(sizes) != len(extents):
        raise ctx.fail(f"sizes has {len(sizes)} values for {len(extents)} axes")
    policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch"))
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise ctx.fail(f"keep_aspect_ratio_policy {policy!r} is unknown")
    if policy == "stretch" or len(sizes) == 1:  # one axis: s * in rounds back to sizes[0]
        return sizes
    if all(isinstance(v, int) for v in [*sizes, *extents]):
        ratios = [out / size for out, size in zip(sizes, extents, strict=True)]  # type: ignore[operator]
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        return [int(scale * size + 0.5) for size in extents]  # type: ignore[operator]
    # which axis sets the scale depends on the extents; not_larger keeps each within its size
    note = f"Resize extent ({policy})"
    if policy == "not_larger":
        return [ctx.fresh(upper_bound=size, note=note) for size in sizes]  # type: ignore[arg-type]
    return [ctx.fresh(note=note) for _ in sizes]


def _resize_source(scales: TensorFact | None, sizes: TensorFact | None) -> str | None:
    """ "sizes" or "scales": the input that is given (exactly one is; the other is omitted or
    empty), or None when their lengths do not tell."""
    scales_length = 0 if scales is None else static_length(scales)
    sizes_length = 0 if sizes is None else static_length(sizes)
    if sizes_length == 0:
        return "scales"
    if scales_length == 0 or sizes_length is not None:
        return "sizes"
    return None if scales_length is None else "scales"


@shape_rule("Resize", since=11, op_class=OpClass.ISVDOS)
def resize_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Resize: on each of `axes`, out = sizes[i] (see `_sized_extents` for
    keep_aspect_ratio_policy), or floor(in * scales[i]); other dims unchanged."""
    x = inputs[0]
    dims = x.shape.dims
    if dims is None:
        return [TensorFact(x.dtype, Shape.unknown())]
    axes = [
        normalize_axis(ctx, int(a), len(dims)) for a in ctx.attr("axes", None) or range(len(dims))
    ]
    extents = [dims[axis] for axis in axes]
    scales, sizes = optional(inputs, 2), optional(inputs, 3)
    source = _resize_source(scales, sizes)
    wanted: list[Element] = [None] * len(axes)
    if source == "sizes" and sizes is not None and sizes.value is not None:
        wanted = _sized_extents(ctx, extents, list(sizes.value))
    elif source == "scales":
        wanted = _scaled_extents(ctx, extents, _constant_floats(ctx, 2))
    result = list(dims)
    for axis, extent in zip(axes, dims_or_unknown(ctx, wanted, "Resize extent"), strict=True):
        result[axis] = extent
    return [TensorFact(x.dtype, Shape(result))]


def _legacy_resize_shape(
    ctx: ShapeContext, x: TensorFact, scales: list[float] | None
) -> list[TensorFact]:
    """Upsample, Resize-10: out = floor(in * scale) along every axis."""
    if x.shape.dims is None:
        return [TensorFact(x.dtype, Shape.unknown())]
    wanted = _scaled_extents(ctx, list(x.shape.dims), scales)
    return [TensorFact(x.dtype, Shape(dims_or_unknown(ctx, wanted, "Upsample extent")))]


@shape_rule("Resize", since=10, op_class=OpClass.ISVDOS)
def resize_10_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Resize-10: out = floor(in * scales[i]) along every axis."""
    return _legacy_resize_shape(ctx, inputs[0], _constant_floats(ctx, 1))


@shape_rule("Upsample", since=7, op_class=OpClass.ISVDOS)
def upsample_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Upsample: out = floor(in * scales[i]) along every axis (scales an attribute before
    opset 9, an input from 9 on)."""
    if ctx.opset < 9:
        scales = [float(s) for s in ctx.attr("scales", ())]
        return _legacy_resize_shape(ctx, inputs[0], scales)
    return _legacy_resize_shape(ctx, inputs[0], _constant_floats(ctx, 1))


def _image_dims(ctx: ShapeContext, fact: TensorFact) -> tuple[Dim, ...] | None:
    """(N, C, H, W) of a 4-D input, None for an unknown rank."""
    dims = fact.shape.dims
    if dims is not None and len(dims) != 4:
        raise ctx.fail(f"input {fact.shape} must be (N, C, H, W)")
    return dims


def _block(ctx: ShapeContext) -> int:
    block = int(ctx.attr("blocksize", 0))
    if block < 1:
        raise ctx.fail(f"blocksize must be positive, got {block}")
    return block


@shape_rule("DepthToSpace", op_class=OpClass.ISDOS)
def depth_to_space_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DepthToSpace: [N, C / b^2, H * b, W * b], b^2 dividing C."""
    dims, block = _image_dims(ctx, inputs[0]), _block(ctx)
    if dims is None:
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(4, "DepthToSpace"))]
    n, c, h, w = dims
    depth = exact_div(ctx, c, block * block, f"channels divisible by blocksize^2 = {block**2}")
    return [TensorFact(inputs[0].dtype, Shape([n, depth, h * block, w * block]))]


@shape_rule("SpaceToDepth", op_class=OpClass.ISDOS)
def space_to_depth_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SpaceToDepth: [N, C * b^2, H / b, W / b], b dividing H and W."""
    dims, block = _image_dims(ctx, inputs[0]), _block(ctx)
    if dims is None:
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(4, "SpaceToDepth"))]
    n, c, h, w = dims
    rows = exact_div(ctx, h, block, f"height divisible by blocksize {block}")
    columns = exact_div(ctx, w, block, f"width divisible by blocksize {block}")
    return [TensorFact(inputs[0].dtype, Shape([n, c * block * block, rows, columns]))]


@shape_rule("CenterCropPad", since=18, op_class=OpClass.ISVDOS)
def center_crop_pad_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """CenterCropPad: the input's dims, each of `axes` replaced by the shape input's value."""
    x = inputs[0]
    dims = x.shape.dims
    if dims is None:
        return [TensorFact(x.dtype, Shape.unknown())]
    axes = [
        normalize_axis(ctx, int(a), len(dims)) for a in ctx.attr("axes", None) or range(len(dims))
    ]
    targets = value_dims(inputs[1]) or [None] * len(axes)
    if len(targets) != len(axes):
        raise ctx.fail(f"shape has {len(targets)} values for axes {axes}")
    result = list(dims)
    for axis, extent in zip(
        axes, dims_or_unknown(ctx, targets, "CenterCropPad extent"), strict=True
    ):
        result[axis] = extent
    return [TensorFact(x.dtype, Shape(result))]


@shape_rule("Col2Im", since=18, op_class=OpClass.ISVDOS)
def col2im_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Col2Im: [N, C, *image_shape] from input [N, C * prod(block_shape), L], L being the number
    of blocks prod(floor((image + pads - dil*(k-1) - 1)/stride) + 1)."""
    columns, rank = inputs[0].shape.dims, static_length(inputs[1])
    image, block = value_dims(inputs[1]), value_dims(inputs[2])
    dtype = inputs[0].dtype
    if columns is None or rank is None:
        return [TensorFact(dtype, ctx.unknown_shape(None if rank is None else rank + 2, "Col2Im"))]
    if len(columns) != 3:
        raise ctx.fail(f"input {inputs[0].shape} must be (N, C * prod(block_shape), L)")
    spatial = dims_or_unknown(ctx, image or [None] * rank, "Col2Im image extent")
    if block is None or None in block or len(block) != rank:
        channels: Dim = ctx.fresh(note="Col2Im channels")
    else:
        kernel = list(dims_or_unknown(ctx, block, "Col2Im block"))
        size = Shape(kernel).numel()
        assert size is not None
        channels = exact_div(ctx, columns[1], size, "rows = channels * prod(block_shape)")
        if image is not None and None not in image:
            blocks = Shape(window_output_dims(ctx, spatial, kernel)).numel()
            assert blocks is not None
            ctx.same(columns[2], blocks, "L = the number of blocks")
    return [TensorFact(dtype, Shape([columns[0], channels, *spatial]))]


@shape_rule("AffineGrid", since=20, op_class=OpClass.ISVDOS)
def affine_grid_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """AffineGrid: [N, *spatial, r] for size = [N, C, *spatial] (r = 2 or 3 spatial dims) and
    theta [N, r, r + 1]."""
    theta, count = inputs[0].shape.dims, static_length(inputs[1])
    if count is None:
        return [TensorFact(inputs[0].dtype, Shape.unknown())]
    rank = count - 2
    if rank not in (2, 3):
        raise ctx.fail(f"size must hold 4 or 5 values, got {count}")
    size = value_dims(inputs[1]) or [None] * count
    if theta is not None:
        if len(theta) != 3:
            raise ctx.fail(f"theta {inputs[0].shape} must be (N, {rank}, {rank + 1})")
        batch = theta[0] if size[0] is None else ctx.same(theta[0], size[0], "theta's batch")
        size[0] = batch
        ctx.same(theta[1], rank, f"theta's dim 1 = {rank}")
        ctx.same(theta[2], rank + 1, f"theta's dim 2 = {rank + 1}")
    size = dims_or_unknown(ctx, size, "AffineGrid size")
    return [TensorFact(inputs[0].dtype, Shape([size[0], *size[2:], rank]))]


@shape_rule("GridSample", since=16, op_class=OpClass.ISDOS)
def grid_sample_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """GridSample: [N, C, *grid[1:-1]] for X [N, C, *spatial] and grid [N, *out, rank]."""
    x, grid = inputs[0].shape.dims, inputs[1].shape.dims
    if x is None or grid is None:
        known = x if x is not None else grid
        rank = None if known is None else len(known)
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(rank, "GridSample"))]
    if len(x) < 3 or len(grid) != len(x):
        raise ctx.fail(
            f"grid {inputs[1].shape} must be (N, *out, {len(x) - 2}) for X {inputs[0].shape}"
        )
    batch = ctx.same(x[0], grid[0], "X and grid have the same batch")
    ctx.same(grid[-1], len(x) - 2, "grid's last dim = the number of spatial dims")
    return [TensorFact(inputs[0].dtype, Shape([batch, x[1], *grid[1:-1]]))]


@shape_rule("RoiAlign", since=10, op_class=OpClass.ISDOS)
def roi_align_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """RoiAlign: [R, C, output_height, output_width] for X [N, C, H, W], rois [R, 4] and
    batch_indices [R]."""
    x, rois, indices = _image_dims(ctx, inputs[0]), inputs[1].shape.dims, inputs[2].shape.dims
    pooled = [int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))]
    count: Dim = ctx.fresh(note="RoiAlign rois") if rois is None else rois[0]
    if rois is not None:
        if len(rois) != 2:
            raise ctx.fail(f"rois {inputs[1].shape} must be (R, 4)")
        ctx.same(rois[1], 4, "rois hold 4 coordinates")
    if indices is not None:
        count = ctx.same(count, indices[0], "one batch index per roi")
    channels = ctx.fresh(note="RoiAlign channels") if x is None else x[1]
    return [TensorFact(inputs[0].dtype, Shape([count, channels, *pooled]))]
