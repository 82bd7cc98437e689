"""Numba code generation for fused elementwise and broadcast groups.

A fused group (`sod2::Fused`, see `sod2.opt.fusion`) is a body graph of elementwise and broadcast
ops. It becomes Python source for one loop nest over the iteration space (the broadcast of its
inputs' shapes), compiled with `numba.njit`. The source is not written for one shape but for a
*signature*, chosen at each call by a cheap look at the shapes (MVC, multi-versioning):

- dims of extent 1 disappear; adjacent dims along which every operand behaves alike (all full, or
  broadcast in the same operands) merge into one. Contiguous operands of one shape give one flat
  loop; `Sigmoid(A[I,1,1]) + B[I,J,K]` gives two loops, `I` and the merged `J*K`;
- an operand that is broadcast along a dim is indexed with 0 there, never copied;
- every value is computed at the shallowest loop where its operands are defined (loop-invariant
  code motion): the sigmoid of `A[i]` above runs once per `i`, outside the `J*K` loop;
- iteration spaces of at least `PARALLEL_MIN` elements (fewer in groups with transcendental
  functions, whose elements cost more: `parallel_threshold`) get a `numba.prange` outer loop;
  smaller ones a serial version (no thread start-up cost).

Each version's source is a module of its own, named by the hash of its text, written under
`$SOD2_CACHE_DIR/kernels` (default `~/.cache/sod2/kernels`) and compiled with `cache=True`
(`sod2.cache`): groups with the same structure share one compiled version in a process
(`_COMPILED`), and a second process loads machine code instead of compiling.

Scalar semantics follow the reference kernels (`sod2/ops/`): arithmetic in the operands' type
(float32 stays float32: constants are typed module globals, never Python floats), transcendental
functions evaluated in float64 and rounded once, integer Div truncating toward zero (and a zero
divisor an error), Round half to even, NaN propagated by Max, Min, Relu and Clip. The exception:
float32 Exp, Sigmoid, Tanh, Erf and Gelu, the activations of real models, are computed by float32
helpers made of arithmetic alone (`_exp32` builds 2^n from exponent bits with
`sod2.backend.intrinsics.float32_from_bits`), so that LLVM vectorizes the loop around them, where
a libm call would compute one element at a time. They stay within 1e-6 of float64 (relative, on
normal float32 results; 2e-5 for Gelu's tanh form in its far tail), with inf, NaN and 0 exact;
results below float32's smallest normal (e^-87.3) flush to 0. Their polynomials are written in
Estrin's form (`_polynomial`), whose short chains of dependent operations let the CPU overlap
neighbouring vectors. float32 Sqrt, Ceil, Floor and Round stay in float32 as well: each rounds
exactly, so the result is the one float64 would give after its rounding.

Kernels are compiled with `fastmath={'contract'}` and no other fast-math flag: LLVM may fuse a
multiply and the add that uses it into one FMA (one rounding instead of two, as C compilers do
by default), which halves the instructions of the helpers' polynomials (the exponential runs
about twice as fast). NaN, infinities, signed zeros and the order of every sum stay IEEE's.

Invariants: a kernel reads every input element of an iteration before it writes that iteration's
output elements, so an output may be the same array as an input of the iteration shape (in place).
Such a call runs a version of its own that reads that input through the output
(`Signature.in_place`): LLVM vectorizes a loop only after a run-time check that its arrays do not
overlap, and two names for one buffer fail that check, so the loop would run one element at a
time (5 to 6 times slower with a Sigmoid). An input that overlaps an output any other way is
copied before the call. Shapes that do not broadcast, or outputs of the wrong shape or type, are
a `CodegenError` naming the group and its tensors, raised before any element is written.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sod2.cache import cache_dir, digest, import_source
from sod2.errors import Sod2Error
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.types import TensorType
from sod2.ops.activation import ERFC_FIT
from sod2.ops.patterns import BROADCAST_OPS, ELEMENTWISE_OPS

PARALLEL_MIN = 1 << 16
"""Iteration spaces with at least this many elements get a parallel outer loop (a group of cheap
ops; see `parallel_threshold` for groups that evaluate transcendental functions)."""

TRANSCENDENTAL_OPS = frozenset(
    {
        "Exp", "Log", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Tanh",
        "Asinh", "Acosh", "Atanh", "Erf", "Sigmoid", "Softplus", "Elu", "Selu", "Celu", "Gelu",
        "Mish", "Pow",
    }
)  # fmt: skip
"""Ops whose element costs tens of cycles (a libm call in float64), not one."""

TRANSCENDENTAL_WEIGHT = 16
"""How many cheap element operations one transcendental element is worth, for the threshold."""


class CodegenError(Sod2Error):
    """A fused group that cannot be generated, or a call with shapes that do not fit it."""


# -- element kinds: what each op accepts -------------------------------------------------------

_FLOATS = frozenset({DType.FLOAT32, DType.FLOAT64})
_INTS = frozenset(
    {DType.INT8, DType.INT16, DType.INT32, DType.INT64}
    | {DType.UINT8, DType.UINT16, DType.UINT32, DType.UINT64}
)
_BOOLS = frozenset({DType.BOOL})
_NUMBERS = _FLOATS | _INTS
_ANY = _NUMBERS | _BOOLS

_ACCEPTS: dict[str, frozenset[DType]] = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"), _NUMBERS),
    **dict.fromkeys(("Less", "LessOrEqual", "Greater", "GreaterOrEqual"), _NUMBERS),
    **dict.fromkeys(("Abs", "Neg", "Sign", "Relu", "PRelu", "Clip"), _NUMBERS),
    **dict.fromkeys(("And", "Or", "Xor", "Not"), _BOOLS),
    **dict.fromkeys(("Equal", "Where", "Cast", "Identity"), _ANY),
}
"""The element types of its (first data) input an op is generated for; every other op of the
pattern tables computes floats only (`_FLOATS`)."""


def _arity(op: str) -> tuple[int, int]:
    """The least and most tensor inputs an op takes."""
    if op in ("Sum", "Max", "Min", "Mean"):
        return 1, 1 << 30
    if op == "Clip":
        return 1, 3
    if op == "Where":
        return 3, 3
    return (2, 2) if op in BROADCAST_OPS else (1, 1)


# -- scalar expressions ------------------------------------------------------------------------


class _Scalar:
    """What an op's expression generator may use: attributes, typed constants, the output type."""

    def __init__(self, module: _Module, node: Node, dtypes: list[DType], out: DType) -> None:
        self.module = module
        self.node = node
        self.dtypes = dtypes
        self.out = out

    @property
    def t(self) -> str:
        """The output type's constructor in the generated module (`T_float32`)."""
        return self.module.type_name(self.out)

    def const(self, value: float) -> str:
        """A module-level constant of the output's type (so float32 math stays float32)."""
        return self.module.constant(value, self.out)

    def attr(self, name: str, default: Any) -> Any:
        return self.node.attr(name, default)

    def number(self, name: str, default: float) -> str:
        """A float attribute as a float64 literal, for expressions computed in float64."""
        return repr(float(self.attr(name, default)))

    def wide(self, expr: str) -> str:
        """`expr`, computed in float64, rounded once to the output type."""
        return f"{self.t}({expr})"


