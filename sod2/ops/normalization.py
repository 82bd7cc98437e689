"""Normalizations: subtract a mean, divide by a spread, then scale and shift.

Each operator differs only in the set of elements that share statistics:
- BatchNormalization: per channel, over the batch and spatial dims (inference uses the given
  running statistics; `training_mode=1`, opset 14, uses the batch's and updates the running ones);
- InstanceNormalization: per (instance, channel), over the spatial dims;
- GroupNormalization: per (instance, group of C / num_groups channels); opset 18 scales and
  shifts per group, opset 21 per channel (two catalogue entries);
- LayerNormalization and RMSNormalization: over the dims from `axis` to the last;
- MeanVarianceNormalization: over the `axes` attribute (default [0, 2, 3]);
- LpNormalization: divides by the L1 or L2 norm along one axis; LRN by a power of the sum of
  squares over a window of neighbouring channels.

Variances are population variances (divide by N, not N - 1), computed in two passes as
mean((x - mean)^2), never as mean(x^2) - mean(x)^2, which can go negative. Statistics are computed
in float32 for float32, float16 and bfloat16 inputs (`stash_type=1`, the default of the operators
that have it), as onnxruntime does, and in float64 for float64; the result is rounded to the output
type once.

Where ONNX differs from numpy or from a literal reading of a formula:
- MeanVarianceNormalization adds 1e-9 to the standard deviation, not to the variance;
- LpNormalization gives 0 where the norm is 0 (opset 22 defines it; earlier opsets left a NaN);
- RMSNormalization's output takes the type of `scale`, not of X.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import broadcasts_to, exact_div, optional, same_as_input
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.fused import FUSED_DOMAIN
from sod2.ops.math import float_input, optional_input, working_dtype
from sod2.ops.registry import KernelContext, OpClass, Value, register, shape_rule
from sod2.ops.shape import normalize_axis

Axes = tuple[int, ...]


def moments(x: np.ndarray, axes: Axes) -> tuple[np.ndarray, np.ndarray]:
    """mean(x) and the population variance mean((x - mean)^2) over `axes`, kept as size-1 dims."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    return mean, np.mean(centered * centered, axis=axes, keepdims=True)


def standardize(x: np.ndarray, axes: Axes, epsilon: float) -> tuple[np.ndarray, ...]:
    """(x - mean) / sqrt(var + epsilon) over `axes`, with the mean and 1 / sqrt(var + epsilon)."""
    mean, variance = moments(x, axes)
    inv_std = 1 / np.sqrt(variance + np.asarray(epsilon, dtype=x.dtype))
    return (x - mean) * inv_std, mean, inv_std


