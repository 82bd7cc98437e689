"""Activation functions and the softmax family.

Pointwise activations (Elu, Gelu, Mish ...) read their constants from attributes and compute in
the working float type of `sod2.ops.math` (float32 for float16 / bfloat16 inputs), rounding once
at the end. Where ONNX differs from numpy or from a naive formula:
- Softplus and Mish use log(1 + e^x) in its overflow-free form (`logaddexp`), as onnxruntime
  does, so large inputs give x rather than inf;
- Gelu's erf has no numpy function: float64 inputs use `math.erfc` per element, narrower floats a
  vectorized Chebyshev fit of erfc with relative error below 1.2e-7 (well inside float32), so
  Gelu = x/2 * erfc(-x/sqrt(2)) keeps its relative accuracy for large negative x;
- PRelu broadcasts the slope *unidirectionally*: it must broadcast to X's shape, never grow it;
- Softmax, LogSoftmax and Hardmax before opset 13 flatten the input to 2-D at `axis` (default 1)
  and normalize each row of [d0*...*d(axis-1), d(axis)*...*d(n-1)]; from opset 13 they work along
  the single dim `axis` (default -1). Hardmax marks the first maximum only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import broadcasts_to, same_as_input
from sod2.analysis.shape_context import ShapeContext
from sod2.ops.math import float_input, working_dtype
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis

Activation = Callable[[np.ndarray, KernelContext], np.ndarray]


def _pointwise(op_type: str, since: int, fn: Activation) -> None:
    """Register `fn(x, ctx)` for `op_type`: float input, computed in the working dtype."""

    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = float_input(ctx, inputs[0], "input X")
        with np.errstate(all="ignore"):
            result = fn(x.astype(working_dtype(x.dtype), copy=False), ctx)
        return [np.asarray(result).astype(x.dtype, copy=False)]

    kernel.__name__ = op_type.lower()
    kernel.__doc__ = fn.__doc__
    register(op_type, since=since)(kernel)


def _float_attr(ctx: KernelContext, name: str, default: float, x: np.ndarray) -> np.ndarray:
    """A float attribute as a scalar of x's dtype, so float32 math stays float32."""
    return np.asarray(ctx.attr(name, default), dtype=x.dtype)


def leaky_relu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """LeakyRelu: y = x for x >= 0, alpha * x otherwise (alpha = 0.01)."""
    return np.where(x >= 0, x, _float_attr(ctx, "alpha", 0.01, x) * x)


def elu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Elu: y = x for x >= 0, alpha * (e^x - 1) otherwise (alpha = 1)."""
    return np.where(x >= 0, x, _float_attr(ctx, "alpha", 1.0, x) * np.expm1(x))


def selu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Selu: y = gamma * x for x > 0, gamma * alpha * (e^x - 1) otherwise."""
    alpha = _float_attr(ctx, "alpha", 1.67326319217681884765625, x)
    gamma = _float_attr(ctx, "gamma", 1.05070102214813232421875, x)
    return np.where(x > 0, gamma * x, gamma * (alpha * np.exp(x) - alpha))