Emit = Callable[[_Scalar, list[str]], str]
"""The expression of one op from its operands' variable names ("" for an omitted input)."""


def _f(x: str) -> str:
    return f"float({x})"


def _binary(symbol: str) -> Emit:
    return lambda s, a: f"{s.t}({a[0]} {symbol} {a[1]})"


def _compare(symbol: str) -> Emit:
    return lambda s, a: f"({a[0]} {symbol} {a[1]})"


def _float64(function: str) -> Emit:
    """A float function of one operand: `function(float64(x))`, rounded once."""
    return lambda s, a: s.wide(f"{function}({_f(a[0])})")


def _narrow(float32: str, float64: str) -> Emit:
    """`float32(x)` for float32 (a helper without libm calls, or an operation that rounds
    exactly in float32 too: the loop vectorizes at full width), else `float64(float64(x))`
    rounded once."""
    wide = _float64(float64)
    return lambda s, a: f"{float32}({a[0]})" if s.out is DType.FLOAT32 else wide(s, a)


def _fold(function: str) -> Emit:
    def emit(s: _Scalar, a: list[str]) -> str:
        expr = a[0]
        for operand in a[1:]:
            expr = f"{function}({expr}, {operand})"
        return f"{s.t}({expr})"

    return emit


def _div(s: _Scalar, a: list[str]) -> str:
    if s.out in _INTS:
        return f"{s.t}(_trunc_div({a[0]}, {a[1]}))"
    return f"{s.t}({a[0]} / {a[1]})"


def _clip(s: _Scalar, a: list[str]) -> str:
    if s.module.opset < 11:
        low = s.const(float(s.attr("min", -math.inf)))
        high = s.const(float(s.attr("max", math.inf)))
        return f"_min(_max({a[0]}, {low}), {high})"
    expr = a[0]
    if len(a) > 1 and a[1]:
        expr = f"_max({expr}, {a[1]})"
    if len(a) > 2 and a[2]:
        expr = f"_min({expr}, {a[2]})"
    return f"{s.t}({expr})"


def _relu(s: _Scalar, a: list[str]) -> str:
    return f"{s.t}(_max({a[0]}, {s.const(0)}))"


def _cast(s: _Scalar, a: list[str]) -> str:
    source = s.dtypes[0]
    if s.out is DType.BOOL:
        return f"({a[0]} != 0)"
    if source in _FLOATS and s.out in _INTS and s.out is not DType.UINT64:
        # like the reference: truncate to int64, then keep the low bits
        return f"{s.t}(np.int64({a[0]}))"
    return f"{s.t}({a[0]})"


def _sign(s: _Scalar, a: list[str]) -> str:
    sign = f"{s.t}(({a[0]} > 0) - ({a[0]} < 0))"
    return f"({a[0]} if {a[0]} != {a[0]} else {sign})" if s.out in _FLOATS else sign


def _gelu(s: _Scalar, a: list[str]) -> str:
    if s.out is DType.FLOAT32:
        if s.attr("approximate", "none") == "tanh":  # 0.5 (1 + tanh(u)) = sigmoid(2u)
            c = 2 * math.sqrt(2 / math.pi)
            u = f"{s.const(c)} * ({a[0]} + {s.const(0.044715)} * {a[0]} * {a[0]} * {a[0]})"
            return f"{s.t}({a[0]} * _sigmoid32({u}))"
        # erfc(-z) rather than 1 + erf(z): keeps the relative accuracy of large negative x
        root = f"np.float32({math.sqrt(0.5)!r})"
        return f"{s.t}({s.const(0.5)} * {a[0]} * _erfc32(-{a[0]}, {root}, np.float32(0.5)))"
    x = _f(a[0])
    if s.attr("approximate", "none") == "tanh":
        c = math.sqrt(2 / math.pi)
        return s.wide(f"0.5 * {x} * (1.0 + math.tanh({c!r} * ({x} + 0.044715 * {x} ** 3)))")
    # erfc(-z) rather than 1 + erf(z): keeps the relative accuracy of large negative x
    return s.wide(f"0.5 * {x} * math.erfc(-{x} * {math.sqrt(0.5)!r})")


def _is_inf(s: _Scalar, a: list[str]) -> str:
    positive, negative = bool(s.attr("detect_positive", 1)), bool(s.attr("detect_negative", 1))
    tests = [f"{a[0]} == math.inf"] * positive + [f"{a[0]} == -math.inf"] * negative
    return f"({' or '.join(tests)})" if tests else "False"


