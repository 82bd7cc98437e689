"""Building blocks of shape rules, shared by the operator families in `sod2.ops`.

A shape rule maps input `TensorFact`s to output facts (see `sod2.analysis.shape_context`). Most
operators follow a few patterns, given here once:

- `same_as_input`: output like input 0 (unary elementwise ops, activations, normalizations);
- `broadcast_rule`: multidirectional broadcast of all inputs, with value arithmetic for shape
  tensors (so `Shape(x)[0] * 2` stays `2*N`);
- `int_values` / `value_dims`: read a shape-tensor input as ints or as dims, None if unknown;
- `normalize_axes`, `reduce_dims`: axis handling with the same errors as the kernels.

Value arithmetic is exact: integer Div truncates toward zero, which for symbolic operands is only
expressed when both are known non-negative (extents are), else the element becomes unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy

from sod2.analysis.facts import Facts, SymbolOrigin, TensorFact, ValueFact
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import dim_max, dim_min, floor_div, provably_equal
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape

Element = int | sympy.Expr | None
Rule = Callable[[ShapeContext, Facts], list[TensorFact]]
ValueOp = Callable[[Element, Element], Element]


def same_as_input(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Output 0 has input 0's type and shape (values are not carried)."""
    return [TensorFact(inputs[0].dtype, inputs[0].shape)]


