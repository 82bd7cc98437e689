"""Shapes and the types of values: tensors, sequences, optionals, maps.

All of these are immutable values (frozen dataclasses): two equal shapes are interchangeable.

- `Shape` is a tuple of `Dim`s, or `Shape.unknown()` when even the rank is not known.
- `TensorType(dtype, shape)` is the type of a tensor. `dtype` is None only where an ONNX model left
  the element type out (allowed for some intermediate values).
- `SequenceType`, `OptionalType`, `MapType` and `SparseTensorType` mirror ONNX's other value types
  so that every model the ONNX checker accepts has a faithful IR.

`Type` is the union of these. A value whose type is not known at all has type None on the IR.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import sympy

from sod2.errors import Sod2Error
from sod2.ir.dims import Dim, as_dim, dim_symbols, evaluate_dim, format_dim
from sod2.ir.dtypes import DType


@dataclass(frozen=True, slots=True)
class Shape:
    """A tensor shape: a tuple of dims, or None when the rank itself is unknown."""

    dims: tuple[Dim, ...] | None

    def __init__(self, dims: Iterable[int | sympy.Expr] | None) -> None:
        object.__setattr__(self, "dims", None if dims is None else tuple(as_dim(d) for d in dims))

    @classmethod
    def unknown(cls) -> Shape:
        """The shape of unknown rank."""
        return cls(None)

    @classmethod
    def scalar(cls) -> Shape:
        """The rank-0 shape."""
        return cls(())

    @property
    def rank(self) -> int | None:
        """Number of dims, or None when the rank is unknown."""
        return None if self.dims is None else len(self.dims)

    @property
    def is_static(self) -> bool:
        """True when the rank and every dim are known ints."""
        return self.dims is not None and all(isinstance(d, int) for d in self.dims)

    @property
    def symbols(self) -> frozenset[sympy.Symbol]:
        """Symbols occurring in the dims."""
        return dim_symbols(self.dims or ())

    def numel(self) -> Dim | None:
        """The element count as a Dim (product of dims); None for unknown rank."""
        if self.dims is None:
            return None
        if self.is_static:
            return math.prod(self.dims)  # type: ignore[arg-type]
        return as_dim(sympy.Mul(*self.dims))

    def evaluate(self, binding: Mapping[sympy.Symbol | str, int]) -> tuple[int, ...]:
        """The concrete shape at `binding`; raises `Sod2Error` if the rank is unknown."""
        if self.dims is None:
            raise Sod2Error("cannot evaluate a shape of unknown rank")
        return tuple(evaluate_dim(d, binding) for d in self.dims)

    def __iter__(self) -> Iterator[Dim]:
        if self.dims is None:
            raise Sod2Error("cannot iterate over the dims of a shape of unknown rank")
        return iter(self.dims)

    def __len__(self) -> int:
        if self.dims is None:
            raise Sod2Error("a shape of unknown rank has no length")
        return len(self.dims)

    def __getitem__(self, index: int) -> Dim:
        if self.dims is None:
            raise Sod2Error("a shape of unknown rank has no dims")
        return self.dims[index]

    def __str__(self) -> str:
        if self.dims is None:
            return "[*]"
        return "[" + ", ".join(format_dim(d) for d in self.dims) + "]"


@dataclass(frozen=True, slots=True)
class TensorType:
    """The type of a tensor: element type and shape."""

    dtype: DType | None
    shape: Shape = Shape(None)

    def __post_init__(self) -> None:
        if not isinstance(self.shape, Shape):
            object.__setattr__(self, "shape", Shape(self.shape))

    def __str__(self) -> str:
        dtype = "?" if self.dtype is None else self.dtype.short_name
        return f"{dtype}{self.shape}"


@dataclass(frozen=True, slots=True)
class SparseTensorType:
    """The type of a sparse tensor (COO)."""

    dtype: DType | None
    shape: Shape = Shape(None)

    def __str__(self) -> str:
        dtype = "?" if self.dtype is None else self.dtype.short_name
        return f"sparse<{dtype}{self.shape}>"


@dataclass(frozen=True, slots=True)
class SequenceType:
    """A sequence of values of one element type (None: element type unknown)."""

    element: Type | None

    def __str__(self) -> str:
        return f"seq<{'?' if self.element is None else self.element}>"


@dataclass(frozen=True, slots=True)
class OptionalType:
    """A value of `element` type, or nothing."""

    element: Type | None

    def __str__(self) -> str:
        return f"optional<{'?' if self.element is None else self.element}>"


@dataclass(frozen=True, slots=True)
class MapType:
    """A map from keys of one element type to values of another (ONNX-ML)."""

    key: DType
    value: Type | None

    def __str__(self) -> str:
        return f"map<{self.key.short_name}, {'?' if self.value is None else self.value}>"


Type = Union[TensorType, SparseTensorType, SequenceType, OptionalType, MapType]  # noqa: UP007
"""Every kind of value type the IR knows."""


def tensor_type(dtype: DType | None, dims: Sequence[int | sympy.Expr] | None) -> TensorType:
    """Shorthand: `tensor_type(DType.FLOAT32, [N, 3])`."""
    return TensorType(dtype, Shape(dims))


CONTAINER_TYPES = (SequenceType, OptionalType)
"""Types of values that hold tensors rather than being one (for isinstance checks)."""