def _pow(s: _Scalar, a: list[str]) -> str:
    """x ** y as C pow in float64 (NaN, never complex, for a negative base); a float x squared
    by a constant 2 is x * x, which is what pow rounds to (the exact square of a float32 fits a
    float64, and both are correctly rounded), and vectorizes."""
    if s.out in (DType.FLOAT32, DType.FLOAT64) and s.dtypes[0] is s.out:
        exponent = s.module.values.get(a[1])
        if exponent is not None and not isinstance(exponent, bool) and exponent == 2:
            return f"{s.t}({a[0]} * {a[0]})"
    return s.wide(f"{_f(a[0])} ** {_f(a[1])}")


_EXPRESSIONS: dict[str, Emit] = {
    "Add": _binary("+"),
    "Sub": _binary("-"),
    "Mul": _binary("*"),
    "Div": _div,
    "Pow": _pow,
    "Max": _fold("_max"),
    "Min": _fold("_min"),
    "Sum": lambda s, a: f"{s.t}({' + '.join(a)})",
    "Mean": lambda s, a: f"{s.t}(({' + '.join(a)}) / {s.const(len(a))})",
    "Equal": _compare("=="),
    "Less": _compare("<"),
    "LessOrEqual": _compare("<="),
    "Greater": _compare(">"),
    "GreaterOrEqual": _compare(">="),
    "And": lambda s, a: f"({a[0]} and {a[1]})",
    "Or": lambda s, a: f"({a[0]} or {a[1]})",
    "Xor": lambda s, a: f"({a[0]} != {a[1]})",
    "Not": lambda s, a: f"(not {a[0]})",
    "Where": lambda s, a: f"({a[1]} if {a[0]} else {a[2]})",
    "PRelu": lambda s, a: f"({a[0]} if not {a[0]} < 0 else {s.t}({a[0]} * {a[1]}))",
    "Clip": _clip,
    "Abs": lambda s, a: f"{s.t}(abs({a[0]}))",
    "Neg": lambda s, a: f"{s.t}(-{a[0]})",
    "Reciprocal": lambda s, a: f"{s.t}({s.const(1)} / {a[0]})",
    # correctly rounded in float32 as in float64 (then rounded), so float32 stays narrow
    "Sqrt": _narrow("np.sqrt", "math.sqrt"),
    "Exp": _narrow("_exp32", "math.exp"),
    "Log": _float64("math.log"),
    "Ceil": _narrow("np.ceil", "np.ceil"),
    "Floor": _narrow("np.floor", "np.floor"),
    "Round": _narrow("np.rint", "np.rint"),  # rint rounds half to even, as ONNX Round does
    "Sign": _sign,
    **{
        op: _float64(f"math.{op.lower()}")
        for op in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh")
    },
    "Tanh": _narrow("_tanh32", "math.tanh"),
    **{op: _float64(f"math.{op.lower()}") for op in ("Asinh", "Acosh", "Atanh")},
    "Erf": _narrow("_erf32", "math.erf"),
    "IsNaN": lambda s, a: f"({a[0]} != {a[0]})",
    "IsInf": _is_inf,
    "Relu": _relu,
    "LeakyRelu": lambda s, a: (
        f"({a[0]} if {a[0]} >= 0 else {s.t}({a[0]} * {s.const(s.attr('alpha', 0.01))}))"
    ),
    "Elu": lambda s, a: s.wide(f"_elu({_f(a[0])}, {s.number('alpha', 1.0)})"),
    "Selu": lambda s, a: s.wide(
        f"_selu({_f(a[0])}, {s.number('alpha', 1.67326319217681884765625)}, "
        f"{s.number('gamma', 1.05070102214813232421875)})"
    ),
    "Celu": lambda s, a: s.wide(f"_celu({_f(a[0])}, {s.number('alpha', 1.0)})"),
    "Sigmoid": _narrow("_sigmoid32", "_sigmoid"),
    "HardSigmoid": lambda s, a: s.wide(
        f"_hard_sigmoid({_f(a[0])}, {s.number('alpha', 0.2)}, {s.number('beta', 0.5)})"
    ),
    "HardSwish": lambda s, a: s.wide(f"{_f(a[0])} * _hard_sigmoid({_f(a[0])}, 1.0 / 6.0, 0.5)"),
    "Softplus": _float64("_softplus"),
    "Softsign": lambda s, a: s.wide(f"{_f(a[0])} / (1.0 + abs({_f(a[0])}))"),
    "ThresholdedRelu": lambda s, a: (
        f"({a[0]} if {a[0]} > {s.const(s.attr('alpha', 1.0))} else {s.const(0)})"
    ),
    "Gelu": _gelu,
    "Mish": lambda s, a: s.wide(f"{_f(a[0])} * math.tanh(_softplus({_f(a[0])}))"),
    "Shrink": lambda s, a: s.wide(
        f"_shrink({_f(a[0])}, {s.number('bias', 0.0)}, {s.number('lambd', 0.5)})"
    ),
    "Cast": _cast,
    "Identity": lambda s, a: a[0],
}


def _polynomial(variable: str, coefficients: Sequence[float]) -> str:
    """c0 + c1 v + c2 v^2 + ... as source, with float32 constants, in Estrin's form: the lower
    half of the coefficients plus v^h times the upper half (h the largest power of two below
    their count), each half split the same way. Its chain of dependent operations is about
    log2(n) multiply-adds long, not n as in Horner's form, so the CPU overlaps the polynomials
    of neighbouring vectors; LLVM computes each power of v once."""
    if len(coefficients) == 1:
        return f"np.float32({coefficients[0]!r})"
    half = 1
    while half * 2 < len(coefficients):
        half *= 2
    power = variable
    for _ in range(half.bit_length() - 1):
        power = f"({power} * {power})"
    low, high = coefficients[:half], coefficients[half:]
    return f"({_polynomial(variable, low)} + {power} * {_polynomial(variable, high)})"