def passthrough(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Output 0 is input 0, value included (Identity)."""
    return [inputs[0]]


def unary_rule(op: Callable[[int | sympy.Expr], Element]) -> Rule:
    """A rule: input 0's type and shape, its value mapped elementwise by `op` (Neg, Abs ...)."""

    def rule(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
        source = inputs[0]
        value = None
        if source.value is not None:
            value = tuple(None if v is None else _to_element(op(v)) for v in source.value)
        return [TensorFact(source.dtype, source.shape, value)]

    return rule


def with_dtype(dtype: DType) -> Rule:
    """A rule: input 0's shape, element type `dtype` (IsNaN, Not ...)."""

    def rule(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
        return [TensorFact(dtype, inputs[0].shape)]

    return rule


def broadcast_rule(dtype: DType | None = None, value_op: ValueOp | None = None) -> Rule:
    """A rule: broadcast all present inputs; element type `dtype` or input 0's; `value_op`
    combines shape-tensor values elementwise (with broadcasting) when every input has one."""

    def rule(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
        present = [fact for fact in inputs if fact is not None]
        shape = ctx.broadcast(*(fact.shape for fact in present))
        value = None
        if value_op is not None and present and all(f.value is not None for f in present):
            value = _combine_values([f.value for f in present], value_op, shape)  # type: ignore[misc]
        return [TensorFact(dtype or inputs[0].dtype, shape, value)]

    return rule


def _combine_values(values: list[ValueFact], op: ValueOp, shape: Shape) -> ValueFact | None:
    if shape.dims is None or len(shape.dims) > 1:
        return None
    length = max(len(v) for v in values)
    if any(len(v) not in (1, length) for v in values):
        return None
    result = []
    for index in range(length):
        items = [v[index] if len(v) > 1 else v[0] for v in values]
        accumulated = items[0]
        for item in items[1:]:
            accumulated = op(accumulated, item)
        result.append(accumulated)
    return tuple(result)


def _known(op: Callable[[Element, Element], Element]) -> ValueOp:
    def apply(left: Element, right: Element) -> Element:
        if left is None or right is None:
            return None
        return op(left, right)

    return apply


def _to_element(value: int | sympy.Expr | None) -> Element:
    if isinstance(value, sympy.Expr) and value.is_Integer:
        return int(value)
    return value


def _truncating_div(left: int | sympy.Expr, right: int | sympy.Expr) -> Element:
    if isinstance(left, int) and isinstance(right, int):
        if right == 0:
            return None
        quotient = abs(left) // abs(right)
        return quotient if (left >= 0) == (right >= 0) else -quotient
    if sympy.sympify(left).is_nonnegative and isinstance(right, int) and right > 0:
        return floor_div(left, right)
    if sympy.sympify(left).is_nonnegative and sympy.sympify(right).is_positive:
        return floor_div(left, right)
    return None


def _exact_div(left: int | sympy.Expr, right: int | sympy.Expr) -> Element:
    """Division of float values: kept only when the quotient is a whole number."""
    if right == 1:
        return left
    if isinstance(left, int) and isinstance(right, int) and right != 0 and left % right == 0:
        return left // right
    return None


def _c_fmod(left: int | sympy.Expr, right: int | sympy.Expr) -> Element:
    """C's fmod: the remainder takes the sign of the dividend."""
    if isinstance(left, int) and isinstance(right, int) and right != 0:
        remainder = abs(left) % abs(right)
        return remainder if left >= 0 else -remainder
    if sympy.sympify(left).is_nonnegative and isinstance(right, int) and right > 0:
        return _python_mod(left, right)  # the signs agree: C's fmod is Python's mod
    return None


def _python_mod(left: int | sympy.Expr, right: int | sympy.Expr) -> Element:
    """Mod with the divisor's sign: a - m*floor(a/m), exact for a symbolic a and m > 0."""
    if isinstance(left, int) and isinstance(right, int):
        return left % right if right != 0 else None
    if isinstance(right, int) and right > 0:
        return _to_element(sympy.expand(left - right * sympy.sympify(floor_div(left, right))))
    return None


VALUE_ADD: ValueOp = _known(lambda a, b: _to_element(a + b))
VALUE_SUB: ValueOp = _known(lambda a, b: _to_element(a - b))
VALUE_MUL: ValueOp = _known(lambda a, b: _to_element(a * b))
VALUE_DIV: ValueOp = _known(_truncating_div)
VALUE_MOD: ValueOp = _known(_python_mod)
VALUE_EXACT_DIV: ValueOp = _known(_exact_div)
VALUE_FMOD: ValueOp = _known(_c_fmod)
VALUE_MIN: ValueOp = _known(lambda a, b: _to_element(dim_min(a, b)))
VALUE_MAX: ValueOp = _known(lambda a, b: _to_element(dim_max(a, b)))


def _compare(test: Callable[[int, int], bool]) -> ValueOp:
    def apply(left: Element, right: Element) -> Element:
        if isinstance(left, int) and isinstance(right, int):
            return int(test(left, right))
        return None

    return apply


VALUE_EQUAL: ValueOp = _compare(lambda a, b: a == b)
VALUE_LESS: ValueOp = _compare(lambda a, b: a < b)
VALUE_GREATER: ValueOp = _compare(lambda a, b: a > b)


# -- reading shape tensors ---------------------------------------------------------------------


def int_values(fact: TensorFact) -> list[int] | None:
    """The elements of a shape tensor when all are known ints, else None."""
    if fact.value is None or not all(isinstance(v, int) for v in fact.value):
        return None
    return list(fact.value)  # type: ignore[arg-type]


def value_dims(fact: TensorFact) -> list[Element] | None:
    """The elements of a shape tensor (ints, expressions, None for unknown), or None."""
    return None if fact.value is None else list(fact.value)


def static_length(fact: TensorFact) -> int | None:
    """The number of elements of a 0-d or 1-d tensor with a static shape, else None."""
    dims = fact.shape.dims
    if dims is None or len(dims) > 1 or not all(isinstance(d, int) for d in dims):
        return None
    return int(dims[0]) if dims else 1


def optional(inputs: Sequence[TensorFact | None], index: int) -> TensorFact | None:
    """Input `index` if the node has it (omitted optional inputs are None), else None."""
    return inputs[index] if index < len(inputs) else None


# -- dims --------------------------------------------------------------------------------------


def dims_or_unknown(
    ctx: ShapeContext, dims: Sequence[Element], note: str, *, at_least: int = 0
) -> list[Dim]:
    """Dims from value elements. Unknown or negative elements become fresh symbols; an expression
    not provably `>= at_least` is used under that recorded assumption (Reshape needs 1: a 0 there
    would mean "copy the input dim")."""
    result: list[Dim] = []
    for dim in dims:
        if dim is None or (isinstance(dim, int) and dim < 0):
            result.append(ctx.fresh(note=note))
            continue
        if isinstance(dim, sympy.Expr):
            bound = sympy.Ge(dim, at_least)
            if bound is sympy.false:
                result.append(ctx.fresh(note=note))
                continue
            if bound is not sympy.true:  # printing `dim` costs more than the proof
                ctx.assume(bound, f"{note} {dim} is at least {at_least}")
        result.append(dim)  # type: ignore[arg-type]
    return result


def join(ctx: ShapeContext, first: TensorFact, second: TensorFact) -> TensorFact:
    """The fact that holds whichever of two facts turns out true (the two branches of an If).

    Equal dims stay; differing dims become a BRANCH symbol that records both possibilities.
    """
    dtype = first.dtype if first.dtype == second.dtype else None
    a, b = first.shape.dims, second.shape.dims
    if a is None or b is None or len(a) != len(b):
        shape = Shape.unknown()
    else:
        shape = Shape(
            [
                x
                if provably_equal(x, y)
                else ctx.fresh(
                    SymbolOrigin.BRANCH, possible_values=(x, y), note="differs by branch"
                )
                for x, y in zip(a, b, strict=True)
            ]
        )
    value = None
    if (
        first.value is not None
        and second.value is not None
        and len(first.value) == len(second.value)
    ):
        value = tuple(
            x if x is not None and y is not None and provably_equal(x, y) else None
            for x, y in zip(first.value, second.value, strict=True)
        )
    return TensorFact(dtype, shape, value)


def facts_agree(first: TensorFact, second: TensorFact) -> bool:
    """True when two facts give the same element type and provably the same shape."""
    a, b = first.shape.dims, second.shape.dims
    return (
        first.dtype == second.dtype
        and a is not None
        and b is not None
        and len(a) == len(b)
        and all(provably_equal(x, y) for x, y in zip(a, b, strict=True))
    )


def exact_div(ctx: ShapeContext, extent: Dim, divisor: Dim, why: str) -> Dim:
    """extent / divisor where the op needs the division exact (channels per group, heads,
    DepthToSpace blocks): the quotient, with divisibility proven, assumed (the runtime checks
    it) or, for two ints, a ShapeError."""
    if isinstance(extent, int) and isinstance(divisor, int):
        if divisor <= 0 or extent % divisor:
            raise ctx.fail(f"{why}: {extent} is not divisible by {divisor}")
        return extent // divisor
    ctx.assume(sympy.Eq(sympy.Mod(extent, divisor), 0), why)
    return floor_div(extent, divisor)  # type: ignore[return-value]


def truncating_div(ctx: ShapeContext) -> ValueOp:
    """Integer Div of shape values (truncation toward zero). For a symbolic numerator not known
    to be non-negative it is floor division under the recorded assumption that it is."""

    def divide(left: Element, right: Element) -> Element:
        if left is None or right is None:
            return None
        exact = _truncating_div(left, right)
        if exact is not None or not (isinstance(right, int) and right > 0):
            return exact
        ctx.assume(sympy.Ge(left, 0), f"shape value {left} divided by {right} is non-negative")
        return floor_div(left, right)

    return divide


def broadcasts_to(ctx: ShapeContext, fact: TensorFact | None, target: Shape, what: str) -> None:
    """Unidirectional broadcasting: `fact`'s dims (right-aligned) are each 1 or the target's
    extent, and its rank is at most the target's (PRelu's slope, LayerNorm's scale ...)."""
    dims = None if fact is None else fact.shape.dims
    if dims is None or target.dims is None:
        return
    if len(dims) > len(target.dims):
        raise ctx.fail(f"{what} {Shape(dims)} has a higher rank than {target}")
    for dim, extent in zip(reversed(dims), reversed(target.dims), strict=False):
        if provably_equal(dim, 1) or provably_equal(dim, extent):
            continue
        if isinstance(dim, int) and isinstance(extent, int):
            raise ctx.fail(f"{what} {Shape(dims)} does not broadcast to {target}")
        ctx.assume(sympy.Eq(dim, 1) | sympy.Eq(dim, extent), f"{what} broadcasts to {target}")
