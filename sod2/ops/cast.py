"""Element type conversion: Cast and CastLike, between every ONNX element type but complex.

The rules, by destination:
- bool: zero (and -0.0) is false, anything else (NaN included) true;
- integers (4- and 2-bit ones included): floats truncate toward zero, then every value keeps its
  low bits (two's complement wrap-around: 200 -> int8 -56, -9 -> int4 7). ONNX leaves a float
  outside the destination's range undefined; this is the result numpy's conversion gives;
- float16, float32, float64: round to nearest even, overflow to infinity;
- bfloat16, float8, float6, float4: round to nearest even through ml_dtypes. ml_dtypes rounds a
  float64 (or a wide integer) through float32, which can round twice; a source wider than float32
  is first rounded to float32 *to odd* (truncate, then set the last bit when inexact), after which
  one round-to-nearest-even gives the correctly rounded result. The four float8 types saturate to
  their largest finite value by default (`saturate`, opset 19); with saturate=0 an out-of-range
  value becomes NaN or infinity as ml_dtypes (and the ONNX tables) say;
- float8e8m0 (powers of two): rounded `up`, `down` or to the `nearest` (ties up) per `round_mode`;
  values outside [2^-127, 2^127] saturate to those ends or, with saturate=0, become NaN. The
  cast of negative values is unspecified by ONNX, so it is refused;
- string: integers in decimal; floats in the fewest significant digits that read back to the same
  value, printed like C's `%g` ('0.1', '1e+20', '-0'), with 'NaN', 'INF' and '-INF'.
Strings parse as decimal or scientific literals ('1e-5', '+INF', 'nan', case-insensitive
specials); a string that is no number, or a non-integer literal cast to an integer type, is
refused. Formatting and parsing strings goes element by element: there is no vectorized form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction

import ml_dtypes
import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dtypes import DType
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule

_FLOAT8 = frozenset(
    {DType.FLOAT8E4M3FN, DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2, DType.FLOAT8E5M2FNUZ}
)
_NATIVE_FLOATS = frozenset({DType.FLOAT16, DType.FLOAT32, DType.FLOAT64})
_COMPLEX = frozenset({DType.COMPLEX64, DType.COMPLEX128})
# Sources that float32 holds exactly: converting them to float32 first loses nothing.
_EXACT_IN_FLOAT32 = frozenset(
    {DType.BOOL, DType.INT8, DType.UINT8, DType.INT16, DType.UINT16, DType.FLOAT16, DType.FLOAT32}
)
_E8M0_MIN_EXPONENT, _E8M0_MAX_EXPONENT = -127, 127
_E8M0_NAN = 0xFF

_FLOAT_LITERAL = re.compile(
    r"\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*", re.IGNORECASE
)
_INT_LITERAL = re.compile(r"\s*[+-]?\d+\s*")


def cast_array(
    ctx: KernelContext,
    data: np.ndarray,
    target: DType,
    *,
    saturate: bool = True,
    round_mode: str = "up",
) -> np.ndarray:
    """`data` converted to element type `target` by the rules of the module docstring."""
    return np.asarray(_convert(ctx, data, target, saturate, round_mode))


def _convert(
    ctx: KernelContext, data: np.ndarray, target: DType, saturate: bool, round_mode: str
) -> np.ndarray:
    source = DType.from_numpy(data.dtype)
    if source in _COMPLEX or target in _COMPLEX:
        raise ctx.unsupported(f"casts from {source} to {target}")
    if source is target:
        return data.copy()
    if target is DType.STRING:
        return _to_strings(ctx, data, source)
    if source is DType.STRING:
        return _from_strings(ctx, data, target, saturate, round_mode)
    with np.errstate(invalid="ignore", over="ignore"):
        if target is DType.BOOL:
            return _widened(data, source) != 0
        if target.is_integer:
            return _to_integer(data, source, target)
        if target is DType.FLOAT8E8M0:
            return _to_e8m0(ctx, data, source, saturate, round_mode)
        return _to_float(data, source, target, saturate)


# -- numbers to numbers -------------------------------------------------------------------------


def _widened(data: np.ndarray, source: DType) -> np.ndarray:
    """The values in a dtype numpy computes with: ml_dtypes types widen exactly to float32."""
    if source.numpy.kind in "biuf":
        return data
    if source.is_integer:
        return data.astype(np.int64)
    return data.astype(np.float32)


def _to_integer(data: np.ndarray, source: DType, target: DType) -> np.ndarray:
    """Truncate floats toward zero, then keep the low bits of the two's complement value."""
    values = _widened(data, source)
    if values.dtype.kind == "f":
        whole = np.trunc(values)
        if target is DType.UINT64:
            high = whole >= 2.0**63
            low_part = np.where(high, whole - 2.0**63, whole).astype(np.int64).astype(np.uint64)
            return low_part + high.astype(np.uint64) * np.uint64(2**63)
        values = whole.astype(np.int64)
    elif target.numpy.kind not in "biuf":
        values = values.astype(np.int64)  # ml_dtypes narrow ints convert from int64, wrapping
    return values.astype(target.numpy)


