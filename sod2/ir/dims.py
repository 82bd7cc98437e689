"""Dimensions: an int, or a sympy expression over integer, positive symbols.

A `Dim` is either a Python `int` (a known extent, possibly 0) or a `sympy.Expr` built from symbols
made by `symbol()`, which are integer and positive: a symbol names an extent that the input decides,
such as a batch size `N` or an image height `H`. Extents that only execution decides (how many
elements NonZero finds) use `extent_symbol()`: integer and non-negative, since they may be 0. Expressions (`2*H`, `floor((H - 1)/2) + 1`,
`Min(a, b)`) say how an extent is computed from the symbols.

Invariants kept by `as_dim`, the one constructor every other module goes through:
- an expression with no free symbols is an `int`, never `sympy.Integer`;
- every symbol is an integer, positive (`symbol`) or non-negative (`extent_symbol`).

Dims travel to and from ONNX as `dim_param` strings: `format_dim` writes sympy's text form, and
`parse_dim` reads a name as a symbol and an arithmetic text such as `2*H + 1` as an expression.
"""

from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Iterable, Mapping

import sympy

from sod2.errors import Sod2Error

Dim = int | sympy.Expr
"""A tensor extent: a known int or a symbolic expression over positive integer symbols."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# No dots: attribute access must never reach sympify's evaluator.
_ARITHMETIC = re.compile(r"^[A-Za-z0-9_+\-*/%() ,]+$")
_FUNCTIONS = {
    "floor": sympy.floor,
    "ceiling": sympy.ceiling,
    "ceil": sympy.ceiling,
    "Min": sympy.Min,
    "Max": sympy.Max,
    "min": sympy.Min,
    "max": sympy.Max,
    "Mod": sympy.Mod,
}


def symbol(name: str) -> sympy.Symbol:
    """The integer, positive symbol called `name` (the same object for the same name)."""
    return sympy.Symbol(name, integer=True, positive=True)


def extent_symbol(name: str) -> sympy.Symbol:
    """An integer symbol that may also be 0: an extent only execution tells (NonZero's count)."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


def as_dim(value: int | sympy.Expr | sympy.Basic) -> Dim:
    """Normalize `value` into a Dim: ints stay ints, closed expressions become ints.

    Raises `Sod2Error` for values that are not extents: negative or non-integer numbers, booleans,
    expressions over symbols that are not integer and positive.
    """
    if isinstance(value, bool):
        raise Sod2Error(f"a dimension cannot be a boolean ({value!r})")
    if isinstance(value, int):
        if value < 0:
            raise Sod2Error(f"a dimension cannot be negative ({value})")
        return value
    if not isinstance(value, sympy.Basic):
        try:
            as_int = int(value)  # numpy integers
        except (TypeError, ValueError):
            raise Sod2Error(f"{value!r} ({type(value).__name__}) is not a dimension") from None
        if as_int != value:
            raise Sod2Error(f"a dimension must be an integer, got {value!r}")
        return as_dim(as_int)
    expr = sympy.sympify(value)
    if expr.is_Integer:
        return as_dim(int(expr))
    for sym in expr.free_symbols:
        if not (sym.is_integer and sym.is_nonnegative):
            raise Sod2Error(
                f"dimension {expr} uses symbol {sym} that is not a non-negative integer; "
                f"make symbols with sod2.ir.symbol()"
            )
    if not expr.free_symbols:
        raise Sod2Error(f"dimension {expr} is not an integer")
    return expr


def is_static(dim: Dim) -> bool:
    """True when the extent is a known int."""
    return isinstance(dim, int)


def dim_symbols(dims: Iterable[Dim]) -> frozenset[sympy.Symbol]:
    """The symbols that occur in `dims`."""
    found: set[sympy.Symbol] = set()
    for dim in dims:
        if not isinstance(dim, int):
            found.update(dim.free_symbols)
    return frozenset(found)


def evaluate_dim(dim: Dim, binding: Mapping[sympy.Symbol | str, int]) -> int:
    """The int value of `dim` when every symbol takes its value from `binding`.

    `binding` may be keyed by symbols or by their names. Raises `Sod2Error` naming the symbols that
    `binding` leaves unbound.
    """
    if isinstance(dim, int):
        return dim
    values = {
        sym: binding[sym] if sym in binding else binding.get(sym.name) for sym in dim.free_symbols
    }
    unbound = sorted(sym.name for sym, value in values.items() if value is None)
    if unbound:
        raise Sod2Error(f"cannot evaluate dimension {dim}: unbound symbol(s) {', '.join(unbound)}")
    result = dim.xreplace({sym: sympy.Integer(value) for sym, value in values.items()})
    if not result.is_Integer:
        raise Sod2Error(f"dimension {dim} does not evaluate to an integer at {values}: {result}")
    return int(result)


def format_dim(dim: Dim) -> str:
    """The text form of a dim, as written by the printer and into ONNX `dim_param`."""
    if isinstance(dim, int):
        return str(dim)
    return sympy.sstr(dim)


def parse_dim(text: str) -> Dim:
    """Read a `dim_param` text: a name becomes a symbol, arithmetic text an expression.

    Names that are not Python identifiers (`batch size`, `N-?`) and texts that do not parse as
    arithmetic over identifiers become one opaque symbol with that exact name, so nothing is lost.
    """
    text = text.strip()
    if not text:
        raise Sod2Error("an empty dim_param names no dimension")
    if text.isdigit():
        return int(text)
    if _IDENTIFIER.match(text) and not keyword.iskeyword(text):
        return symbol(text)
    if _ARITHMETIC.match(text):
        parsed = _parse_arithmetic(text)
        if parsed is not None:
            return parsed
    return symbol(text)


@functools.lru_cache(maxsize=4096)
def _parse_arithmetic(text: str) -> Dim | None:
    """Parse `text` as arithmetic over identifiers; None if it is not that (or not an extent).
    Cached: a model repeats the same few texts on many tensors, and sympy's parser is slow (the
    result is immutable and symbols are interned by name and assumptions, so sharing is safe)."""
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) - set(_FUNCTIONS)
    if any(keyword.iskeyword(name) or name.startswith("__") for name in names):
        return None
    local = {name: symbol(name) for name in names}
    local.update(_FUNCTIONS)
    try:
        expr = sympy.sympify(text, locals=local, rational=True)
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError, AttributeError):
        return None
    if not isinstance(expr, sympy.Expr) or not (expr.is_integer or expr.free_symbols):
        return None
    try:
        return as_dim(expr)
    except Sod2Error:
        return None
