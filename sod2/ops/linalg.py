"""Linear algebra: MatMul, Gemm, Einsum and their integer and quantized forms.

All of them are one contraction each, done by numpy's BLAS-backed `matmul` / `einsum`. The care is
in the places where ONNX and numpy differ:
- the result keeps the inputs' element type: float16 and bfloat16 are multiplied in float32 and
  cast back (numpy would accumulate float16 in float16, and has no bfloat16 matmul at all);
- Gemm's `C` broadcasts one way only, to the (M, N) product, never the product to `C`;
- integer matmuls (MatMulInteger, QLinearMatMul) subtract zero points first and accumulate in
  int32 (wrapping, as ONNX allows), where numpy would widen to int64;
- a 1-D zero point of MatMulInteger's `A` is per row (one value per row of `A`), which numpy
  broadcasting would instead apply along the last axis.
Einsum keeps numpy's notation, which is ONNX's: ellipsis, repeated indices, implicit output in
ASCII order; spaces are allowed in ONNX equations and removed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.ops.quantize import requantize
from sod2.ops.registry import KernelContext, Value, as_array, register


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """The type a contraction of `dtype` values runs in: float32 for narrow floats, else itself."""
    if dtype.kind in "iub" or dtype in (np.float32, np.float64):
        return dtype
    return np.dtype(np.float32)


def matmul_checked(ctx: KernelContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a @ b` with numpy's (= ONNX's) batching rules; shapes that do not fit fail by name."""
    if a.ndim == 0 or b.ndim == 0:
        raise ctx.fail(f"MatMul operands must have rank >= 1, got shapes {_dims(a)} and {_dims(b)}")
    try:
        return np.asarray(np.matmul(a, b))
    except ValueError:
        raise ctx.fail(
            f"shapes {_dims(a)} and {_dims(b)} do not fit a matrix product (the last dim of A "
            f"must equal the second-to-last of B and batch dims must broadcast)"
        ) from None


def _dims(array: np.ndarray) -> list[int]:
    return list(array.shape)


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


@register("MatMul")
def matmul(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MatMul: Y[..., i, j] = sum_k A[..., i, k] * B[..., k, j], batch dims broadcast (numpy)."""
    a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
    work = accumulation_dtype(a.dtype)
    return [
        matmul_checked(ctx, a.astype(work, copy=False), b.astype(work, copy=False)).astype(
            a.dtype, copy=False
        )
    ]


@register("Gemm")
def gemm(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Gemm: Y = alpha * A' B' + beta * C, A' = A^T if transA, B' = B^T if transB, C -> (M, N)."""
    a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
    c = _optional(inputs, 2)
    if a.ndim != 2 or b.ndim != 2:
        raise ctx.fail(f"A and B must be matrices, got shapes {_dims(a)} and {_dims(b)}")
    a_used = a.T if ctx.attr("transA", 0) else a
    b_used = b.T if ctx.attr("transB", 0) else b
    if a_used.shape[1] != b_used.shape[0]:
        raise ctx.fail(
            f"A' {_dims(a_used)} and B' {_dims(b_used)} disagree on K (after transA/transB)"
        )
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    work = accumulation_dtype(a.dtype)
    product = np.matmul(a_used.astype(work, copy=False), b_used.astype(work, copy=False))
    result = product if alpha == 1.0 else product * _scalar(alpha, work)
    if c is not None and beta != 0.0:
        c_array = as_array(c, ctx, "input C").astype(work, copy=False)
        try:
            np.broadcast_to(c_array, result.shape)
        except ValueError:
            raise ctx.fail(
                f"C of shape {_dims(c_array)} does not broadcast to the product's {_dims(result)}"
            ) from None
        result = result + (c_array if beta == 1.0 else c_array * _scalar(beta, work))
    return [result.astype(a.dtype, copy=False)]


def _scalar(value: float, dtype: np.dtype) -> np.generic | float:
    """A float factor in the arithmetic of `dtype` (integers scale in float64, then truncate)."""
    return value if dtype.kind in "iu" else dtype.type(value)


@register("Einsum", since=12)
def einsum(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Einsum: output[out-term] = sum over the other indices of prod_i input_i[term_i]."""
    equation = str(ctx.attr("equation", "")).replace(" ", "")
    operands = [as_array(v, ctx, f"input {i}") for i, v in enumerate(inputs)]
    if not operands:
        raise ctx.fail("Einsum needs at least one input")
    dtype = operands[0].dtype
    work = accumulation_dtype(dtype)
    try:
        result = np.einsum(
            equation, *(x.astype(work, copy=False) for x in operands), optimize=len(operands) > 1
        )
    except ValueError as error:
        shapes = ", ".join(str(_dims(x)) for x in operands)
        raise ctx.fail(f"equation {equation!r} does not fit inputs {shapes}: {error}") from None
    return [np.asarray(result).astype(dtype, copy=False)]


@register("MatMulInteger", since=10)
def matmul_integer(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MatMulInteger: Y = (A - a_zero_point) @ (B - b_zero_point), accumulated in int32."""
    a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
    a_zero = _row_zero_point(ctx, _optional(inputs, 2), a, "a_zero_point")
    b_zero = _zero_point(_optional(inputs, 3))
    shifted_a = a.astype(np.int64) - a_zero
    shifted_b = b.astype(np.int64) - b_zero
    return [matmul_checked(ctx, shifted_a, shifted_b).astype(np.int32)]


def _zero_point(value: Value) -> np.ndarray | int:
    return 0 if value is None else np.asarray(value).astype(np.int64)


def _row_zero_point(ctx: KernelContext, value: Value, a: np.ndarray, what: str) -> np.ndarray | int:
    """A zero point (or scale) of A: a scalar, one value per row ([M] -> [M, 1]) or N-D as given."""
    if value is None:
        return 0
    array = np.asarray(value)
    if array.ndim == 1 and array.size > 1 and a.ndim >= 2:
        if array.size != a.shape[-2]:
            raise ctx.fail(f"{what} has {array.size} values for the {a.shape[-2]} rows of A")
        array = array.reshape(-1, 1)
    return array.astype(np.int64) if array.dtype.kind in "iu" else array


@register("QLinearMatMul", since=10)
def qlinear_matmul(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """QLinearMatMul: y = saturate(round((a - a_zp) @ (b - b_zp) * a_scale * b_scale / y_scale) + y_zp)."""
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (
        _optional(inputs, i) for i in range(8)
    )
    a, b = as_array(a, ctx, "input a"), as_array(b, ctx, "input b")
    for name, array in (("a", a), ("b", b)):
        if array.dtype.kind not in "iu":
            raise ctx.unsupported(f"QLinearMatMul input {name} of type {array.dtype}")
    shifted_a = a.astype(np.int64) - _row_zero_point(ctx, a_zero, a, "a_zero_point")
    shifted_b = b.astype(np.int64) - _zero_point(b_zero)
    accumulated = matmul_checked(ctx, shifted_a, shifted_b)
    scale_a = _row_zero_point(ctx, as_array(a_scale, ctx, "a_scale"), a, "a_scale")
    scale_b = as_array(b_scale, ctx, "b_scale")
    output_scale = _row_zero_point(ctx, as_array(y_scale, ctx, "y_scale"), a, "y_scale")
    multiplier = scale_a * scale_b / output_scale
    output_type = a.dtype if y_zero is None else np.asarray(y_zero).dtype
    return [requantize(accumulated * multiplier.astype(np.float64), y_zero, output_type)]
