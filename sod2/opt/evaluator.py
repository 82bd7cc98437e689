"""Generated evaluators: a straight-line program over integer symbols, compiled once, run per input.

A symbolic memory plan's sizes are a list of assignments `name = expr`, where `expr` is a sympy
expression over the model's symbols and earlier names (`z7 = 256 * H * N`). Evaluating them with
sympy per input would take milliseconds; here they are turned into Python source once:

    def evaluate(v, out):
        s_0 = v[0]; s_1 = v[1]
        t_0 = s_1 * s_0
        t_1 = 64 * ((t_0 + 1) // 2)
        out[0] = t_0
        out[1] = t_1
        ...

Every distinct subexpression is computed once (structural sharing by hashing, which is what
`sympy.cse` would find here, at a fraction of its cost), and so is every distinct output value:
outputs that share a value (a hundred storages of the same size) read one slot, gathered after the
call. Integer division is exact: `floor(p/q)` becomes `p // q` on integers, never a float.

Backends: plain Python (about 65 ns a statement, no start-up cost) or `numba.njit` (about a
microsecond a call, whatever the length, after a compile of seconds). `backend="auto"` compiles
programs of more than `numba_above` statements. Compiled programs are cached on disk: the source
is written to `evaluator_cache_dir()` (`$SOD2_CACHE_DIR/evaluators`, default
`~/.cache/sod2/evaluators`) as a module named by its hash, imported, and jitted with
`cache=True`, so a second process loads machine code instead of compiling again.

Supported: integers, symbols, +, *, integer powers, floor, ceiling, Max, Min, Mod, and rational
coefficients whose sum is an integer (combined into one exact division).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from sod2.cache import Rebuilt, cache_dir, digest, import_source
from sod2.errors import Sod2Error

NUMBA_THRESHOLD = 48
"""Programs with more statements than this are compiled with Numba (when `backend="auto"`)."""


class EvaluatorError(Sod2Error):
    """An expression cannot be evaluated by generated integer code."""


def ref(name: str) -> sympy.Symbol:
    """The symbol standing for an earlier assignment's value inside a later expression."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


class Evaluator(Rebuilt):
    """Evaluate named integer expressions for a binding of symbols, with generated code.

    `assignments` are `(name, expr)` in dependency order: an expression may use the symbols and
    the names assigned before it. `outputs` are the names whose values `__call__` returns, in order.
    `backend` is "python", "numba" or "auto" (Numba above `numba_above` statements).
    """

    TRANSIENT = ("_function",)

    def __init__(
        self,
        symbols: Sequence[sympy.Symbol],
        assignments: Sequence[tuple[str, sympy.Expr | int]],
        outputs: Sequence[str],
        *,
        backend: str = "auto",
        numba_above: int = NUMBA_THRESHOLD,
    ) -> None:
        if backend not in ("auto", "python", "numba"):
            raise EvaluatorError(
                f"unknown evaluator backend {backend!r}: use auto, python or numba"
            )
        self.symbols = tuple(symbols)
        self.outputs = tuple(outputs)
        self._names = [s.name for s in self.symbols]
        emitter = _Emitter(self.symbols, assignments, self.outputs)
        self.source = emitter.source()
        self.statements = self.source.count("\n") - 1
        numba = backend == "numba" or (backend == "auto" and self.statements > numba_above)
        self.backend = "numba" if numba else "python"
        self.rebuild()
        self._values = np.zeros(max(1, len(self.symbols)), dtype=np.int64)
        self._slots = np.zeros(max(1, emitter.slot_count), dtype=np.int64)
        gather = np.array(emitter.gather, dtype=np.intp)
        identity = np.array_equal(gather, np.arange(len(gather)))
        self._gather = None if identity else gather

    def rebuild(self) -> None:
        """The function from `source` (Numba's disk cache holds a compiled one)."""
        self._function = _jit(self.source) if self.backend == "numba" else _python(self.source)

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
        slots = self._slots.copy()
        self._function(values, slots)
        if self._gather is None:
            return slots[: len(self.outputs)]
        return slots[self._gather]


def evaluator_cache_dir() -> Path:
    """Where compiled evaluators live: `$SOD2_CACHE_DIR/evaluators`, else
    `~/.cache/sod2/evaluators`."""
    return cache_dir("evaluators")


def _python(source: str) -> Callable[..., None]:
    """`evaluate` from `source`, as a plain Python function."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<sod2 evaluator {digest(source)}>", "exec"), namespace)
    return namespace["evaluate"]


@functools.cache
def _jit_cached(source: str, directory: Path) -> Callable[..., None]:
    """The Numba-compiled `evaluate` of `source`, once per process and cache directory."""
    import numba

    try:
        module = import_source(source, directory, "sod2_evaluator")
    except OSError:  # no writable cache: compile in memory, for this process only
        return numba.njit(cache=False, nogil=True)(_python(source))
    return numba.njit(cache=True, nogil=True)(module.evaluate)


def _jit(source: str) -> Callable[..., None]:
    """The Numba-compiled `evaluate` of `source` (compiled on its first call, or loaded from
    Numba's on-disk cache beside the source file when an earlier process compiled it)."""
    return _jit_cached(source, evaluator_cache_dir())


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
        slots: dict[str, int] = {}  # one slot per distinct output value
        self.gather: list[int] = []
        for name in outputs:
            if name not in self.assigned:
                raise EvaluatorError(f"output {name!r} is never assigned")
            code = self.assigned[name]
            if code not in slots:
                slots[code] = len(slots)
                self.lines.append(f"    out[{slots[code]}] = {code}")
            self.gather.append(slots[code])
        self.slot_count = len(slots)

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
