"""What RDP knows about a tensor, and where each of its symbols comes from.

Every extent RDP finds is an expression over symbols (`sod2.ir.Dim`). A symbol has an origin:

| origin | meaning | bound at run time |
|---|---|---|
| INPUT | a named dim of a model input (`N`, `H`) | from the input shapes, before anything runs |
| ANONYMOUS | an unnamed dim of a model input (`unk__0`) | from the input shapes |
| EXECUTION | an extent only execution can tell: NonZero's count, Unique's size ... (EDO) | when the op producing it has run |
| BRANCH | an extent that differs between the branches of an If | when the If has run |
| UNKNOWN | an extent the analysis could not express (a value it could not follow) | when the op producing it has run |

So a dim is *resolved* when it is an int or an expression over INPUT and ANONYMOUS symbols only:
its value is known as soon as the inputs are. Other symbols still carry what RDP learned (bounds,
possible values), which planning uses.

A `TensorFact` is a tensor's type (element type and `Shape`), plus, for small tensors holding
whole numbers (shape tensors, and the float scalars that exporters compute extents with), their
value: one integer expression per element, or None where an element is unknown.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from sod2.ir.dims import Dim, format_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape

MAX_VALUE_ELEMENTS = 64
"""Integer tensors up to this many elements carry their value through RDP (shape tensors)."""

ValueFact = tuple[Dim | sympy.Expr | None, ...]
"""Elements of a small integer tensor, flattened: an int, an expression, or None (unknown)."""


class SymbolOrigin(enum.Enum):
    """Where a symbol comes from; see the module docstring."""

    INPUT = "input"
    ANONYMOUS = "anonymous input"
    EXECUTION = "execution"
    BRANCH = "branch"
    UNKNOWN = "unknown"

    @property
    def from_inputs(self) -> bool:
        """True for symbols bound by the model's input shapes alone."""
        return self in (SymbolOrigin.INPUT, SymbolOrigin.ANONYMOUS)


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """A symbol's origin, the node that introduced it, and what is known of its value."""

    symbol: sympy.Symbol
    origin: SymbolOrigin
    node: str = ""
    upper_bound: Dim | None = None
    possible_values: tuple[Dim, ...] = ()
    note: str = ""

    def describe(self) -> str:
        """One line: name, origin, bounds, where it comes from."""
        parts = [f"{self.symbol}: {self.origin.value}"]
        if self.node:
            parts.append(f"from node {self.node!r}")
        if self.upper_bound is not None:
            parts.append(f"<= {format_dim(self.upper_bound)}")
        if self.possible_values:
            parts.append("one of {" + ", ".join(format_dim(v) for v in self.possible_values) + "}")
        if self.note:
            parts.append(f"({self.note})")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Assumption:
    """A relation an op needs that RDP could not prove; the runtime checks it per input.

    `holds` is a sympy boolean over the symbols (e.g. `Eq(a, b) | Eq(a, 1) | Eq(b, 1)`).
    """

    node: str
    op_type: str
    holds: sympy.Basic
    reason: str

    def describe(self) -> str:
        """One line: the relation and why the node needs it."""
        return f"{self.holds}  (node {self.node!r} {self.op_type}: {self.reason})"


@dataclass(frozen=True, slots=True)
class TensorFact:
    """Element type, shape and (for shape tensors) value of one tensor."""

    dtype: DType | None
    shape: Shape = field(default_factory=Shape.unknown)
    value: ValueFact | None = None

    def __str__(self) -> str:
        dtype = "?" if self.dtype is None else self.dtype.short_name
        text = f"{dtype}{self.shape}"
        if self.value is not None:
            shown = ", ".join("?" if v is None else format_dim(v) for v in self.value)
            text += f" = [{shown}]"
        return text


Facts = Sequence[TensorFact | None]
"""The facts of a node's inputs, in slot order; None for an omitted optional input."""


def constant_fact(value: np.ndarray) -> TensorFact:
    """The fact of a known array: type and shape, and the value of a small one whose elements
    are all integers (integer, boolean, or float tensors holding whole numbers)."""
    dtype = DType.from_numpy(value.dtype)
    known: ValueFact | None = None
    if value.ndim <= 1 and value.size <= MAX_VALUE_ELEMENTS and _whole_numbers(value):
        known = tuple(int(v) for v in value.reshape(-1))
    return TensorFact(dtype, Shape(value.shape), known)


def _whole_numbers(value: np.ndarray) -> bool:
    if value.dtype.kind in "iub":
        return True
    if value.dtype.kind != "f":
        return False
    flat = value.astype(np.float64).reshape(-1)
    return bool(np.all(np.isfinite(flat)) and np.all(flat == np.round(flat)))
