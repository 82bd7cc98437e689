"""Integer arithmetic on symbolic dims, in a canonical form, so equal extents compare equal.

Shape formulas are full of integer division: a strided convolution gives
`floor((H + 2p - d(k-1) - 1)/s) + 1`, `ceil_mode` pooling a ceiling, a `SAME` padding `ceil(H/s)`.
sympy keeps such expressions in whatever form they were built, so `floor((H - 1)/2) + 1` and
`ceiling(H/2)` (equal for every integer H) compare unequal. Here every division is built by
`floor_div` / `ceil_div`, which produce one canonical form:

    floor((Q + r)/m) + k     with Q an integer-valued sum with integer coefficients whose gcd with
                             m is 1, m >= 2, 0 <= r < m and k an integer (or the negation of
                             such a form, when every coefficient of Q would be negative),

using the identities (Q integer-valued, m, a positive integers, y real):
- `ceil(x/m) = floor((x + m - 1)/m)`;
- `floor((Q + c)/m) = floor((Q + (c mod m))/m) + (c div m)`;
- `floor((g*Q + c)/(g*m)) = floor((Q + floor(c/g))/m)`;
- `floor((Q + floor(y))/m) = floor((Q + y)/m)`, which flattens nested divisions.

Results are memoized: the same few expressions recur thousands of times in a large graph, and
building sympy expressions is the analysis's main cost. Python ints never become sympy objects.
"""

from __future__ import annotations

import functools
import math

import sympy

from sod2.errors import Sod2Error
from sod2.ir.dims import Dim

Extent = int | sympy.Expr


def floor_div(numerator: Extent, denominator: Extent) -> Dim | sympy.Expr:
    """floor(numerator / denominator) in canonical form (the denominator must be positive)."""
    if isinstance(numerator, int) and isinstance(denominator, int):
        if denominator <= 0:
            raise Sod2Error(f"division of extents by {denominator}")
        return numerator // denominator
    return _floor_div(sympy.sympify(numerator), sympy.sympify(denominator))


def ceil_div(numerator: Extent, denominator: Extent) -> Dim | sympy.Expr:
    """ceil(numerator / denominator) = floor((numerator + denominator - 1) / denominator)."""
    if isinstance(numerator, int) and isinstance(denominator, int):
        return -(-numerator // denominator)
    return floor_div(sympy.sympify(numerator) + denominator - 1, denominator)


@functools.lru_cache(maxsize=1 << 16)
def _floor_div(numerator: sympy.Expr, denominator: sympy.Expr) -> Extent:
    if not (denominator.is_Integer and int(denominator) > 0):
        # A symbolic divisor: no canonical form beyond sympy's own.
        return _to_int(sympy.floor(numerator / denominator))
    divisor = int(denominator)
    if divisor == 1:
        return _to_int(sympy.expand(numerator))
    terms, constant, scale = _integer_terms(sympy.expand(numerator))
    if terms is None:
        return _to_int(sympy.floor(numerator / divisor))
    if scale == 1 and terms and all(coeff < 0 for coeff in terms.values()):
        # floor(-x/m) = -ceil(x/m): keep the symbols' coefficients positive, so that signs
        # stay visible (ceil(floor(H/16)/7) is non-negative; floor(-floor(H/16)/7) hides it)
        return _to_int(-_floor_div(sympy.expand(-numerator + divisor - 1), denominator))
    divisor *= scale  # numerator = (sum(terms) + constant) / scale
    nested = _single_floor(terms)
    if nested is not None:  # floor((floor((Q + r)/a) + c)/m) = floor((Q + r + a*c)/(a*m))
        inner_numerator, inner_divisor = nested
        return _floor_div(
            sympy.expand(inner_numerator + inner_divisor * constant),
            sympy.Integer(inner_divisor * divisor),
        )
    gcd = math.gcd(divisor, *terms.values())
    divisor //= gcd
    constant = constant // gcd  # floor((g*Q + c)/(g*m)) = floor((Q + floor(c/g))/m)
    whole, remainder = divmod(constant, divisor)
    reduced = sympy.Add(*(sympy.Integer(coeff // gcd) * term for term, coeff in terms.items()))
    if divisor == 1:
        return _to_int(reduced + whole)
    return _to_int(sympy.floor((reduced + remainder) / divisor) + whole)


def _integer_terms(expr: sympy.Expr) -> tuple[dict[sympy.Expr, int] | None, int, int]:
    """Write `expr` as (sum(coeff * term) + constant) / scale with integer coeffs and constant.

    Every term must be integer-valued (symbols, floors, products of them ...); otherwise the
    first item is None.
    """
    coefficients = expr.as_coefficients_dict()
    denominators = [sympy.Rational(c).q for c in coefficients.values()]
    scale = math.lcm(*denominators) if denominators else 1
    terms: dict[sympy.Expr, int] = {}
    constant = 0
    for term, coeff in coefficients.items():
        scaled = sympy.Rational(coeff) * scale
        if not scaled.is_Integer:
            return None, 0, 1
        if term == 1:
            constant += int(scaled)
        elif _is_integer(term):
            terms[term] = terms.get(term, 0) + int(scaled)
        else:
            return None, 0, 1
    return terms, constant, scale


def _is_integer(term: sympy.Expr) -> bool:
    """Whether sympy proves `term` integer-valued. Its assumption system may evaluate a Max or
    Min numerically to decide, and fail there (an argument it cannot compare): unproven."""
    try:
        return bool(term.is_integer)
    except (ValueError, TypeError):
        return False


def _single_floor(terms: dict[sympy.Expr, int]) -> tuple[sympy.Expr, int] | None:
    """(numerator, divisor) when `terms` is exactly one floor((...)/divisor) with coefficient 1."""
    if len(terms) != 1:
        return None
    ((term, coeff),) = terms.items()
    if coeff != 1 or not isinstance(term, sympy.floor):
        return None
    numerator, denominator = sympy.fraction(sympy.together(term.args[0]))
    if not (denominator.is_Integer and int(denominator) > 0):
        return None
    return sympy.expand(numerator), int(denominator)


def _to_int(expr: sympy.Expr) -> Extent:
    return int(expr) if expr.is_Integer else expr


def dim_min(*values: Extent) -> Extent:
    """The smallest of `values` (sympy's Min, which knows that symbols are positive)."""
    if all(isinstance(v, int) for v in values):
        return min(values)  # type: ignore[type-var]
    return _min(values)


def dim_max(*values: Extent) -> Extent:
    """The largest of `values`."""
    if all(isinstance(v, int) for v in values):
        return max(values)  # type: ignore[type-var]
    return _max(values)


@functools.lru_cache(maxsize=1 << 16)
def _min(values: tuple[Extent, ...]) -> Extent:
    return _to_int(sympy.Min(*values))


@functools.lru_cache(maxsize=1 << 16)
def _max(values: tuple[Extent, ...]) -> Extent:
    return _to_int(sympy.Max(*values))


def provably_equal(left: Extent, right: Extent) -> bool:
    """True only when `left == right` for every binding of the (positive integer) symbols.

    Canonical forms make equal divisions identical; what remains is polynomial identity, which
    `expand` decides. False means "not proven", not "different".
    """
    if isinstance(left, int) and isinstance(right, int):
        return left == right
    if left == right:
        return True
    return _difference_is_zero(sympy.sympify(left), sympy.sympify(right))


@functools.lru_cache(maxsize=1 << 16)
def _difference_is_zero(left: sympy.Expr, right: sympy.Expr) -> bool:
    return sympy.expand(left - right) == 0
