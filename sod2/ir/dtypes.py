"""Element types of tensors.

`DType` is an immutable value naming one ONNX element type. Its integer value is the ONNX
`TensorProto.DataType` code, so conversion to and from ONNX is the identity on codes. Every ONNX type
has a numpy counterpart: the standard ones in numpy itself, the narrow float and int types
(bfloat16, float8, float4, int4 ...) through `ml_dtypes`, which onnx itself depends on.

Invariant: `DType.from_numpy(d.numpy) is d` for every `d` except STRING (numpy `object`), and
`DType.from_onnx(d.value) is d` for every `d`.
"""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np

from sod2.errors import Sod2Error


def _ml(name: str) -> np.dtype | None:
    """An ml_dtypes type by name; None when the installed ml_dtypes predates it."""
    found = getattr(ml_dtypes, name, None)
    return None if found is None else np.dtype(found)


class DType(enum.IntEnum):
    """An ONNX element type; the enum value is its `TensorProto.DataType` code."""

    FLOAT32 = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    FLOAT64 = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26
    FLOAT6E2M3 = 27
    FLOAT6E3M2 = 28

    # -- conversions -------------------------------------------------------------------------

    @classmethod
    def from_onnx(cls, code: int) -> DType:
        """The DType of an ONNX `TensorProto.DataType` code; raises `Sod2Error` for unknown codes."""
        try:
            return cls(code)
        except ValueError:
            raise Sod2Error(
                f"unknown ONNX element type code {code}; this sod2 knows codes 1..{max(cls)}"
            ) from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DType:
        """The DType of a numpy dtype (strings and objects map to STRING)."""
        np_dtype = np.dtype(dtype)
        if np_dtype.kind in ("U", "S", "O"):
            return cls.STRING
        found = _FROM_NUMPY.get(np_dtype)
        if found is None:
            raise Sod2Error(f"numpy dtype {np_dtype} has no ONNX element type")
        return found

    @property
    def onnx(self) -> int:
        """The ONNX `TensorProto.DataType` code."""
        return int(self.value)

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds values of this type (object for STRING)."""
        found = _TO_NUMPY[self]
        if found is None:
            raise Sod2Error(f"element type {self.short_name} needs a newer ml_dtypes package")
        return found

    # -- facts -------------------------------------------------------------------------------

    @property
    def bits(self) -> int:
        """Storage bits per element (strings count as a pointer: 64)."""
        return _BITS.get(self, 8 * self.numpy.itemsize)

    @property
    def is_float(self) -> bool:
        """True for real floating-point types of any width."""
        return self.name.startswith(("FLOAT", "BFLOAT"))

    @property
    def is_integer(self) -> bool:
        """True for signed and unsigned integer types (not BOOL)."""
        return self.name.startswith(("INT", "UINT"))

    @property
    def is_signed(self) -> bool:
        """True for types that can hold negative values."""
        return not self.name.startswith(("UINT", "BOOL", "STRING"))

    @property
    def short_name(self) -> str:
        """The lower-case name used by the printer: `float32`, `int64`, `bool` ..."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.short_name

    def __repr__(self) -> str:
        return f"DType.{self.name}"


_TO_NUMPY: dict[DType, np.dtype | None] = {
    DType.FLOAT32: np.dtype(np.float32),
    DType.UINT8: np.dtype(np.uint8),
    DType.INT8: np.dtype(np.int8),
    DType.UINT16: np.dtype(np.uint16),
    DType.INT16: np.dtype(np.int16),
    DType.INT32: np.dtype(np.int32),
    DType.INT64: np.dtype(np.int64),
    DType.STRING: np.dtype(object),
    DType.BOOL: np.dtype(np.bool_),
    DType.FLOAT16: np.dtype(np.float16),
    DType.FLOAT64: np.dtype(np.float64),
    DType.UINT32: np.dtype(np.uint32),
    DType.UINT64: np.dtype(np.uint64),
    DType.COMPLEX64: np.dtype(np.complex64),
    DType.COMPLEX128: np.dtype(np.complex128),
    DType.BFLOAT16: _ml("bfloat16"),
    DType.FLOAT8E4M3FN: _ml("float8_e4m3fn"),
    DType.FLOAT8E4M3FNUZ: _ml("float8_e4m3fnuz"),
    DType.FLOAT8E5M2: _ml("float8_e5m2"),
    DType.FLOAT8E5M2FNUZ: _ml("float8_e5m2fnuz"),
    DType.UINT4: _ml("uint4"),
    DType.INT4: _ml("int4"),
    DType.FLOAT4E2M1: _ml("float4_e2m1fn"),
    DType.FLOAT8E8M0: _ml("float8_e8m0fnu"),
    DType.UINT2: _ml("uint2"),
    DType.INT2: _ml("int2"),
    DType.FLOAT6E2M3: _ml("float6_e2m3fn"),
    DType.FLOAT6E3M2: _ml("float6_e3m2fn"),
}

_FROM_NUMPY: dict[np.dtype, DType] = {
    np_dtype: dtype
    for dtype, np_dtype in _TO_NUMPY.items()
    if np_dtype is not None and dtype is not DType.STRING
}

# Packed types are stored in fewer bits than their numpy container (one byte per element).
_BITS: dict[DType, int] = {
    DType.UINT4: 4,
    DType.INT4: 4,
    DType.FLOAT4E2M1: 4,
    DType.UINT2: 2,
    DType.INT2: 2,
    DType.FLOAT6E2M3: 6,
    DType.FLOAT6E3M2: 6,
    DType.STRING: 64,
}