def _channel_shape(param: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel parameter [C] as [C, 1, ..., 1], to broadcast against [N, C, D1 ...]."""
    return param.reshape(param.shape[:1] + (1,) * (rank - 2))


def _params(
    ctx: KernelContext, inputs: Sequence[Value], names: Sequence[str], dtype: np.dtype
) -> list[np.ndarray]:
    """Float parameter inputs, in the compute dtype."""
    return [
        float_input(ctx, value, f"input {name}").astype(dtype, copy=False)
        for value, name in zip(inputs, names, strict=True)
    ]


def _check_channels(ctx: KernelContext, x: np.ndarray, params: dict[str, np.ndarray]) -> None:
    """Each parameter must be [C] (or, for BatchNormalization spatial=0, X's shape after N)."""
    if x.ndim < 2:
        raise ctx.fail(f"input X must be [N, C, ...], got shape {list(x.shape)}")
    for name, param in params.items():
        if param.shape not in ((x.shape[1],), x.shape[1:]):
            raise ctx.fail(
                f"input {name} of shape {list(param.shape)} does not match {x.shape[1]} channels "
                f"of X {list(x.shape)}"
            )


def _per_channel(param: np.ndarray, rank: int) -> np.ndarray:
    return _channel_shape(param, rank) if param.ndim == 1 else param


# -- BatchNormalization --------------------------------------------------------------------------

_BATCH_PARAMS = ("scale", "B", "input_mean", "input_var")


def _batch_norm_inference(ctx: KernelContext, inputs: Sequence[Value]) -> np.ndarray:
    x = float_input(ctx, inputs[0], "input X")
    compute = working_dtype(x.dtype)
    params = _params(ctx, inputs[1:5], _BATCH_PARAMS, compute)
    _check_channels(ctx, x, dict(zip(_BATCH_PARAMS, params, strict=True)))
    scale, bias, mean, variance = (_per_channel(p, x.ndim) for p in params)
    epsilon = np.asarray(ctx.attr("epsilon", 1e-5), dtype=compute)
    with np.errstate(all="ignore"):
        values = x.astype(compute, copy=False)
        y = (values - mean) / np.sqrt(variance + epsilon) * scale + bias
    return y.astype(x.dtype)


@register("BatchNormalization", since=1)
def batch_normalization_1(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """BatchNormalization (opset 1-13, inference): y = (x - mean) / sqrt(var + eps) * scale + B;
    before opset 9, `spatial=0` gives per-activation parameters [C, D1, ...]."""
    if any(out is not None for out in ctx.node.outputs[1:]):
        raise ctx.unsupported("training outputs of BatchNormalization before opset 14")
    if ctx.attr("is_test", 1) == 0:  # an explicit request for training statistics (opset < 7)
        raise ctx.unsupported("BatchNormalization training (is_test=0) before opset 7")
    return [_batch_norm_inference(ctx, inputs)]


@register("BatchNormalization", since=14)
def batch_normalization_14(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """BatchNormalization (opset 14): inference as before; with training_mode=1,
    y = (x - batch_mean) / sqrt(batch_var + eps) * scale + B and the running statistics become
    running = input * momentum + batch * (1 - momentum)."""
    if not ctx.attr("training_mode", 0):
        if any(out is not None for out in ctx.node.outputs[1:]):
            raise ctx.fail("running_mean and running_var are outputs of training_mode=1 only")
        return [_batch_norm_inference(ctx, inputs)]
    x = float_input(ctx, inputs[0], "input X")
    compute = working_dtype(x.dtype)
    params = _params(ctx, inputs[1:5], _BATCH_PARAMS, compute)
    _check_channels(ctx, x, dict(zip(_BATCH_PARAMS, params, strict=True)))
    if any(p.ndim != 1 for p in params):
        raise ctx.fail("training_mode=1 needs per-channel [C] parameters")
    scale, bias, running_mean, running_var = params
    axes = (0, *range(2, x.ndim))
    epsilon = np.asarray(ctx.attr("epsilon", 1e-5), dtype=compute)
    with np.errstate(all="ignore"):
        values = x.astype(compute)
        batch_mean, batch_var = moments(values, axes)
        normalized = (values - batch_mean) / np.sqrt(batch_var + epsilon)
        y = normalized * _channel_shape(scale, x.ndim) + _channel_shape(bias, x.ndim)
    momentum = np.asarray(ctx.attr("momentum", 0.9), dtype=compute)
    stats_dtype = np.asarray(inputs[3]).dtype
    new_mean = running_mean * momentum + batch_mean.reshape(-1) * (1 - momentum)
    new_var = running_var * momentum + batch_var.reshape(-1) * (1 - momentum)
    results = [y.astype(x.dtype), new_mean.astype(stats_dtype), new_var.astype(stats_dtype)]
    return results[: len(ctx.node.outputs)]


# -- Instance, group, layer and RMS normalization ---------------------------------------------


@register("InstanceNormalization", since=1)
def instance_normalization(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """InstanceNormalization: y = (x - mean) / sqrt(var + eps) * scale[c] + B[c],
    statistics per (n, c) over the spatial dims."""
    x = float_input(ctx, inputs[0], "input")
    compute = working_dtype(x.dtype)
    scale, bias = _params(ctx, inputs[1:3], ("scale", "B"), compute)
    _check_channels(ctx, x, {"scale": scale, "B": bias})
    if scale.ndim != 1 or bias.ndim != 1:
        raise ctx.fail("scale and B must be [C]")
    with np.errstate(all="ignore"):
        axes = tuple(range(2, x.ndim))
        normalized, _, _ = standardize(x.astype(compute), axes, ctx.attr("epsilon", 1e-5))
        y = normalized * _channel_shape(scale, x.ndim) + _channel_shape(bias, x.ndim)
    return [y.astype(x.dtype)]


def _group_normalize(ctx: KernelContext, x: np.ndarray, compute: np.dtype) -> np.ndarray:
    """x standardized per (n, group) over the group's channels and the spatial dims."""
    groups = int(ctx.attr("num_groups", 0))
    if x.ndim < 2 or groups <= 0 or x.shape[1] % groups:
        raise ctx.fail(
            f"num_groups {groups} must divide the channels of X [N, C, ...], got {list(x.shape)}"
        )
    grouped = x.astype(compute).reshape(x.shape[0], groups, -1)
    with np.errstate(all="ignore"):
        normalized, _, _ = standardize(grouped, (2,), ctx.attr("epsilon", 1e-5))
    return normalized.reshape(x.shape)


def _stash_dtype(ctx: KernelContext) -> np.dtype:
    """The type of the statistics outputs: `stash_type`, float32 (1, default) or float64 (11)."""
    code = int(ctx.attr("stash_type", DType.FLOAT32.onnx))
    if code not in (DType.FLOAT32.onnx, DType.FLOAT64.onnx):
        raise ctx.unsupported(f"stash_type {code}: statistics are computed in float32 or float64")
    return DType.from_onnx(code).numpy


def _statistics_dtype(ctx: KernelContext, x: np.ndarray) -> np.dtype:
    """Compute in the stash type, or in float64 for float64 inputs (as onnxruntime does)."""
    return np.promote_types(working_dtype(x.dtype), _stash_dtype(ctx))


@register("GroupNormalization", since=18)
def group_normalization_18(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GroupNormalization (opset 18): y = standardized * scale[g] + bias[g], scale and bias per
    group [num_groups]."""
    x = float_input(ctx, inputs[0], "input X")
    compute = working_dtype(x.dtype)
    normalized = _group_normalize(ctx, x, compute)
    scale, bias = _params(ctx, inputs[1:3], ("scale", "bias"), compute)
    groups = int(ctx.attr("num_groups"))
    if scale.shape != (groups,) or bias.shape != (groups,):
        raise ctx.fail(f"scale and bias must be [num_groups] = [{groups}] at opset 18")
    per_channel = x.shape[1] // groups
    scale, bias = np.repeat(scale, per_channel), np.repeat(bias, per_channel)
    y = normalized * _channel_shape(scale, x.ndim) + _channel_shape(bias, x.ndim)
    return [y.astype(x.dtype)]


@register("GroupNormalization", since=21)
def group_normalization_21(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GroupNormalization (opset 21): y = standardized * scale[c] + bias[c], per channel [C];
    statistics in `stash_type`."""
    x = float_input(ctx, inputs[0], "input X")
    normalized = _group_normalize(ctx, x, _statistics_dtype(ctx, x))
    compute = working_dtype(x.dtype)
    scale, bias = _params(ctx, inputs[1:3], ("scale", "bias"), compute)
    if scale.shape != x.shape[1:2] or bias.shape != x.shape[1:2]:
        raise ctx.fail(f"scale and bias must be [C] = [{x.shape[1]}] from opset 21")
    y = normalized * _channel_shape(scale, x.ndim) + _channel_shape(bias, x.ndim)
    return [y.astype(x.dtype)]


def _check_unidirectional(ctx: KernelContext, name: str, param: np.ndarray, x: np.ndarray) -> None:
    try:
        fits = np.broadcast_shapes(param.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ctx.fail(f"input {name} of shape {list(param.shape)} does not broadcast to X")


@register("LayerNormalization", since=17)
def layer_normalization(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """LayerNormalization: y = (x - mean) / sqrt(var + eps) * Scale + B, statistics over the dims
    axis..rank-1; optional outputs Mean and InvStdDev = 1 / sqrt(var + eps)."""
    x = float_input(ctx, inputs[0], "input X")
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    stash = _statistics_dtype(ctx, x)
    scale = float_input(ctx, inputs[1], "input Scale")
    bias_value = optional_input(inputs, 2)
    bias = None if bias_value is None else float_input(ctx, bias_value, "input B")
    for name, param in (("Scale", scale), ("B", bias)):
        if param is not None:
            _check_unidirectional(ctx, name, param, x)
    with np.errstate(all="ignore"):
        axes = tuple(range(axis, x.ndim))
        normalized, mean, inv_std = standardize(x.astype(stash), axes, ctx.attr("epsilon", 1e-5))
        y = normalized * scale.astype(stash)
        if bias is not None:
            y = y + bias.astype(stash)
    stats = _stash_dtype(ctx)
    results = [y.astype(x.dtype), mean.astype(stats), inv_std.astype(stats)]
    return results[: len(ctx.node.outputs)]


@register("RMSNormalization", since=23)
def rms_normalization(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RMSNormalization: y = x / sqrt(mean(x^2) + eps) * scale, the mean over axis..rank-1;
    y has the type of scale."""
    x = float_input(ctx, inputs[0], "input X")
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    stash = _statistics_dtype(ctx, x)
    scale = float_input(ctx, inputs[1], "input scale")
    _check_unidirectional(ctx, "scale", scale, x)
    epsilon = np.asarray(ctx.attr("epsilon", 1e-5), dtype=stash)
    with np.errstate(all="ignore"):
        values = x.astype(stash)
        mean_square = np.mean(values * values, axis=tuple(range(axis, x.ndim)), keepdims=True)
        y = values / np.sqrt(mean_square + epsilon) * scale.astype(stash)
    return [y.astype(scale.dtype)]


# -- MeanVarianceNormalization, LpNormalization, LRN -------------------------------------------


@register("MeanVarianceNormalization", since=9)
def mean_variance_normalization(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MeanVarianceNormalization: y = (x - mean) / (sqrt(var) + 1e-9) over `axes` ([0, 2, 3])."""
    x = float_input(ctx, inputs[0], "input X")
    axes = tuple(sorted({normalize_axis(ctx, a, x.ndim) for a in ctx.attr("axes", (0, 2, 3))}))
    compute = working_dtype(x.dtype)
    with np.errstate(all="ignore"):
        values = x.astype(compute)
        centered = values - np.mean(values, axis=axes, keepdims=True)
        deviation = np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True))
        y = centered / (deviation + np.asarray(1e-9, dtype=compute))
    return [y.astype(x.dtype)]


@register("LpNormalization", since=1)
def lp_normalization(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """LpNormalization: y = x / ||x||_p along `axis` (p = 1 or 2), 0 where the norm is 0."""
    x = float_input(ctx, inputs[0], "input")
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.fail(f"p must be 1 or 2, got {p}")
    values = x.astype(working_dtype(x.dtype))
    if p == 1:
        norm = np.sum(np.abs(values), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(values * values, axis=axis, keepdims=True))
    with np.errstate(all="ignore"):
        y = np.where(norm == 0, 0, values / norm)
    return [y.astype(x.dtype)]


@register("LRN", since=1)
def lrn(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """LRN: y = x / (bias + alpha / size * square_sum) ^ beta, where square_sum sums x^2 over the
    channels c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)."""
    x = float_input(ctx, inputs[0], "input X")
    size = int(ctx.attr("size", 0))
    if x.ndim < 2 or size <= 0:
        raise ctx.fail(f"LRN needs X [N, C, ...] and size > 0, got {list(x.shape)}, size {size}")
    compute = working_dtype(x.dtype)
    values = x.astype(compute)
    square_sum = _channel_window_sum(values * values, (size - 1) // 2, math.ceil((size - 1) / 2))
    alpha, beta, bias = (
        np.asarray(ctx.attr(name, default), dtype=compute)
        for name, default in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0))
    )
    with np.errstate(all="ignore"):
        y = values / (bias + alpha / np.asarray(size, compute) * square_sum) ** beta
    return [y.astype(x.dtype)]


def _channel_window_sum(squares: np.ndarray, before: int, after: int) -> np.ndarray:
    """sum(squares[:, c - before : c + after + 1]) for every channel c, clipped to [0, C)."""
    channels = squares.shape[1]
    total = np.zeros_like(squares)
    for offset in range(-before, after + 1):  # one shifted add per window position
        low, high = max(0, -offset), min(channels, channels - offset)
        if low < high:
            total[:, low:high] += squares[:, low + offset : high + offset]
    return total


# -- sod2::Standardize -------------------------------------------------------------------------

STANDARDIZE_OP = "Standardize"
"""sod2's own op (domain `sod2`): y = (x - mean) / sqrt(var + epsilon), the statistics over the
consecutive axes `axes` (attribute, ints) with `epsilon` (attribute, float). No scale or bias:
an affine map after it is an epilogue (`sod2.opt.fusion`). `sod2.opt.standardize` makes it of a
normalization written out in ReduceMean, Sub, Pow, Add, Sqrt and Div; ONNX's LayerNormalization
covers trailing axes only, and a LayerNorm over an image's channels (axis 1 of NCHW) is not one."""


def standardized_axes(ctx: KernelContext | ShapeContext, rank: int) -> tuple[int, ...]:
    """Standardize's `axes`, counted from 0 and sorted; an error unless they are distinct,
    consecutive, non-empty and within `rank`."""
    given = [int(a) for a in ctx.attr("axes", None) or []]
    axes = tuple(sorted(normalize_axis(ctx, a, rank, what="axes entry") for a in given))
    if not axes or len(set(axes)) != len(axes) or axes[-1] - axes[0] != len(axes) - 1:
        raise ctx.fail(f"axes {given} must be distinct consecutive axes of a rank-{rank} X")
    return axes


@register(STANDARDIZE_OP, domain=FUSED_DOMAIN)
def standardize_op(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """sod2::Standardize: (x - mean) / sqrt(var + epsilon) over `axes`."""
    x = float_input(ctx, inputs[0], "input X")
    axes = standardized_axes(ctx, x.ndim)
    with np.errstate(all="ignore"):
        y = standardize(x.astype(working_dtype(x.dtype)), axes, float(ctx.attr("epsilon", 1e-5)))
    return [y[0].astype(x.dtype)]


@shape_rule(STANDARDIZE_OP, op_class=OpClass.ISDOS, domain=FUSED_DOMAIN)
def standardize_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """sod2::Standardize: Y has X's type and shape; the axes are checked once X's rank is known."""
    dims = inputs[0].shape.dims
    if dims is not None:
        standardized_axes(ctx, len(dims))
    return same_as_input(ctx, inputs)


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# A normalization's Y has X's shape. The rules check the parameters against X (a per-channel
# parameter's extent is X's C, so RDP learns an unnamed C from constant weights) and give the
# statistics outputs their shapes: [C] for BatchNormalization's running mean and variance,
# X's dims with the normalized ones made 1 for LayerNormalization's Mean and InvStdDev.

for _op, _since in (("MeanVarianceNormalization", 9), ("LpNormalization", 1), ("LRN", 1)):
    shape_rule(_op, since=_since, op_class=OpClass.ISDOS)(same_as_input)


def _channels(ctx: ShapeContext, x: TensorFact) -> Dim | None:
    """X's channel dim C of [N, C, ...]; None when the rank is unknown."""
    dims = x.shape.dims
    if dims is None:
        return None
    if len(dims) < 2:
        raise ctx.fail(f"input X must be [N, C, ...], got {x.shape}")
    return dims[1]


def _check_entries(
    ctx: ShapeContext, param: TensorFact | None, extent: Dim | None, name: str
) -> None:
    """A parameter [extent] (C or num_groups): its one dim must equal `extent`."""
    dims = None if param is None else param.shape.dims
    if dims is None or extent is None:
        return
    if len(dims) != 1:
        raise ctx.fail(f"input {name} must be 1-D [{extent}], got {Shape(dims)}")
    ctx.same(dims[0], extent, f"input {name} has one entry per channel")


def _check_batch_parameter(
    ctx: ShapeContext, param: TensorFact | None, x_dims: tuple[Dim, ...], name: str
) -> None:
    """A BatchNormalization parameter is [C], or (spatial=0 before opset 9) X's dims after N."""
    dims = None if param is None else param.shape.dims
    if dims is None or len(dims) == 1:
        _check_entries(ctx, param, x_dims[1], name)
    elif len(dims) == len(x_dims) - 1:
        for dim, extent in zip(dims, x_dims[1:], strict=True):
            ctx.same(dim, extent, f"input {name} matches X's dims after N")
    else:
        raise ctx.fail(f"input {name} of shape {Shape(dims)} does not fit X {Shape(x_dims)}")


@shape_rule("BatchNormalization", since=1, op_class=OpClass.ISDOS)
def batch_normalization_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """BatchNormalization: Y like X [N, C, ...]; the statistics outputs (training_mode=1 from
    opset 14: running_mean, running_var) are [C], typed like input_mean."""
    x = inputs[0]
    channels, x_dims = _channels(ctx, x), x.shape.dims
    for param, name in zip(inputs[1:5], ("scale", "B", "input_mean", "input_var"), strict=False):
        if x_dims is not None:
            _check_batch_parameter(ctx, param, x_dims, name)
    y = TensorFact(x.dtype, x.shape)
    if ctx.output_count() == 1:
        return [y]
    extent = ctx.fresh(note="channels of X") if channels is None else channels
    mean = optional(inputs, 3)
    statistics = TensorFact(None if mean is None else mean.dtype, Shape([extent]))
    return [y] + [statistics] * (ctx.output_count() - 1)


@shape_rule("InstanceNormalization", since=1, op_class=OpClass.ISDOS)
def instance_normalization_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """InstanceNormalization: Y like X [N, C, ...]; scale and B are [C]."""
    channels = _channels(ctx, inputs[0])
    _check_entries(ctx, inputs[1], channels, "scale")
    _check_entries(ctx, inputs[2], channels, "B")
    return [TensorFact(inputs[0].dtype, inputs[0].shape)]


def _group_norm(ctx: ShapeContext, inputs: Facts, per_group: bool) -> list[TensorFact]:
    """Y like X [N, C, ...]; num_groups divides C; scale and bias per group or per channel."""
    groups = int(ctx.attr("num_groups", 0))
    if groups <= 0:
        raise ctx.fail(f"num_groups must be positive, got {groups}")
    channels = _channels(ctx, inputs[0])
    if channels is not None:
        exact_div(ctx, channels, groups, "num_groups divides the channels")
    extent = groups if per_group else channels
    _check_entries(ctx, inputs[1], extent, "scale")
    _check_entries(ctx, inputs[2], extent, "bias")
    return [TensorFact(inputs[0].dtype, inputs[0].shape)]


@shape_rule("GroupNormalization", since=18, op_class=OpClass.ISDOS)
def group_normalization_18_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """GroupNormalization (opset 18): Y like X; scale and bias [num_groups]."""
    return _group_norm(ctx, inputs, per_group=True)


@shape_rule("GroupNormalization", since=21, op_class=OpClass.ISDOS)
def group_normalization_21_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """GroupNormalization (opset 21): Y like X; scale and bias [C]."""
    return _group_norm(ctx, inputs, per_group=False)


@shape_rule("LayerNormalization", since=17, op_class=OpClass.ISDOS)
def layer_normalization_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """LayerNormalization: Y like X; Mean and InvStdDev (stash_type) are X's dims with the
    normalized ones (axis .. rank-1) made 1; Scale and B broadcast one way to X."""
    x = inputs[0]
    broadcasts_to(ctx, inputs[1], x.shape, "Scale")
    broadcasts_to(ctx, optional(inputs, 2), x.shape, "B")
    stash = DType.from_onnx(int(ctx.attr("stash_type", DType.FLOAT32.onnx)))
    dims = x.shape.dims
    if dims is None:
        statistics = Shape.unknown()
    else:
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), len(dims))
        statistics = Shape([*dims[:axis], *(1 for _ in dims[axis:])])
    outputs = [TensorFact(x.dtype, x.shape)]
    return outputs + [TensorFact(stash, statistics)] * (ctx.output_count() - 1)


@shape_rule("RMSNormalization", since=23, op_class=OpClass.ISDOS)
def rms_normalization_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """RMSNormalization: Y has X's shape and scale's element type; scale broadcasts one way."""
    x = inputs[0]
    if x.shape.dims is not None:
        normalize_axis(ctx, int(ctx.attr("axis", -1)), len(x.shape.dims))
    broadcasts_to(ctx, inputs[1], x.shape, "scale")
    return [TensorFact(inputs[1].dtype, x.shape)]