def wide_integers_to_float64(values: np.ndarray) -> np.ndarray:
    """Integers as float64, rounded to odd where they need more than 53 bits.

    v = 2048 q + r with r in [0, 2048): (q | [r != 0]) * 2048 keeps a sticky last bit, so a later
    round-to-nearest to 24 bits or fewer is the correct rounding of v itself.
    """
    exact = values.astype(np.float64)
    if values.dtype.itemsize < 8:
        return exact
    quotient = values >> 11
    sticky = (values & 2047) != 0
    odd = (quotient | sticky.astype(values.dtype)).astype(np.float64) * 2048.0
    small = (values < 2**53) if values.dtype == np.uint64 else (np.abs(values) < 2**53)
    return np.where(small, exact, odd)


def round_to_odd_float32(values: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding toward zero, the last mantissa bit set when inexact."""
    nearest = values.astype(np.float32)
    overshoot = np.abs(nearest.astype(np.float64)) > np.abs(values)
    toward_zero = np.where(overshoot, np.nextafter(nearest, np.float32(0)), nearest)
    inexact = (toward_zero.astype(np.float64) != values) & np.isfinite(values)
    bits = toward_zero.view(np.uint32) | inexact.astype(np.uint32)
    return bits.view(np.float32)


def _as_float32_for_rounding(data: np.ndarray, source: DType) -> np.ndarray:
    """float32 values from which one round-to-nearest-even to a narrow type is exact."""
    if source in _EXACT_IN_FLOAT32 or source.numpy.kind not in "biuf":
        return data.astype(np.float32)
    return round_to_odd_float32(_as_float64(data, source))


def _as_float64(data: np.ndarray, source: DType) -> np.ndarray:
    if source.is_integer and source.numpy.kind in "iu":
        return wide_integers_to_float64(data)
    return data.astype(np.float64) if source.numpy.kind in "biuf" else data.astype(np.float32)


def _to_float(data: np.ndarray, source: DType, target: DType, saturate: bool) -> np.ndarray:
    if target in _NATIVE_FLOATS and source.numpy.kind in "biuf":
        return data.astype(target.numpy)  # one correct rounding: numpy converts directly
    if target in _NATIVE_FLOATS:
        return data.astype(np.float32).astype(target.numpy)  # exact, then at most one rounding
    values = _as_float32_for_rounding(data, source)
    if target in _FLOAT8 and saturate:
        largest = np.float32(ml_dtypes.finfo(target.numpy).max)
        values = np.clip(values, -largest, largest)
    return values.astype(target.numpy)


def _to_e8m0(
    ctx: KernelContext, data: np.ndarray, source: DType, saturate: bool, round_mode: str
) -> np.ndarray:
    """x = m * 2^e with m in [1, 2): e (down), e + [m > 1] (up) or e + [m >= 1.5] (nearest)."""
    values = _as_float64(data, source).astype(np.float64)
    if np.any(values < 0) or np.any(np.signbit(values) & (values == 0)):
        raise ctx.unsupported(f"casts of negative values from {source} to float8e8m0")
    mantissa, exponent = np.frexp(values)  # values = mantissa * 2^exponent, mantissa in [0.5, 1)
    exponent = exponent.astype(np.int64) - 1
    if round_mode == "up":
        exponent += mantissa > 0.5
    elif round_mode == "nearest":
        exponent += mantissa >= 0.75
    elif round_mode != "down":
        raise ctx.unsupported(f"round_mode {round_mode!r}")
    below = values < 2.0**_E8M0_MIN_EXPONENT
    above = values > 2.0**_E8M0_MAX_EXPONENT  # infinity included
    codes = np.clip(exponent, _E8M0_MIN_EXPONENT, _E8M0_MAX_EXPONENT) - _E8M0_MIN_EXPONENT
    if saturate:
        codes = np.where(below, 0, np.where(above, _E8M0_MAX_EXPONENT - _E8M0_MIN_EXPONENT, codes))
    else:
        codes = np.where(below | above, _E8M0_NAN, codes)
    codes = np.where(np.isnan(values), _E8M0_NAN, codes)
    return codes.astype(np.uint8).view(DType.FLOAT8E8M0.numpy)


# -- strings ------------------------------------------------------------------------------------


def _to_strings(ctx: KernelContext, data: np.ndarray, source: DType) -> np.ndarray:
    if source is DType.BOOL:
        raise ctx.unsupported("casts from bool to string (ONNX does not fix the spelling)")
    flat = data.reshape(-1)
    if source.is_integer:
        texts = [str(int(v)) for v in flat.astype(np.int64 if source.is_signed else np.uint64)]
    else:

        def read_back(text: str) -> np.generic:
            number = np.array([_parse_float(ctx, text, to_odd=source is not DType.FLOAT64)])
            return cast_array(ctx, number, source, round_mode="nearest")[0]

        texts = [shortest_repr(value, read_back) for value in flat]
    return np.array(texts, dtype=object).reshape(data.shape)


def shortest_repr(value: np.generic, read_back: Callable[[str], np.generic]) -> str:
    """The `%.Ng` form of `value` with the least N that `read_back` turns into `value` again."""
    number = float(value)
    if np.isnan(number):
        return "NaN"
    if np.isinf(number):
        return "INF" if number > 0 else "-INF"
    for digits in range(1, 17):
        text = f"{number:.{digits}g}"
        if read_back(text) == value:
            return text
    return f"{number:.17g}"


def _parse_float(ctx: KernelContext, text: str, *, to_odd: bool) -> float:
    """The literal as the nearest float64, or (`to_odd`) rounded to odd when inexact (see
    round_to_odd_float32), so that one more rounding to a narrower type is the correct rounding
    of the literal itself."""
    if not _FLOAT_LITERAL.fullmatch(text):
        raise ctx.fail(f"string {text!r} is not a number")
    number = float(text)
    if not to_odd or not np.isfinite(number):
        return number
    exact = Fraction(text.strip())
    if Fraction(number) == exact:
        return number
    neighbour = float(np.nextafter(number, np.inf if exact > Fraction(number) else -np.inf))
    return number if np.float64(number).view(np.int64) & 1 else neighbour


def _texts(data: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in data.reshape(-1)]


def _from_strings(
    ctx: KernelContext, data: np.ndarray, target: DType, saturate: bool, round_mode: str
) -> np.ndarray:
    texts = _texts(data)
    if target.is_integer:
        for text in texts:
            if not _INT_LITERAL.fullmatch(text):
                raise ctx.unsupported(f"casts from string {text!r} (not an integer) to {target}")
        low_bits = [int(text) % 2**64 for text in texts]
        values = np.array(low_bits, dtype=np.uint64).astype(np.int64).reshape(data.shape)
        return _to_integer(values, DType.INT64, target)
    to_odd = target is not DType.FLOAT64
    numbers = np.array([_parse_float(ctx, t, to_odd=to_odd) for t in texts], dtype=np.float64)
    return cast_array(
        ctx, numbers.reshape(data.shape), target, saturate=saturate, round_mode=round_mode
    )


# -- the operators ------------------------------------------------------------------------------


def _options(ctx: KernelContext) -> dict[str, object]:
    return {
        "saturate": bool(ctx.attr("saturate", 1)),
        "round_mode": str(ctx.attr("round_mode", "up")),
    }


@register("Cast")
def cast(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Cast: convert to element type `to` (the rules are in the module docstring)."""
    data = as_array(inputs[0], ctx, "input")
    to = ctx.attr("to")
    target = DType.from_onnx(to) if isinstance(to, int) else DType[str(to).upper()]
    return [cast_array(ctx, data, target, **_options(ctx))]


@register("CastLike", since=15)
def cast_like(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """CastLike: convert the input to the element type of `target_type`."""
    data = as_array(inputs[0], ctx, "input")
    like = as_array(inputs[1], ctx, "target_type")
    return [cast_array(ctx, data, DType.from_numpy(like.dtype), **_options(ctx))]


# -- shape rules (RDP) -------------------------------------------------------------------------


_EXACT_INTEGERS = {
    DType.FLOAT16: 2**11,
    DType.BFLOAT16: 2**8,
    DType.FLOAT32: 2**24,
    DType.FLOAT64: 2**53,
}
"""Up to these magnitudes a float type holds every integer exactly."""


def _cast_fact(ctx: ShapeContext, source: TensorFact, target: DType | None) -> TensorFact:
    """Same shape. A whole-number value survives casts between integer, boolean and float types
    (into a float type: under the recorded assumption that it fits that type exactly)."""
    value = source.value
    if value is None or target is None or source.dtype is None:
        return TensorFact(target, source.shape)
    if target is DType.BOOL:
        value = tuple(
            None if v is None else int(v != 0) if isinstance(v, int) else None for v in value
        )
    elif target in _EXACT_INTEGERS:
        limit = _EXACT_INTEGERS[target]
        for v in value:
            if v is None:
                continue
            if isinstance(v, int) and abs(v) > limit:
                return TensorFact(target, source.shape)
            if not isinstance(v, int):
                ctx.assume(sympy.Le(sympy.Abs(v), limit), f"{v} is exact in {target}")
    elif target.is_integer:
        info = ml_dtypes.iinfo(target.numpy)
        for v in value:
            if isinstance(v, int) and not info.min <= v <= info.max:
                return TensorFact(target, source.shape)
            if v is not None and not isinstance(v, int):
                ctx.assume(sympy.Le(sympy.Abs(v), info.max), f"{v} fits {target}")
    else:
        return TensorFact(target, source.shape)
    return TensorFact(target, source.shape, value)


@shape_rule("Cast", op_class=OpClass.ISDOS)
def cast_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Cast: the input's shape, element type `to`."""
    to = ctx.attr("to")
    target = DType.from_onnx(to) if isinstance(to, int) else DType[str(to).upper()]
    return [_cast_fact(ctx, inputs[0], target)]


@shape_rule("CastLike", since=15, op_class=OpClass.ISDOS)
def cast_like_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """CastLike: the input's shape, the element type of the second input."""
    return [_cast_fact(ctx, inputs[0], inputs[1].dtype)]
