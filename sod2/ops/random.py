"""Random generators: RandomNormal, RandomUniform, their *Like forms, Bernoulli, Multinomial.

Their outputs vary between runs, so they are registered `deterministic=False` and constant
folding never evaluates them. Values come from numpy's PCG64 generator, seeded by the `seed`
attribute when there is one (the same seed gives the same values on every run of sod2) and by
fresh entropy otherwise. ONNX fixes the distributions, not the generator: no two libraries draw
the same numbers, so results equal other runtimes' in distribution only.

- RandomNormal: mean + scale * N(0, 1); RandomUniform: low + (high - low) * U[0, 1).
- Bernoulli: 1 where U[0, 1) < p, else 0.
- Multinomial: `sample_size` class indices per batch row, drawn from softmax(input row) (the input
  holds unnormalized log-probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


def generator(ctx: KernelContext) -> np.random.Generator:
    """numpy's generator, seeded by the bits of the float `seed` attribute when it is given."""
    seed = ctx.attr("seed", None)
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(int(np.float64(seed).view(np.uint64)))


def _float_type(ctx: KernelContext, default: np.dtype) -> np.dtype:
    code = ctx.attr("dtype", None)
    dtype = default if code is None else DType.from_onnx(int(code)).numpy
    if DType.from_numpy(dtype) not in (DType.FLOAT16, DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16):
        raise ctx.fail(f"random values must be float16, float32, float64 or bfloat16, not {dtype}")
    return dtype


def _normal(ctx: KernelContext, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    mean, scale = float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0))
    return np.asarray(mean + scale * generator(ctx).standard_normal(shape)).astype(dtype)


def _uniform(ctx: KernelContext, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
    return np.asarray(low + (high - low) * generator(ctx).random(shape)).astype(dtype)


def _shape_attr(ctx: KernelContext) -> tuple[int, ...]:
    shape = tuple(int(d) for d in ctx.attr("shape"))
    if any(d < 0 for d in shape):
        raise ctx.fail(f"shape {list(shape)} has a negative dim")
    return shape


@register("RandomNormal", deterministic=False)
def random_normal(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RandomNormal: mean + scale * N(0, 1), of the attribute `shape`."""
    return [_normal(ctx, _shape_attr(ctx), _float_type(ctx, np.dtype(np.float32)))]


@register("RandomUniform", deterministic=False)
def random_uniform(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RandomUniform: low + (high - low) * U[0, 1), of the attribute `shape`."""
    return [_uniform(ctx, _shape_attr(ctx), _float_type(ctx, np.dtype(np.float32)))]


@register("RandomNormalLike", deterministic=False)
def random_normal_like(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RandomNormalLike: mean + scale * N(0, 1), shaped like the input (its type by default)."""
    like = as_array(inputs[0], ctx, "input")
    return [_normal(ctx, like.shape, _float_type(ctx, like.dtype))]


@register("RandomUniformLike", deterministic=False)
def random_uniform_like(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RandomUniformLike: low + (high - low) * U[0, 1), shaped like the input."""
    like = as_array(inputs[0], ctx, "input")
    return [_uniform(ctx, like.shape, _float_type(ctx, like.dtype))]


@register("Bernoulli", since=15, deterministic=False)
def bernoulli(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Bernoulli: out = [U[0, 1) < p] per element, in `dtype` (default: the input's type)."""
    probabilities = as_array(inputs[0], ctx, "input")
    code = ctx.attr("dtype", None)
    dtype = probabilities.dtype if code is None else DType.from_onnx(int(code)).numpy
    draws = generator(ctx).random(probabilities.shape)
    return [np.asarray(draws < probabilities.astype(np.float64)).astype(dtype)]


@register("Multinomial", since=7, deterministic=False)
def multinomial(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Multinomial: out[b, s] = the class c with cdf[b, c-1] <= u[b, s] < cdf[b, c], where cdf is
    the running sum of softmax(input[b])."""
    logits = as_array(inputs[0], ctx, "input").astype(np.float64)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ctx.fail(f"input must be [batch, classes] with classes > 0, got {list(logits.shape)}")
    code = int(ctx.attr("dtype", DType.INT32.onnx))
    if code not in (DType.INT32.onnx, DType.INT64.onnx):
        raise ctx.fail(f"dtype must be int32 or int64, got {DType.from_onnx(code)}")
    samples = int(ctx.attr("sample_size", 1))
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    draws = generator(ctx).random((logits.shape[0], samples)) * cdf[:, -1:]
    classes = (cdf[:, None, :] <= draws[:, :, None]).sum(axis=2)
    return [np.minimum(classes, logits.shape[1] - 1).astype(DType.from_onnx(code).numpy)]


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Random values, deterministic shapes: from the `shape` attribute, or from the input (the *Like
# forms, Bernoulli); Multinomial draws `sample_size` classes per batch row.


def _element_type(ctx: ShapeContext, default: DType | None) -> DType | None:
    code = ctx.attr("dtype", None)
    return default if code is None else DType.from_onnx(int(code))


@shape_rule("RandomNormal", op_class=OpClass.ISDOS)
@shape_rule("RandomUniform", op_class=OpClass.ISDOS)
def random_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """RandomNormal, RandomUniform: the `shape` attribute, element type `dtype` (float32)."""
    dims = [int(d) for d in ctx.attr("shape")]
    if any(d < 0 for d in dims):
        raise ctx.fail(f"shape {dims} has a negative dim")
    return [TensorFact(_element_type(ctx, DType.FLOAT32), Shape(dims))]


@shape_rule("RandomNormalLike", op_class=OpClass.ISDOS)
@shape_rule("RandomUniformLike", op_class=OpClass.ISDOS)
@shape_rule("Bernoulli", since=15, op_class=OpClass.ISDOS)
def random_like_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """RandomNormalLike, RandomUniformLike, Bernoulli: the input's shape, element type `dtype`
    (the input's by default)."""
    return [TensorFact(_element_type(ctx, inputs[0].dtype), inputs[0].shape)]


@shape_rule("Multinomial", since=7, op_class=OpClass.ISDOS)
def multinomial_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Multinomial: [batch, sample_size] for an input [batch, classes], int32 by default."""
    dims = inputs[0].shape.dims
    if dims is not None and len(dims) != 2:
        raise ctx.fail(f"input must be [batch, classes], got {inputs[0].shape}")
    batch = ctx.fresh(note="batch of an unknown-rank input") if dims is None else dims[0]
    samples = int(ctx.attr("sample_size", 1))
    return [TensorFact(_element_type(ctx, DType.INT32), Shape([batch, samples]))]