_EXP_TAYLOR = [1.0 / math.factorial(k) for k in range(8)]
_TANH_TAYLOR = [
    1.0,
    -1 / 3,
    2 / 15,
    -17 / 315,
    62 / 2835,
    -1382 / 155925,
    21844 / 6081075,
    -929569 / 638512875,
]  # tanh(x) / x in powers of x^2
_ERF_TAYLOR = [
    2 / math.sqrt(math.pi) * (-1) ** k / (math.factorial(k) * (2 * k + 1)) for k in range(7)
]  # erf(x) / x in powers of x^2


_HELPERS: dict[str, str] = {
    "_max": '''
@numba.njit(inline="always")
def _max(a, b):
    """numpy.maximum: NaN wins."""
    return a if (a > b or a != a) else b
''',
    "_min": '''
@numba.njit(inline="always")
def _min(a, b):
    """numpy.minimum: NaN wins."""
    return a if (a < b or a != a) else b
''',
    "_trunc_div": '''
@numba.njit(inline="always")
def _trunc_div(a, b):
    """Integer division rounding toward zero (C, ONNX); a zero divisor is an error."""
    if b == 0:
        raise ZeroDivisionError("integer division by zero")
    q = a // b
    if q * b != a and (a < 0) != (b < 0):
        q += 1
    return q
''',
    "_sigmoid": """
@numba.njit(inline="always")
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))
""",
    "_exp32": f'''
@numba.njit(inline="always")
def _exp32(x):
    """e^x in float32 without a libm call, so the loop around it vectorizes: x = n ln2 + r with
    |r| <= ln2 / 2, e^r by Taylor to degree 7, 2^n as the product of two float32 built from
    exponent bits. 0 below float32's smallest normal (-87.34), inf from ln(max) up (88.72);
    NaN stays NaN."""
    v = _min(_max(x, np.float32(-87.33654)), np.float32(88.8))
    n = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
    r = v - n * np.float32(0.693145751953125) - n * np.float32(1.4286068203094173e-06)
    p = {_polynomial("r", _EXP_TAYLOR)}
    k = np.int32(n)
    h = k >> 1
    y = p * float32_from_bits((h + 127) << 23) * float32_from_bits((k - h + 127) << 23)
    return np.float32(0.0) if x < np.float32(-87.33654) else y
''',
    "_sigmoid32": """
@numba.njit(inline="always")
def _sigmoid32(x):
    return np.float32(1.0) / (np.float32(1.0) + _exp32(-x))
""",
    "_tanh32": f'''
@numba.njit(inline="always")
def _tanh32(x):
    """tanh in float32: Taylor to degree 15 below |x| = 0.55, else 1 - 2 / (e^2|x| + 1)."""
    a = abs(x)
    s = x * x
    small = x * ({_polynomial("s", _TANH_TAYLOR)})
    large = np.float32(1.0) - np.float32(2.0) / (_exp32(a + a) + np.float32(1.0))
    large = large if x >= np.float32(0.0) else -large
    return small if a < np.float32(0.55) else large
''',
    "_erfc32": f'''
@numba.njit(inline="always")
def _erfc32(x, root, square):
    """erfc(x root) in float32 for a float32 `x`, where `square` = root^2 is a power of two;
    relative error about 1.2e-7 everywhere (Numerical Recipes' erfcc, a Chebyshev fit of
    t e^(-z^2 + P(t)), t = 1 / (1 + z / 2), z = |x| root). The exponent -x^2 square + P(t) is
    summed as a float32 pair, hi + lo: x with its low 12 bits cleared (a) squares exactly, so
    x^2 = a^2 + (x - a)(x + a) with the small part rounded alone, and e^(hi + lo) is
    e^hi (1 + lo). The far tail (z^2 up to 87) keeps its relative accuracy, which one float32
    exponent (a rounding error of 4e-6 at 87) would not."""
    m = _min(abs(x), np.float32(100.0))  # erfc(100 root) is 0 too; no inf - inf below
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.5) * m * root)
    q = {_polynomial("t", ERFC_FIT)}
    a = float32_from_bits(float32_bits(m) & np.int32(-4096))
    big = -(a * a) * square
    small = q - (m - a) * (m + a) * square
    hi = big + small
    hi = np.float32(-100.0) if hi < np.float32(-100.0) else hi  # e^-100 is 0
    lo = (big - hi) + small
    ans = t * _exp32(hi) * (np.float32(1.0) + lo)
    return ans if x >= np.float32(0.0) else np.float32(2.0) - ans
''',
    "_erf32": f'''
@numba.njit(inline="always")
def _erf32(x):
    """erf in float32: Taylor to degree 13 below |x| = 0.5, else 1 - erfc(|x|) with its sign."""
    s = x * x
    small = x * ({_polynomial("s", _ERF_TAYLOR)})
    large = np.float32(1.0) - _erfc32(abs(x), np.float32(1.0), np.float32(1.0))
    large = large if x >= np.float32(0.0) else -large
    return small if abs(x) < np.float32(0.5) else large
''',
    "_softplus": '''
@numba.njit(inline="always")
def _softplus(x):
    """log(1 + e^x) without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))
''',
    "_elu": """
@numba.njit(inline="always")
def _elu(x, alpha):
    return x if x >= 0.0 else alpha * math.expm1(x)
""",
    "_selu": """
@numba.njit(inline="always")
def _selu(x, alpha, gamma):
    return gamma * x if x > 0.0 else gamma * (alpha * math.exp(x) - alpha)
""",
    "_celu": """
@numba.njit(inline="always")
def _celu(x, alpha):
    return _max(x, 0.0) + _min(0.0, alpha * math.expm1(x / alpha))
""",
    "_hard_sigmoid": """
@numba.njit(inline="always")
def _hard_sigmoid(x, alpha, beta):
    return _min(_max(alpha * x + beta, 0.0), 1.0)
""",
    "_shrink": """
@numba.njit(inline="always")
def _shrink(x, bias, lambd):
    if x < -lambd:
        return x + bias
    if x > lambd:
        return x - bias
    return 0.0
""",
}
"""Scalar functions the expressions call, by name; a module defines the ones it uses."""


