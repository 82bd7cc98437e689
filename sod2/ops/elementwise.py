"""Elementwise operators: arithmetic, comparison, logic and math, with numpy broadcasting.

ONNX's multidirectional broadcasting is numpy's, so most kernels are one numpy call. The care is
in the places where numpy and ONNX differ:
- integer `Div` truncates toward zero (C semantics); numpy's `//` floors;
- `Mod` follows the divisor's sign unless `fmod=1`, which follows the dividend's (C `fmod`), for
  floats as for integers;
- `Pow` returns the type of its base, whatever the exponent's type;
- integer division by zero has no defined result, so it is an error here, not a silent value.
The output dtype is always the inputs' dtype (ONNX requires equal input types), never numpy's
promotion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import (
    VALUE_ADD,
    VALUE_EQUAL,
    VALUE_EXACT_DIV,
    VALUE_FMOD,
    VALUE_GREATER,
    VALUE_LESS,
    VALUE_MAX,
    VALUE_MIN,
    VALUE_MOD,
    VALUE_MUL,
    VALUE_SUB,
    broadcast_rule,
    passthrough,
    same_as_input,
    truncating_div,
    unary_rule,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import dim_max
from sod2.ir.dtypes import DType
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule

_UnaryFn = Callable[[np.ndarray], np.ndarray]
_BinaryFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _unary(op_type: str, fn: _UnaryFn, since: int = 1) -> None:
    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = as_array(inputs[0], ctx, "input X")
        with np.errstate(all="ignore"):
            return [np.asarray(fn(x)).astype(x.dtype, copy=False)]

    kernel.__name__ = op_type.lower()
    register(op_type, since=since)(kernel)


def _binary(op_type: str, fn: _BinaryFn, since: int = 1, *, keep_type: bool = True) -> None:
    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
        _check_broadcast(ctx, a, b)
        with np.errstate(all="ignore"):
            result = np.asarray(fn(a, b))
        return [result.astype(a.dtype, copy=False) if keep_type else result]

    kernel.__name__ = op_type.lower()
    register(op_type, since=since)(kernel)


def _check_broadcast(ctx: KernelContext, *arrays: np.ndarray) -> None:
    try:
        np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(str(list(a.shape)) for a in arrays)
        raise ctx.fail(f"input shapes {shapes} do not broadcast") from None


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero, as C and ONNX do."""
    quotient = np.floor_divide(a, b)
    inexact = (quotient * b != a) & ((a < 0) != (b < 0))
    return quotient + inexact.astype(quotient.dtype)


def _div(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
    _check_broadcast(ctx, a, b)
    if a.dtype.kind in "iu":
        if np.any(b == 0):
            raise ctx.fail("integer division by zero")
        return [np.asarray(_int_div(a, b)).astype(a.dtype, copy=False)]
    with np.errstate(all="ignore"):
        return [np.asarray(np.divide(a, b)).astype(a.dtype, copy=False)]


def _mod(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    a, b = as_array(inputs[0], ctx, "input A"), as_array(inputs[1], ctx, "input B")
    _check_broadcast(ctx, a, b)
    fmod = int(ctx.attr("fmod", 0))
    if a.dtype.kind in "iu" and np.any(b == 0):
        raise ctx.fail("integer modulo by zero")
    with np.errstate(all="ignore"):
        result = np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))
    return [result.astype(a.dtype, copy=False)]