def celu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Celu: y = max(0, x) + min(0, alpha * (e^(x / alpha) - 1)) (alpha = 1)."""
    alpha = _float_attr(ctx, "alpha", 1.0, x)
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha))


def hard_sigmoid(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """HardSigmoid: y = max(0, min(1, alpha * x + beta)) (alpha = 0.2, beta = 0.5)."""
    alpha, beta = _float_attr(ctx, "alpha", 0.2, x), _float_attr(ctx, "beta", 0.5, x)
    return np.clip(alpha * x + beta, 0, 1)


def hard_swish(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """HardSwish: y = x * max(0, min(1, x / 6 + 1/2))."""
    return x * np.clip(x * np.asarray(1 / 6, dtype=x.dtype) + np.asarray(0.5, x.dtype), 0, 1)


def softplus(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Softplus: y = log(1 + e^x)."""
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def softsign(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Softsign: y = x / (1 + |x|)."""
    return x / (1 + np.abs(x))


def mish(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Mish: y = x * tanh(log(1 + e^x))."""
    return x * np.tanh(softplus(x, ctx))


def thresholded_relu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """ThresholdedRelu: y = x for x > alpha, 0 otherwise (alpha = 1)."""
    return np.where(x > _float_attr(ctx, "alpha", 1.0, x), x, 0)


def swish(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Swish: y = x * sigmoid(alpha * x) = x / (1 + e^(-alpha * x)) (alpha = 1)."""
    return x / (1 + np.exp(-_float_attr(ctx, "alpha", 1.0, x) * x))


ERFC_FIT = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)
"""Coefficients of P in erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0 (Numerical
Recipes' erfcc, relative error below 1.2e-7); the fused float32 Erf and Gelu use them too."""
_math_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(z: np.ndarray, *, exact: bool) -> np.ndarray:
    """erfc(z) = 1 - erf(z) of a float64 array.

    exact: libm per element. Otherwise the Chebyshev fit erfc(|z|) = t * exp(-z^2 + P(t)),
    t = 1 / (1 + |z|/2), relative error < 1.2e-7 (enough for float32), and
    erfc(-|z|) = 2 - erfc(|z|).
    """
    if exact:
        return _math_erfc(z).astype(np.float64)
    magnitude = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * magnitude)
    polynomial = np.zeros_like(t)
    for coefficient in reversed(ERFC_FIT):
        polynomial = polynomial * t + coefficient
    tail = t * np.exp(-magnitude * magnitude + polynomial)
    return np.where(z >= 0, tail, 2.0 - tail)


def gelu(x: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """Gelu: y = x/2 * (1 + erf(x / sqrt(2))); with approximate="tanh",
    y = x/2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))."""
    approximate = ctx.attr("approximate", "none")
    if approximate == "tanh":
        cubic = x + np.asarray(0.044715, x.dtype) * x**3
        inner = np.asarray(math.sqrt(2 / math.pi), x.dtype) * cubic
        return np.asarray(0.5, x.dtype) * x * (1 + np.tanh(inner))
    if approximate != "none":
        raise ctx.fail(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    wide = x.astype(np.float64)  # erfc(-z) loses 2 z^2 ulps of z: keep z exact
    return 0.5 * wide * erfc(-wide / math.sqrt(2), exact=x.dtype == np.float64)


for _op, _since, _fn in (
    ("LeakyRelu", 1, leaky_relu),
    ("Elu", 1, elu),
    ("Selu", 1, selu),
    ("Celu", 12, celu),
    ("HardSigmoid", 1, hard_sigmoid),
    ("HardSwish", 14, hard_swish),
    ("Softplus", 1, softplus),
    ("Softsign", 1, softsign),
    ("Mish", 18, mish),
    ("ThresholdedRelu", 10, thresholded_relu),
    ("Swish", 24, swish),
    ("Gelu", 20, gelu),
):
    _pointwise(_op, _since, _fn)


@register("PRelu", since=7)
def prelu(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """PRelu: y = x for x >= 0, slope * x otherwise; slope broadcasts to X's shape."""
    x, slope = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input slope")
    if slope.dtype != x.dtype:
        raise ctx.fail(f"input slope has type {slope.dtype}, X has {x.dtype}")
    try:
        fits = np.broadcast_shapes(x.shape, slope.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ctx.fail(f"slope of shape {list(slope.shape)} does not broadcast to {list(x.shape)}")
    if x.dtype.kind in "iu":
        return [np.where(x < 0, x * slope, x).astype(x.dtype)]
    compute = working_dtype(x.dtype)
    x_wide, slope_wide = x.astype(compute, copy=False), slope.astype(compute, copy=False)
    return [np.where(x_wide < 0, x_wide * slope_wide, x_wide).astype(x.dtype)]


@register("Shrink", since=9)
def shrink(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Shrink: y = x + bias for x < -lambd, x - bias for x > lambd, 0 otherwise."""
    x = as_array(inputs[0], ctx, "input")
    if x.dtype.kind not in "iuf":
        raise ctx.unsupported(f"input of element type {x.dtype}")
    compute = np.float64 if x.dtype.kind in "iu" else working_dtype(x.dtype)
    values = x.astype(compute, copy=False)
    lambd = np.asarray(ctx.attr("lambd", 0.5), compute)
    bias = np.asarray(ctx.attr("bias", 0.0), compute)
    result = np.where(values < -lambd, values + bias, np.where(values > lambd, values - bias, 0))
    return [result.astype(x.dtype)]


# -- softmax family --------------------------------------------------------------------------

_Normalizer = Callable[[np.ndarray, int], np.ndarray]


def softmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    """softmax(x)_i = e^(x_i - max x) / sum_j e^(x_j - max x) along `axis`."""
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def log_softmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    """log_softmax(x)_i = (x_i - max x) - log(sum_j e^(x_j - max x)) along `axis`."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def hardmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    """hardmax(x)_i = 1 where i is the first index of max x along `axis`, else 0."""
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    result = np.zeros_like(x)
    np.put_along_axis(result, first, 1, axis=axis)
    return result


def _softmax_kind(op_type: str, normalize: _Normalizer) -> None:
    """Register the opset-1 (2-D coercion) and opset-13 (single axis) entries of `op_type`."""

    def coerced(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = _ranked_input(ctx, inputs)
        axis = normalize_axis(ctx, ctx.attr("axis", 1), x.ndim)
        rows = math.prod(x.shape[:axis])
        matrix = x.reshape(rows, math.prod(x.shape[axis:]))
        return [_run(normalize, matrix, 1).reshape(x.shape)]

    def along_axis(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = _ranked_input(ctx, inputs)
        return [_run(normalize, x, normalize_axis(ctx, ctx.attr("axis", -1), x.ndim))]

    coerced.__name__, along_axis.__name__ = f"{op_type.lower()}_1", f"{op_type.lower()}_13"
    coerced.__doc__ = f"{op_type} (opset 1-12): {normalize.__doc__} over rows of the 2-D view."
    along_axis.__doc__ = f"{op_type} (opset 13): {normalize.__doc__}"
    register(op_type, since=1)(coerced)
    register(op_type, since=13)(along_axis)


def _ranked_input(ctx: KernelContext, inputs: Sequence[Value]) -> np.ndarray:
    x = float_input(ctx, inputs[0], "input")
    if x.ndim == 0:
        raise ctx.fail("input must have rank >= 1, got a scalar")
    return x


def _run(normalize: _Normalizer, x: np.ndarray, axis: int) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        values = x.astype(working_dtype(x.dtype), copy=False)
        return normalize(values, axis).astype(x.dtype, copy=False)


_softmax_kind("Softmax", softmax_along)
_softmax_kind("LogSoftmax", log_softmax_along)
_softmax_kind("Hardmax", hardmax_along)


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Every activation keeps its input's shape and element type; the softmax family normalizes
# along an axis without changing the shape, in both of its opset forms.

_FIRST_OPSET = {
    "LeakyRelu": 1,
    "Elu": 1,
    "Selu": 1,
    "Celu": 12,
    "HardSigmoid": 1,
    "HardSwish": 14,
    "Softplus": 1,
    "Softsign": 1,
    "Mish": 18,
    "ThresholdedRelu": 10,
    "Swish": 24,
    "Gelu": 20,
    "Shrink": 9,
}
for _op, _since in _FIRST_OPSET.items():
    shape_rule(_op, since=_since, op_class=OpClass.ISDOS)(same_as_input)
for _op in ("Softmax", "LogSoftmax", "Hardmax"):
    shape_rule(_op, since=1, op_class=OpClass.ISDOS)(same_as_input)  # both opset forms


@shape_rule("PRelu", since=7, op_class=OpClass.ISDOS)
def prelu_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """PRelu: Y has X's shape; the slope broadcasts to it one way (each dim 1 or X's)."""
    broadcasts_to(ctx, inputs[1], inputs[0].shape, "slope")
    return [TensorFact(inputs[0].dtype, inputs[0].shape)]