def _helpers_used(text: str) -> list[str]:
    """The sources of the helpers `text` calls, and of those they call, callees first."""
    used: list[str] = []

    def visit(code: str) -> None:
        for name, source in _HELPERS.items():
            if f"{name}(" in code and source not in used:
                visit(source.split("\n", 3)[3])  # the body, not the definition line
                used.append(source)

    visit(text)
    return used


def unsupported_reason(node: Node, opset: int) -> str | None:
    """None when `node` can be generated (op in the pattern tables, its attributes supported, its
    element types in FLOAT/INT/BOOL we handle); else a short reason ("Cast to string", ...)."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return f"{node.domain}::{op} is not an ONNX elementwise op"
    if op not in ELEMENTWISE_OPS | BROADCAST_OPS or op not in _EXPRESSIONS:
        return f"{op} is not an elementwise or broadcast op"
    if node.subgraphs:
        return f"{op} with a subgraph"
    outputs = [t for t in node.outputs if t is not None]
    if len(outputs) != 1 or node.outputs[0] is None:
        return f"{op} with {len(outputs)} outputs"
    low, high = _arity(op)
    if not low <= len(node.inputs) <= high or (op != "Clip" and None in node.inputs):
        return f"{op} with {len(node.inputs)} inputs"
    dtypes: list[DType] = []
    for tensor in [*node.inputs, outputs[0]]:
        if tensor is None:
            continue
        dtype = tensor.type.dtype if isinstance(tensor.type, TensorType) else None
        if dtype is None:
            return f"{op} on {tensor.name!r} of unknown element type"
        if dtype not in _ANY:
            return f"{op} {'to' if tensor is outputs[0] else 'on'} {dtype.name.lower()}"
        dtypes.append(dtype)
    return _type_reason(node, opset, dtypes[:-1], dtypes[-1])


def _type_reason(node: Node, opset: int, inputs: list[DType], output: DType) -> str | None:
    """Why the element types or attributes of a well-formed node cannot be generated."""
    op = node.op_type
    data = inputs[1:] if op == "Where" else inputs
    if op == "Where" and inputs[0] is not DType.BOOL:
        return f"Where with a {inputs[0].name.lower()} condition"
    if data[0] not in _ACCEPTS.get(op, _FLOATS):
        return f"{op} on {data[0].name.lower()}"
    if op not in ("Pow", "Cast") and any(d is not data[0] for d in data):
        return f"{op} on mixed element types " + ", ".join(d.name.lower() for d in data)
    if op == "Clip" and opset < 11 and data[0] not in _FLOATS:
        return f"Clip-6 on {data[0].name.lower()}"
    if op == "Gelu" and node.attr("approximate", "none") not in ("none", "tanh"):
        return f"Gelu approximate={node.attr('approximate')!r}"
    if op == "Cast" and node.attr("saturate", 1) != 1:
        return "Cast with saturate=0"
    if op == "Cast" and int(node.attr("to", output)) != int(output):
        return f"Cast to {DType(int(node.attr('to'))).name.lower()} with a {output.name} output"
    return None


# -- signatures: what a version is specialized to ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """The specialization of one version: per input, along each merged dim of the iteration
    space, whether it varies (`True`) or is broadcast (`False`); the number of merged dims
    (`rank`); whether the outer loop is parallel."""

    masks: tuple[tuple[bool, ...], ...]
    rank: int
    parallel: bool
    in_place: tuple[int, ...] = ()
    """Per input, the output whose array it is (read through that output), or -1; empty when
    no input is an output."""

    def describe(self) -> str:
        """e.g. `rank 2 [full, (i, -)] parallel`."""
        parts = []
        for mask in self.masks:
            if mask and all(mask):
                parts.append("full")
            elif not any(mask):
                parts.append("scalar")
            else:
                parts.append("(" + ", ".join("i" if m else "-" for m in mask) + ")")
        mode = "parallel" if self.parallel else "serial"
        shared = [f"in{i}=out{o}" for i, o in enumerate(self.in_place) if o >= 0]
        place = f" in place ({', '.join(shared)})" if shared else ""
        return f"rank {self.rank} [{', '.join(parts)}] {mode}{place}"


@dataclass(frozen=True, slots=True)
class Layout:
    """How one call maps onto a version: its signature, each input's shape in the merged space
    (1 where broadcast) and the merged iteration extents."""

    signature: Signature
    merged: tuple[tuple[int, ...], ...]
    extents: tuple[int, ...]


def signature_of(
    input_shapes: Sequence[tuple[int, ...]], shape: tuple[int, ...], *, parallel_min: int
) -> Layout:
    """The layout of a call whose inputs have `input_shapes` (each broadcasting to `shape`).
    Extent-1 dims are dropped; adjacent dims merge when every input is full along both or
    broadcast along both (C-contiguous arrays are then contiguous over the merged dim)."""
    aligned = [(1,) * (len(shape) - len(s)) + tuple(s) for s in input_shapes]
    extents: list[int] = []
    patterns: list[tuple[bool, ...]] = []
    for axis, extent in enumerate(shape):
        if extent == 1:
            continue
        pattern = tuple(s[axis] != 1 for s in aligned)
        if patterns and patterns[-1] == pattern:
            extents[-1] *= extent
        else:
            extents.append(extent)
            patterns.append(pattern)
    masks = tuple(tuple(p[i] for p in patterns) for i in range(len(aligned)))
    merged = tuple(
        tuple(e if m else 1 for e, m in zip(extents, mask, strict=True)) for mask in masks
    )
    parallel = bool(extents) and math.prod(extents) >= parallel_min
    return Layout(Signature(masks, len(extents), parallel), merged, tuple(extents))


# -- source generation -------------------------------------------------------------------------


class _Module:
    """The globals of one generated module: element types and typed constants."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.constants: dict[tuple[str, DType], str] = {}
        self.values: dict[str, Any] = {}
        """The value of each constant, by its name (for expressions that specialize on it)."""
        self.types: dict[DType, str] = {}

    def type_name(self, dtype: DType) -> str:
        if dtype not in self.types:
            self.types[dtype] = f"T_{dtype.name.lower()}"
        return self.types[dtype]

    def constant(self, value: Any, dtype: DType) -> str:
        key = (_literal(value, dtype), dtype)
        if key not in self.constants:
            self.constants[key] = f"C{len(self.constants)}"
            self.values[self.constants[key]] = value
        return self.constants[key]

    def header(self) -> list[str]:
        lines = ["import math", "", "import numba", "import numpy as np", ""]
        for dtype, name in sorted(self.types.items(), key=lambda item: item[1]):
            lines.append(f"{name} = np.{np.dtype(dtype.numpy).name}")
        for (literal, dtype), name in self.constants.items():
            lines.append(f"{name} = np.{np.dtype(dtype.numpy).name}({literal})")
        return lines


