"""Numba intrinsics that generated loop nests call: single LLVM instructions Numba has no
spelling for.

`float32_from_bits(i)` reinterprets the low 32 bits of an integer as a float32 (an LLVM
`bitcast`). The float32 exponential in generated code (`codegen`'s `_exp32`) builds 2^n this
way, as C code does with a union: exact, and unlike a call to `expf` or `ldexpf` it leaves the
loop around it free to be vectorized.

Invariant: an intrinsic here never changes meaning once released. Numba's on-disk cache of a
generated module does not notice a change in a function it imports, so a changed intrinsic
gets a new name instead.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def float32_from_bits(typingctx: Any, bits: types.Type) -> Any:
    """The float32 whose IEEE-754 bits are the low 32 bits of the integer `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif bits.bitwidth < 32:  # the two's complement value's low 32 bits
            extend = builder.sext if bits.signed else builder.zext
            value = extend(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen
