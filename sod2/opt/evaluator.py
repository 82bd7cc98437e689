"""Generated evaluators: a straight-line program over integer symbols, compiled once, run per input.

A symbolic memory plan is a list of assignments `name = expr`, where `expr` is a sympy expression
over the model's symbols and earlier names (`o7 = Max(o3 + s3, o5 + s5)`). Evaluating it with sympy
per input would take milliseconds; here it is turned into Python source once:

    def evaluate(v, out):
        N = v[0]; H = v[1]
        t0 = H * N
        o7 = max(o3 + 256 * t0, o5 + 64 * ((t0 + 1) // 2))
        out[12] = o7
        ...

Every distinct subexpression is computed once (structural sharing by hashing, which is what
`sympy.cse` would find here, at a fraction of its cost). Integer division is exact: `floor(p/q)`
becomes `p // q` on integers, never a float. The source runs as plain Python for small programs
and is compiled with `numba.njit` for large ones, where the interpreter's per-statement cost
would dominate (an arena of 2,000 buffers then instantiates in microseconds).

Supported: integers, symbols, +, *, integer powers, floor, ceiling, Max, Min, Mod, and rational
coefficients whose sum is an integer (combined into one exact division).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy

from sod2.errors import Sod2Error

NUMBA_THRESHOLD = 48
"""Programs with more statements than this are compiled with Numba (when `backend="auto"`)."""


class EvaluatorError(Sod2Error):
    """An expression cannot be evaluated by generated integer code."""


def ref(name: str) -> sympy.Symbol:
    """The symbol standing for an earlier assignment's value inside a later expression."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


class Evaluator:
    """Evaluate named integer expressions for a binding of symbols, with generated code.

    `assignments` are `(name, expr)` in dependency order: an expression may use the symbols and
    the names assigned before it. `outputs` are the names whose values `__call__` returns, in order.
    """

    def __init__(
        self,
        symbols: Sequence[sympy.Symbol],
        assignments: Sequence[tuple[str, sympy.Expr | int]],
        outputs: Sequence[str],
        *,
        backend: str = "auto",
    ) -> None:
        self.symbols = tuple(symbols)
        self.outputs = tuple(outputs)
        self._names = [s.name for s in self.symbols]
        self.source = _Emitter(self.symbols, assignments, self.outputs).source()
        namespace: dict[str, Any] = {}
        exec(compile(self.source, f"<sod2 evaluator {_digest(self.source)}>", "exec"), namespace)
        function = namespace["evaluate"]
        statements = self.source.count("\n")
        if backend == "numba" or (backend == "auto" and statements > NUMBA_THRESHOLD):
            function = _jit(self.source, function)
            self.backend = "numba"
        elif backend in ("python", "auto"):
            self.backend = "python"
        else:
            raise EvaluatorError(
                f"unknown evaluator backend {backend!r}: use auto, python or numba"
            )
        self._function = function
        self._values = np.zeros(max(1, len(self.symbols)), dtype=np.int64)
        self._out = np.zeros(max(1, len(self.outputs)), dtype=np.int64)

    def __call__(self, binding: Mapping[str, int]) -> np.ndarray:
        """The outputs at `binding` (every symbol by name), as an int64 array (a fresh copy)."""
        values = self._values
        try:
            for index, name in enumerate(self._names):
                values[index] = binding[name]
        except KeyError as missing:
            raise EvaluatorError(
                f"no value for symbol {missing.args[0]} (needs {', '.join(self._names)})"
            ) from None
        return self.call(values)

    def call(self, values: np.ndarray) -> np.ndarray:
        """The outputs for symbol values given as an int64 array in `symbols` order."""
        out = self._out.copy()
        self._function(values, out)
        return out[: len(self.outputs)]


def _digest(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:12]


_JITTED: dict[str, Any] = {}


def _jit(source: str, function: Any) -> Any:
    """The Numba-compiled `function` (compiled once per distinct source in this process)."""
    key = _digest(source)
    if key not in _JITTED:
        import numba

        _JITTED[key] = numba.njit(cache=False, nogil=True)(function)
    return _JITTED[key]