def _literal(value: Any, dtype: DType) -> str:
    """`value` as Python source that converts exactly to `dtype`."""
    if dtype is DType.BOOL:
        return repr(bool(value))
    if dtype in _INTS:
        return repr(int(value))
    number = float(value)
    return repr(number) if math.isfinite(number) else f"float({str(number)!r})"


def kernel_source(body: Graph, opset: int, signature: Signature) -> str:
    """The generated Python source of one version of `body`'s loop nest: a module defining
    `kernel(in0, ..., out0, ..., e0, ...)` over inputs reshaped to the merged space, outputs
    reshaped to the merged extents `e0, e1, ...`."""
    module = _Module(opset)
    rank = signature.rank
    names: dict[Tensor, str] = {}
    depth: dict[Tensor, int] = {}
    by_depth: list[list[str]] = [[] for _ in range(rank + 1)]
    for position, tensor in enumerate(body.inputs):
        mask = signature.masks[position]
        index = ", ".join(f"i{axis}" if full else "0" for axis, full in enumerate(mask)) or "()"
        level = max((axis + 1 for axis, full in enumerate(mask) if full), default=0)
        names[tensor], depth[tensor] = f"x{position}", level
        source = f"in{position}"
        if signature.in_place and signature.in_place[position] >= 0:
            source = f"out{signature.in_place[position]}"
        by_depth[level].append(f"x{position} = {source}[{index}]")
    for tensor in body.constants:
        names[tensor] = module.constant(_scalar_constant(tensor, body), _dtype(tensor))
        depth[tensor] = 0
    for count, node in enumerate(body.topological_order()):
        operands = [names[t] if t is not None else "" for t in node.inputs]
        level = max((depth[t] for t in node.inputs if t is not None), default=0)
        output = node.outputs[0]
        assert output is not None
        dtypes = [_dtype(t) for t in node.inputs if t is not None]
        expr = _EXPRESSIONS[node.op_type](_Scalar(module, node, dtypes, _dtype(output)), operands)
        names[output], depth[output] = f"v{count}", level
        by_depth[level].append(f"v{count} = {expr}  # {node.op_type}")
    index = ", ".join(f"i{axis}" for axis in range(rank)) or "()"
    for position, tensor in enumerate(body.outputs):
        cast = module.type_name(_dtype(tensor))
        by_depth[rank].append(f"out{position}[{index}] = {cast}({names[tensor]})")
    return _assemble(module, body, signature, by_depth)


def _assemble(module: _Module, body: Graph, signature: Signature, by_depth: list[list[str]]) -> str:
    """The module text: globals, helpers, then the loop nest with each depth's statements."""
    arguments = [f"in{i}" for i in range(len(body.inputs))]
    arguments += [f"out{i}" for i in range(len(body.outputs))]
    arguments += [f"e{axis}" for axis in range(signature.rank)]
    lines = [
        f"@numba.njit(cache=True, parallel={signature.parallel}, nogil=True, error_model='numpy', "
        "fastmath={'contract'})",
        f"def kernel({', '.join(arguments)}):",
    ]
    indent = "    "
    lines += [indent + line for line in by_depth[0]]
    for axis in range(signature.rank):
        loop = "numba.prange" if axis == 0 and signature.parallel else "range"
        lines.append(f"{indent}for i{axis} in {loop}(e{axis}):")
        indent += "    "
        lines += [indent + line for line in by_depth[axis + 1]]
    lines.append("    return None")
    kernel = "\n".join(lines)
    head = [f'"""sod2 fused loop nest, version: {signature.describe()}."""', "", *module.header()]
    helpers = _helpers_used(kernel)
    intrinsics = [n for n in ("float32_bits", "float32_from_bits") if f"{n}(" in "".join(helpers)]
    if intrinsics:
        head.append(f"from sod2.backend.intrinsics import {', '.join(intrinsics)}")
    return "\n".join([*head, *helpers, "", kernel]) + "\n"


def _dtype(tensor: Tensor) -> DType:
    dtype = tensor.type.dtype if isinstance(tensor.type, TensorType) else None
    if dtype is None or dtype not in _ANY:
        raise CodegenError(
            f"tensor {tensor.name!r} has type {tensor.type}; generated loop nests compute "
            "float32, float64, the integer types and bool"
        )
    return dtype


def _scalar_constant(tensor: Tensor, body: Graph) -> Any:
    value = tensor.const_value
    if value is None or value.size != 1:
        shape = None if value is None else list(value.shape)
        raise CodegenError(
            f"fused group {body.name!r}: constant {tensor.name!r} of shape {shape} must be a body "
            "input (only one-element constants are inlined)"
        )
    return value.reshape(-1)[0].item()


