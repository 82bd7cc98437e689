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

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import broadcasts_to, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.quantize import requantize
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


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


# -- shape rules (RDP) -------------------------------------------------------------------------


def matmul_dims(ctx: ShapeContext, a: Shape, b: Shape) -> Shape:
    """numpy's matmul: [*broadcast(A[:-2], B[:-2]), A[-2], B[-1]] with A[-1] = B[-2]; a 1-D A
    (B) is a row (column) whose added axis is dropped from the result."""
    if a.dims is None or b.dims is None:
        return Shape.unknown()
    if not a.dims or not b.dims:
        raise ctx.fail(f"MatMul operands must have rank >= 1, got {a} and {b}")
    left = [1, *a.dims] if len(a.dims) == 1 else list(a.dims)
    right = [*b.dims, 1] if len(b.dims) == 1 else list(b.dims)
    ctx.same(left[-1], right[-2], "A's last dim = B's second-to-last (the contracted K)")
    batch = ctx.broadcast(Shape(left[:-2]), Shape(right[:-2]))
    rows = [left[-2]] if len(a.dims) > 1 else []
    columns = [right[-1]] if len(b.dims) > 1 else []
    return Shape([*batch.dims, *rows, *columns])  # type: ignore[misc]


@shape_rule("MatMul", op_class=OpClass.ISDOS)
def matmul_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """MatMul: [*batch, M, N] from A [*batch_a, M, K] and B [*batch_b, K, N] (see matmul_dims)."""
    return [TensorFact(inputs[0].dtype, matmul_dims(ctx, inputs[0].shape, inputs[1].shape))]


@shape_rule("MatMulInteger", since=10, op_class=OpClass.ISDOS)
def matmul_integer_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """MatMulInteger: MatMul's shape, int32."""
    return [TensorFact(DType.INT32, matmul_dims(ctx, inputs[0].shape, inputs[1].shape))]


@shape_rule("QLinearMatMul", since=10, op_class=OpClass.ISDOS)
def qlinear_matmul_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """QLinearMatMul: MatMul's shape of a (input 0) and b (input 3), y_zero_point's type."""
    y_zero = optional(inputs, 7)
    dtype = inputs[0].dtype if y_zero is None else y_zero.dtype
    return [TensorFact(dtype, matmul_dims(ctx, inputs[0].shape, inputs[3].shape))]


@shape_rule("Gemm", op_class=OpClass.ISDOS)
def gemm_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Gemm: [M, N] from A' [M, K] and B' [K, N] (A' = A^T if transA, B' = B^T if transB);
    C broadcasts one way to [M, N]."""
    a, b = inputs[0].shape.dims, inputs[1].shape.dims
    if a is None or b is None:
        return [TensorFact(inputs[0].dtype, ctx.unknown_shape(2, "Gemm of unknown rank"))]
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"A {inputs[0].shape} and B {inputs[1].shape} must be matrices")
    rows, inner = (a[1], a[0]) if ctx.attr("transA", 0) else (a[0], a[1])
    inner_b, columns = (b[1], b[0]) if ctx.attr("transB", 0) else (b[0], b[1])
    ctx.same(inner, inner_b, "A' and B' agree on K")
    c = optional(inputs, 2)
    if c is not None and c.shape.dims is not None and ctx.attr("beta", 1.0) != 0.0:
        broadcasts_to(ctx, c, Shape([rows, columns]), "C")
    return [TensorFact(inputs[0].dtype, Shape([rows, columns]))]


@shape_rule("Einsum", since=12, op_class=OpClass.ISDOS)
def einsum_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Einsum: each output label takes the extent of that label in the inputs (repeated labels
    must agree), `...` the broadcast of the inputs' ellipsis dims; the implicit output is the
    ellipsis, then the labels used once, in ASCII order."""
    equation = str(ctx.attr("equation", "")).replace(" ", "")
    terms, output = _einsum_terms(ctx, equation, len(inputs))
    dtype = inputs[0].dtype
    if any(f.shape.dims is None for f in inputs):
        rank = None if "..." in output else len(output)
        return [TensorFact(dtype, ctx.unknown_shape(rank, "Einsum of an unknown-rank input"))]
    extents: dict[str, Dim] = {}
    ellipses: list[Shape] = []
    for term, fact in zip(terms, inputs, strict=True):
        labels, ellipsis = _split_ellipsis(ctx, term, fact.shape)
        ellipses.append(Shape(ellipsis))
        for label, dim in labels:
            known = extents.get(label)
            extents[label] = dim if known is None else ctx.same(known, dim, f"label {label!r}")
    dims: list[Dim] = []
    for label in output.replace("...", "."):
        if label == ".":
            dims.extend(ctx.broadcast(*ellipses).dims or ())
        elif label in extents:
            dims.append(extents[label])
        else:
            raise ctx.fail(f"output label {label!r} of {equation!r} is in no input")
    return [TensorFact(dtype, Shape(dims))]


def _einsum_terms(ctx: ShapeContext, equation: str, count: int) -> tuple[list[str], str]:
    """The input terms and the output term (the implicit one when there is no '->')."""
    given, arrow, output = equation.partition("->")
    terms = given.split(",")
    if len(terms) != count:
        raise ctx.fail(f"equation {equation!r} has {len(terms)} terms for {count} inputs")
    if arrow:
        return terms, output
    labels = "".join(terms).replace("...", "")
    once = sorted(label for label in set(labels) if labels.count(label) == 1)
    return terms, ("..." if "..." in given else "") + "".join(once)


def _split_ellipsis(
    ctx: ShapeContext, term: str, shape: Shape
) -> tuple[list[tuple[str, Dim]], list[Dim]]:
    """(label, dim) pairs of one input and the dims its `...` stands for."""
    dims = list(shape.dims or ())
    head, dots, tail = term.partition("...")
    named = len(head) + len(tail)
    if (not dots and named != len(dims)) or named > len(dims):
        raise ctx.fail(f"term {term!r} does not fit an input of shape {shape}")
    middle = dims[len(head) : len(dims) - len(tail)]
    pairs = list(zip(head, dims[: len(head)], strict=True))
    pairs += list(zip(tail, dims[len(dims) - len(tail) :], strict=True))
    return pairs, middle
