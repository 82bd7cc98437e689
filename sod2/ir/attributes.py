"""Typed node attributes.

An `Attribute` is an immutable pair of an `AttrKind` (ONNX's attribute type) and a value:

| kind | value |
|---|---|
| INT, FLOAT, STRING | `int`, `float`, `str` (bytes that are not UTF-8 stay `bytes`) |
| INTS, FLOATS, STRINGS | tuples of those |
| TENSOR / TENSORS | `numpy.ndarray` / tuple of them |
| GRAPH / GRAPHS | `Graph` / tuple of them: the subgraphs of If, Loop, Scan ... |
| SPARSE_TENSOR(S) | `SparseTensor` / tuple of them |
| TYPE_PROTO(S) | `Type` / tuple of them |

The kind is kept explicitly because a value alone cannot tell an empty INTS from an empty FLOATS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sod2.errors import Sod2Error

if TYPE_CHECKING:
    from sod2.ir.graph import Graph


class AttrKind(enum.IntEnum):
    """ONNX `AttributeProto.AttributeType`; the value is ONNX's code."""

    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    SPARSE_TENSOR = 11
    SPARSE_TENSORS = 12
    TYPE_PROTO = 13
    TYPE_PROTOS = 14

    @property
    def is_list(self) -> bool:
        """True for the kinds whose value is a tuple."""
        return self.name.endswith("S") and self is not AttrKind.SPARSE_TENSOR


@dataclass(frozen=True, slots=True, eq=False)
class SparseTensor:
    """A COO sparse tensor constant: `values[i]` sits at `indices[i]` in a tensor of `dims`."""

    values: np.ndarray
    indices: np.ndarray
    dims: tuple[int, ...]

    def to_dense(self) -> np.ndarray:
        """The dense array this sparse tensor stands for."""
        dense = np.zeros(self.dims, dtype=self.values.dtype)
        if self.indices.size:
            index = self.indices
            if index.ndim == 1:  # linearized indices
                dense.reshape(-1)[index] = self.values
            else:
                dense[tuple(index.T)] = self.values
        return dense


@dataclass(frozen=True, slots=True, eq=False)
class Attribute:
    """A typed attribute value. Compared by value (arrays elementwise, graphs by identity)."""

    kind: AttrKind
    value: Any

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attribute) or other.kind is not self.kind:
            return NotImplemented if not isinstance(other, Attribute) else False
        return _values_equal(self.value, other.value)

    def __hash__(self) -> int:
        if self.kind in (
            AttrKind.INT,
            AttrKind.FLOAT,
            AttrKind.STRING,
            AttrKind.INTS,
            AttrKind.FLOATS,
            AttrKind.STRINGS,
        ):
            return hash((self.kind, self.value))
        return hash(self.kind)

    @property
    def graphs(self) -> tuple[Graph, ...]:
        """The subgraphs this attribute holds (empty unless GRAPH or GRAPHS)."""
        if self.kind is AttrKind.GRAPH:
            return (self.value,)
        if self.kind is AttrKind.GRAPHS:
            return tuple(self.value)
        return ()

    @classmethod
    def infer(cls, value: Any) -> Attribute:
        """Build an attribute from a plain Python value, inferring its kind.

        ints, floats, strings, arrays and graphs map to the scalar kinds; lists and tuples of them
        to the list kinds. An empty list is ambiguous: pass an `Attribute` with its kind instead.
        """
        from sod2.ir.graph import Graph

        if isinstance(value, Attribute):
            return value
        scalar_kind = _scalar_kind(value, Graph)
        if scalar_kind is not None:
            return cls(scalar_kind, _normalize_scalar(scalar_kind, value))
        if isinstance(value, (list, tuple)):
            if not value:
                raise Sod2Error(
                    "the kind of an empty list attribute is ambiguous; "
                    "give Attribute(AttrKind.INTS, ()) (or FLOATS, STRINGS ...)"
                )
            kinds = {_scalar_kind(item, Graph) for item in value}
            if kinds == {AttrKind.INT, AttrKind.FLOAT}:
                kinds = {AttrKind.FLOAT}
            if len(kinds) != 1 or None in kinds:
                raise Sod2Error(
                    f"attribute list mixes kinds or holds unsupported values: {value!r}"
                )
            (kind,) = kinds
            list_kind = AttrKind[kind.name + "S"]  # type: ignore[union-attr]
            return cls(list_kind, tuple(_normalize_scalar(kind, item) for item in value))  # type: ignore[arg-type]
        raise Sod2Error(f"cannot make an attribute of {type(value).__name__} value {value!r}")


def _scalar_kind(value: Any, graph_class: type) -> AttrKind | None:
    if isinstance(value, bool):
        return AttrKind.INT
    if isinstance(value, (int, np.integer)):
        return AttrKind.INT
    if isinstance(value, (float, np.floating)):
        return AttrKind.FLOAT
    if isinstance(value, (str, bytes)):
        return AttrKind.STRING
    if isinstance(value, np.ndarray):
        return AttrKind.TENSOR
    if isinstance(value, graph_class):
        return AttrKind.GRAPH
    if isinstance(value, SparseTensor):
        return AttrKind.SPARSE_TENSOR
    return None


def _normalize_scalar(kind: AttrKind, value: Any) -> Any:
    if kind is AttrKind.INT:
        return int(value)
    if kind is AttrKind.FLOAT:
        return float(value)
    return value


def _values_equal(left: Any, right: Any) -> bool:
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(map(_values_equal, left, right))
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        return (
            isinstance(left, np.ndarray)
            and isinstance(right, np.ndarray)
            and left.dtype == right.dtype
            and left.shape == right.shape
            and bool(np.array_equal(left, right, equal_nan=left.dtype.kind in "fc"))
        )
    if isinstance(left, SparseTensor) or isinstance(right, SparseTensor):
        return left is right
    if isinstance(left, float) and isinstance(right, float) and left != left and right != right:
        return True  # NaN attributes are equal to themselves
    return bool(left == right) if type(left) is type(right) else left is right