def _structure(body: Graph) -> str:
    """A description of `body` that ignores names: ops, attributes, wiring, element types."""
    ids: dict[Tensor, str] = {}
    parts = []
    for position, tensor in enumerate(body.inputs):
        ids[tensor] = f"x{position}"
        parts.append(f"in {_dtype(tensor).name}")
    for position, tensor in enumerate(body.constants):
        ids[tensor] = f"c{position}"
        value = _scalar_constant(tensor, body)
        parts.append(f"const {_dtype(tensor).name} {np.shape(tensor.const_value)} {value!r}")
    for count, node in enumerate(body.topological_order()):
        operands = ",".join(ids[t] if t is not None else "_" for t in node.inputs)
        attrs = ",".join(f"{k}={node.attr(k)!r}" for k in sorted(node.attrs))
        output = node.outputs[0]
        assert output is not None
        ids[output] = f"v{count}"
        parts.append(f"{node.op_type}({operands}){{{attrs}}}->{_dtype(output).name}")
    parts.append("out " + ",".join(ids[t] for t in body.outputs))
    return ";".join(parts)


# -- compiled kernels --------------------------------------------------------------------------

_COMPILED: dict[tuple[str, Signature], Callable[..., None]] = {}
"""Compiled versions by (structure, signature), shared by every kernel in the process."""
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Call:
    """What a call with given shapes needs, computed once per distinct tuple of shapes."""

    layout: Layout
    versions: dict[tuple[int, ...], Callable[..., None]]
    """The compiled versions of the layout's signature so far, by `Signature.in_place`."""