class _Emitter:
    """Turns assignments into the source of `def evaluate(v, out)`."""

    def __init__(
        self,
        symbols: Sequence[sympy.Symbol],
        assignments: Sequence[tuple[str, sympy.Expr | int]],
        outputs: Sequence[str],
    ) -> None:
        self.lines = ["def evaluate(v, out):"]
        self.names: dict[sympy.Expr, str] = {}
        self.counter = itertools.count()
        known = {s.name for s in symbols}
        self.by_name: dict[str, str] = {}
        for index, symbol in enumerate(symbols):
            self.by_name[symbol.name] = f"s_{index}"
            self.lines.append(f"    s_{index} = v[{index}]")
        self.assigned: dict[str, str] = {}
        for name, expr in assignments:
            expr = sympy.sympify(expr)
            unknown = {s.name for s in expr.free_symbols} - known - set(self.assigned)
            if unknown:
                raise EvaluatorError(f"{name} = {expr} uses unknown symbols {sorted(unknown)}")
            variable = self._emit(expr)
            self.assigned[name] = variable
            self.by_name[name] = variable
        for index, name in enumerate(outputs):
            if name not in self.assigned:
                raise EvaluatorError(f"output {name!r} is never assigned")
            self.lines.append(f"    out[{index}] = {self.assigned[name]}")

    def source(self) -> str:
        return "\n".join([*self.lines, "    return None"]) + "\n"

    def _emit(self, expr: sympy.Expr) -> str:
        """A variable or literal holding `expr`; emits the statements computing it once."""
        if expr in self.names:
            return self.names[expr]
        if expr.is_Integer:
            return str(int(expr))
        if expr.is_Symbol:
            return self.by_name[expr.name]
        code = self._code(expr)
        variable = f"t_{next(self.counter)}"
        self.lines.append(f"    {variable} = {code}")
        self.names[expr] = variable
        return variable

    def _code(self, expr: sympy.Expr) -> str:
        if isinstance(expr, (sympy.Add, sympy.Mul)) and _has_fraction(expr):
            numerator, denominator = sympy.fraction(sympy.together(expr))
            if not denominator.is_Integer:
                raise EvaluatorError(f"cannot evaluate {expr} in integers")
            return f"({self._emit(sympy.expand(numerator))}) // {int(denominator)}"
        if isinstance(expr, sympy.Add):
            return " + ".join(self._emit(arg) for arg in expr.args)
        if isinstance(expr, sympy.Mul):
            return " * ".join(self._emit(arg) for arg in expr.args)
        if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 0:
            return f"{self._emit(expr.base)} ** {int(expr.exp)}"
        if isinstance(expr, (sympy.floor, sympy.ceiling)):
            numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
            top, bottom = self._emit(sympy.expand(numerator)), self._emit(denominator)
            if isinstance(expr, sympy.floor):
                return f"{top} // {bottom}"
            return f"-((-{top}) // {bottom})"
        if isinstance(expr, (sympy.Max, sympy.Min)):
            function = "max" if isinstance(expr, sympy.Max) else "min"
            args = [self._emit(arg) for arg in expr.args]
            code = args[0]
            for arg in args[1:-1]:  # binary calls, one statement each: what Numba types best,
                variable = f"t_{next(self.counter)}"  # and no nesting limit on wide Max
                self.lines.append(f"    {variable} = {function}({code}, {arg})")
                code = variable
            return f"{function}({code}, {args[-1]})"
        if isinstance(expr, sympy.Mod):
            return f"{self._emit(expr.args[0])} % {self._emit(expr.args[1])}"
        raise EvaluatorError(f"cannot generate integer code for {expr} ({type(expr).__name__})")


def _has_fraction(expr: sympy.Expr) -> bool:
    """True when a coefficient of `expr` (outside any function) is a non-integer rational."""
    if isinstance(expr, sympy.Rational):
        return not expr.is_Integer
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        return any(_has_fraction(arg) for arg in expr.args)
    return False