def _pow(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    base, exponent = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input Y")
    _check_broadcast(ctx, base, exponent)
    with np.errstate(all="ignore"):
        if base.dtype.kind in "iu":
            result = np.power(base.astype(np.float64), exponent.astype(np.float64))
            return [np.asarray(np.trunc(result)).astype(base.dtype)]
        power = np.power(base, exponent.astype(base.dtype))
        return [np.asarray(power).astype(base.dtype, copy=False)]


def _variadic(op_type: str, fn: _BinaryFn, since: int = 1) -> None:
    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        arrays = [as_array(v, ctx, f"input {i}") for i, v in enumerate(inputs)]
        if not arrays:
            raise ctx.fail("needs at least one input")
        _check_broadcast(ctx, *arrays)
        result = arrays[0]
        with np.errstate(all="ignore"):
            for array in arrays[1:]:
                result = fn(result, array)
        return [
            np.broadcast_to(result, np.broadcast_shapes(*(a.shape for a in arrays))).astype(
                arrays[0].dtype
            )
        ]

    kernel.__name__ = op_type.lower()
    register(op_type, since=since)(kernel)


def _mean(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    arrays = [as_array(v, ctx, f"input {i}") for i, v in enumerate(inputs)]
    _check_broadcast(ctx, *arrays)
    total = arrays[0]
    for array in arrays[1:]:
        total = total + array
    return [np.asarray(total / len(arrays)).astype(arrays[0].dtype)]


def _where(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    cond, x, y = (as_array(v, ctx, n) for v, n in zip(inputs, ("condition", "X", "Y"), strict=True))
    _check_broadcast(ctx, cond, x, y)
    return [np.where(cond.astype(bool), x, y).astype(x.dtype, copy=False)]


def _identity(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Identity passes any value through: tensor, sequence or optional."""
    return [inputs[0]]


def _not(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    return [np.asarray(np.logical_not(as_array(inputs[0], ctx, "input X")))]


def _clip(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    x = as_array(inputs[0], ctx, "input")
    if ctx.opset < 11:
        low, high = ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    else:
        low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
        high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    result = x
    if low is not None:
        result = np.maximum(result, np.asarray(low, dtype=x.dtype))
    if high is not None:
        result = np.minimum(result, np.asarray(high, dtype=x.dtype))
    return [np.asarray(result).astype(x.dtype, copy=False)]


_erf = np.vectorize(math.erf, otypes=[np.float64])

for _name, _fn in {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "BitwiseAnd": np.bitwise_and,
    "BitwiseOr": np.bitwise_or,
    "BitwiseXor": np.bitwise_xor,
}.items():
    _binary(_name, _fn)

PREDICATES: dict[str, np.ufunc] = {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}
"""The binary ops whose result is boolean, with the numpy ufunc that computes each."""

for _name, _fn in PREDICATES.items():
    _binary(_name, _fn, keep_type=False)

for _name, _fn in {
    "Neg": np.negative,
    "Abs": np.abs,
    "Sqrt": np.sqrt,
    "Exp": np.exp,
    "Log": np.log,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Reciprocal": np.reciprocal,
    "Sign": np.sign,
    "Round": np.round,  # round half to even, as ONNX specifies
    "Relu": lambda x: np.maximum(x, np.zeros((), dtype=x.dtype)),
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x.astype(np.float64))),
    "Tanh": np.tanh,
    "Erf": lambda x: _erf(x.astype(np.float64)),
    "BitwiseNot": np.invert,
}.items():
    _unary(_name, _fn)

for _name, _fn in {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}.items():
    _variadic(_name, _fn)

register("Div")(_div)
register("Mod", since=10)(_mod)
register("Pow")(_pow)
register("Mean")(_mean)
register("Where", since=9)(_where)
register("Not")(_not)
register("Identity")(_identity)
register("Clip")(_clip)


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Elementwise ops broadcast their inputs. Arithmetic, Min and Max also compute shape-tensor
# values, so `Shape(x)[2] // 2` or `Min(Shape(x))` (the paper's TopK example) stay expressions.

_VALUE_OPS = {
    "Add": VALUE_ADD,
    "Sub": VALUE_SUB,
    "Mul": VALUE_MUL,
    "Max": VALUE_MAX,
    "Min": VALUE_MIN,
    "Sum": VALUE_ADD,
}
_BOOLEAN_RESULT = {
    "Equal": VALUE_EQUAL,
    "Less": VALUE_LESS,
    "Greater": VALUE_GREATER,
    "LessOrEqual": None,
    "GreaterOrEqual": None,
    "And": None,
    "Or": None,
    "Xor": None,
}

for _name in ("BitwiseAnd", "BitwiseOr", "BitwiseXor", "Pow", "Mean", *_VALUE_OPS):
    shape_rule(_name, op_class=OpClass.ISDOS)(broadcast_rule(value_op=_VALUE_OPS.get(_name)))
for _name, _op in _BOOLEAN_RESULT.items():
    shape_rule(_name, op_class=OpClass.ISDOS)(broadcast_rule(DType.BOOL, value_op=_op))
for _name, _op in {
    "Neg": lambda v: -v,
    "Abs": lambda v: (
        v
        if isinstance(v, sympy.Expr) and v.is_nonnegative
        else abs(v)
        if isinstance(v, int)
        else None
    ),
    "Floor": lambda v: v,  # whole numbers: their own floor, ceiling and rounding
    "Ceil": lambda v: v,
    "Round": lambda v: v,
    "Relu": lambda v: dim_max(v, 0),
}.items():
    shape_rule(_name, op_class=OpClass.ISDOS)(unary_rule(_op))
for _name in (
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Sign",
    "Sigmoid",
    "Tanh",
    "Erf",
    "BitwiseNot",
    "Not",
    "Clip",
):
    shape_rule(_name, op_class=OpClass.ISDOS)(same_as_input)
shape_rule("Identity", op_class=OpClass.ISDOS)(passthrough)


@shape_rule("Where", since=9, op_class=OpClass.ISDOS)
def where_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Where: the broadcast of condition, X and Y, with X's element type."""
    shape = ctx.broadcast(*(f.shape for f in inputs if f is not None))
    return [TensorFact(inputs[1].dtype, shape)]


@shape_rule("Mod", since=10, op_class=OpClass.ISDOS)
def mod_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Mod: broadcast; values follow the divisor's sign, or the dividend's with fmod=1."""
    value_op = VALUE_FMOD if ctx.attr("fmod", 0) else VALUE_MOD
    return broadcast_rule(value_op=value_op)(ctx, inputs)


@shape_rule("Div", op_class=OpClass.ISDOS)
def div_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Div: broadcast; integer values truncate toward zero, float values divide exactly (kept
    only when the quotient is a whole number)."""
    dtype = inputs[0].dtype
    exact = dtype is not None and (dtype.is_integer or dtype is DType.BOOL)
    return broadcast_rule(value_op=truncating_div(ctx) if exact else VALUE_EXACT_DIV)(ctx, inputs)