class FusedKernel:
    """A compiled group; reusable across calls and shapes (module docstring)."""

    source_key: str
    """Hash of the body's structure (ops, attributes, wiring, element types), not of names."""
    parallel_min: int
    """Iteration spaces of at least this many elements run the parallel version."""

    def __init__(
        self, body: Graph, opset: int, *, name: str = "", cache_dir: Path | None = None
    ) -> None:
        self.body = body
        self.opset = opset
        self.name = name or body.name
        if not body.outputs:
            raise CodegenError(f"fused group {self.name!r} has no outputs")
        for node in body.nodes:
            reason = unsupported_reason(node, opset)
            if reason is not None:
                raise CodegenError(
                    f"fused group {self.name!r}: node {node.name!r} ({node.op_type}): {reason}"
                )
        self.input_dtypes = [np.dtype(_dtype(t).numpy) for t in body.inputs]
        self.output_dtypes = [np.dtype(_dtype(t).numpy) for t in body.outputs]
        self.constant_shapes = [tuple(np.shape(t.const_value)) for t in body.constants]
        self.source_key = digest(f"opset {opset};" + _structure(body))
        self.cache_dir = cache_dir
        # an integer division raises on a zero divisor, which a parallel loop cannot
        divides = any(n.op_type == "Div" and _dtype(n.outputs[0]) in _INTS for n in body.nodes)  # type: ignore[arg-type]
        self.parallel_min = sys.maxsize if divides else parallel_threshold(body)
        self._versions: dict[Signature, Callable[..., None]] = {}
        self._calls: dict[tuple[tuple[int, ...], ...], _Call] = {}
        self._shared_dtypes = [
            [q for q, out in enumerate(self.output_dtypes) if out == dtype]
            for dtype in self.input_dtypes
        ]
        """Per input, the outputs of its element type (the only ones it can be in place of)."""

    def versions(self) -> list[str]:
        """Human-readable names of the specializations compiled so far."""
        return [signature.describe() for signature in self._versions]

    def __call__(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> None:
        """Compute the group: `inputs` in body-input order (any shapes that broadcast to the
        iteration shape, any strides), `outputs` preallocated C-contiguous arrays of the
        iteration shape and the body outputs' dtypes; an output may be an input (in place)."""
        function, arguments = self._arguments(inputs, outputs)
        self._invoke(function, arguments)

    def bind(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
    ) -> Callable[[], None] | None:
        """`self(inputs, outputs)` as a call without arguments, checked now: every later call
        computes the group again over the same arrays (whatever they then hold), without the
        look at their shapes, types and overlaps. None where the call needs a copy of an input
        (strided, or overlapping an output), which only a call can make."""
        function, arguments = self._arguments(inputs, outputs)
        if any(
            isinstance(value, np.ndarray) and not np.may_share_memory(value, argument)
            for value, argument in zip(inputs, arguments, strict=False)
        ):
            return None
        if self.parallel_min == sys.maxsize:  # integer division: its error is ours to name
            return functools.partial(self._invoke, function, arguments)
        return functools.partial(function, *arguments)

    def _invoke(self, function: Callable[..., None], arguments: tuple[Any, ...]) -> None:
        try:
            function(*arguments)
        except ZeroDivisionError:
            raise CodegenError(
                f"fused group {self.name!r}: integer division by zero (in one of its Div nodes)"
            ) from None

    def _arguments(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
    ) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """The compiled version for these arrays and its arguments: inputs reshaped to the
        merged space (`_in_place` copies where it must), outputs, extents."""
        arrays = self._inputs(inputs, outputs)
        key = (*(o.shape for o in outputs), *(a.shape for a in arrays))
        call = self._calls.get(key)
        if call is None:
            call = self._prepare(arrays, outputs)
            if len(self._calls) >= 256:
                self._calls.clear()
            self._calls[key] = call
        extents = call.layout.extents
        if 0 in extents:
            return _nothing, ()
        in_place = self._in_place(arrays, outputs)
        function = call.versions.get(in_place) or self._version(call, in_place)
        operands = [
            a if a.shape == m else a.reshape(m)
            for a, m in zip(arrays, call.layout.merged, strict=True)
        ]
        results = [o if o.shape == extents else o.reshape(extents) for o in outputs]
        return function, (*operands, *results, *extents)

    def _inputs(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """The inputs as C-contiguous arrays, after checking the counts and element types of
        inputs and outputs (an input of other strides is copied)."""
        if len(inputs) != len(self.input_dtypes) or len(outputs) != len(self.output_dtypes):
            raise CodegenError(
                f"fused group {self.name!r} takes {len(self.input_dtypes)} inputs and "
                f"{len(self.output_dtypes)} outputs, got {len(inputs)} and {len(outputs)}"
            )
        arrays = []
        for position, (value, dtype) in enumerate(zip(inputs, self.input_dtypes, strict=True)):
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype is not dtype and array.dtype != dtype:
                raise CodegenError(
                    f"fused group {self.name!r}: input {self.body.inputs[position].name!r} is "
                    f"{array.dtype}, the group expects {dtype}"
                )
            arrays.append(array if array.flags.c_contiguous else np.ascontiguousarray(array))
        for position, (out, dtype) in enumerate(zip(outputs, self.output_dtypes, strict=True)):
            if not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous:
                found = f"{out.dtype} {list(out.shape)}" if isinstance(out, np.ndarray) else out
                raise CodegenError(
                    f"fused group {self.name!r}: output {self.body.outputs[position].name!r} must "
                    f"be a C-contiguous {dtype} array, got {found}"
                )
        return arrays

    def _in_place(self, arrays: list[np.ndarray], outputs: Sequence[np.ndarray]) -> tuple[int, ...]:
        """Per input, the output that is the same array (-1: none), or () when no input is
        an output; an input that overlaps an output otherwise is replaced by a copy in
        `arrays` (the loop would read elements it has already written)."""
        found: list[int] | None = None
        for position, candidates in enumerate(self._shared_dtypes):
            array = arrays[position]
            for q in candidates:
                out = outputs[q]
                if array is not out and not np.may_share_memory(array, out):
                    continue
                if array.size == out.size and array.ctypes.data == out.ctypes.data:
                    found = found or [-1] * len(arrays)
                    found[position] = q
                else:
                    arrays[position] = array = array.copy()
                break
        return () if found is None else tuple(found)

    def _version(self, call: _Call, in_place: tuple[int, ...]) -> Callable[..., None]:
        """The version of `call`'s signature that reads the inputs `in_place` names through
        their outputs (compiled on first use)."""
        signature = call.layout.signature
        signature = Signature(signature.masks, signature.rank, signature.parallel, in_place)
        function = self._versions.get(signature)
        if function is None:
            function = self._versions[signature] = self._compile(signature)
        call.versions[in_place] = function
        return function

    def _prepare(self, arrays: list[np.ndarray], outputs: Sequence[np.ndarray]) -> _Call:
        """Check that the shapes fit and find the layout (its versions compile on first use)."""
        shape = _broadcast_shape([*(a.shape for a in arrays), *self.constant_shapes])
        if shape is None:
            described = ", ".join(
                f"{t.name!r} {list(a.shape)}" for t, a in zip(self.body.inputs, arrays, strict=True)
            )
            raise CodegenError(
                f"fused group {self.name!r}: input shapes do not broadcast: {described}"
            )
        for tensor, out in zip(self.body.outputs, outputs, strict=True):
            if out.shape != shape:
                raise CodegenError(
                    f"fused group {self.name!r}: output {tensor.name!r} has shape "
                    f"{list(out.shape)}, the inputs broadcast to {list(shape)}"
                )
        layout = signature_of([a.shape for a in arrays], shape, parallel_min=self.parallel_min)
        return _Call(layout, {})

    def _compile(self, signature: Signature) -> Callable[..., None]:
        key = (self.source_key, signature)
        with _LOCK:
            function = _COMPILED.get(key)
            if function is None:
                source = kernel_source(self.body, self.opset, signature)
                function = _load(source, self.cache_dir or cache_dir("kernels"))
                _COMPILED[key] = function
        return function


def _nothing() -> None:
    """The call over an empty iteration space."""


def parallel_threshold(body: Graph) -> int:
    """The iteration-space size from which `body` runs its parallel version: PARALLEL_MIN for
    cheap ops, less by TRANSCENDENTAL_WEIGHT per transcendental op in the group (a thread's
    start-up pays off sooner when each element costs more), never under 1/64 of PARALLEL_MIN."""
    heavy = sum(node.op_type in TRANSCENDENTAL_OPS for node in body.nodes)
    return max(PARALLEL_MIN // 64, PARALLEL_MIN // (1 + TRANSCENDENTAL_WEIGHT * heavy))


def _broadcast_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...] | None:
    """numpy's broadcast of `shapes`, or None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    result = [1] * rank
    for shape in shapes:
        for axis, extent in enumerate(shape, start=rank - len(shape)):
            if extent != 1:
                if result[axis] not in (1, extent):
                    return None
                result[axis] = extent
    return tuple(result)


def _load(source: str, directory: Path) -> Callable[..., None]:
    """The `kernel` of `source`, imported from the cache folder (Numba keeps its machine code
    beside it), or compiled in memory when the folder cannot be written."""
    try:
        return import_source(source, directory, "sod2_kernel").kernel
    except OSError:
        namespace: dict[str, Any] = {}
        in_memory = source.replace("cache=True", "cache=False")
        exec(compile(in_memory, "<sod2 kernel>", "exec"), namespace)
        return namespace["kernel"]


def compile_group(
    body: Graph, opset: int, *, name: str = "", cache_dir: Path | None = None
) -> FusedKernel:
    """A `FusedKernel` for `body` (its inputs, elementwise and broadcast nodes, outputs); each
    version is compiled, or loaded from the disk cache under `cache_dir` (default
    `$SOD2_CACHE_DIR/kernels`), on first use. A node the generator cannot express is a
    `CodegenError` naming it and saying why."""
    return FusedKernel(body, opset, name=name, cache_dir=cache_dir)
