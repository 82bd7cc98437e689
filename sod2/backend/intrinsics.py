"""Numba intrinsics that generated loop nests call: single LLVM instructions Numba has no
spelling for.

`float32_from_bits(i)` reinterprets the low 32 bits of an integer as a float32 (an LLVM
`bitcast`). The float32 exponential in generated code (`codegen`'s `_exp32`) builds 2^n this
way, as C code does with a union: exact, and unlike a call to `expf` or `ldexpf` it leaves the
loop around it free to be vectorized.

`prefetch(matrix, i, j)` asks the CPU to bring the cache line of `matrix[i, j]` into its caches
(`llvm.prefetch`, for reading, into every level), and returns at once. It is a hint: it never
faults, whatever the address, and changes no value. A loop that will read a block of a large
matrix soon asks for it while it computes on the block before, so the memory's latency is paid
while the arithmetic runs, not after it.

Invariant: an intrinsic here never changes meaning once released. Numba's on-disk cache of a
generated module does not notice a change in a function it imports, so a changed intrinsic
gets a new name instead.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
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


@intrinsic
def prefetch(typingctx: Any, matrix: types.Type, i: types.Type, j: types.Type) -> Any:
    """Prefetch the cache line of `matrix[i, j]` for reading (no bounds check: a hint)."""
    if not (
        isinstance(matrix, types.Array)
        and matrix.ndim == 2
        and isinstance(i, types.Integer)
        and isinstance(j, types.Integer)
    ):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        array = context.make_array(matrix)(context, builder, args[0])
        indices = [
            context.cast(builder, value, kind, types.intp)
            for value, kind in zip(args[1:], signature.args[1:], strict=True)
        ]
        pointer = cgutils.get_item_pointer(
            context, builder, matrix, array, indices, wraparound=False, boundscheck=False
        )
        byte = ir.IntType(8).as_pointer()
        word = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte, word, word, word]),
            "llvm.prefetch.p0i8",
        )
        # read (0), keep in every cache level (locality 3), data cache (1)
        flags = [ir.Constant(word, 0), ir.Constant(word, 3), ir.Constant(word, 1)]
        builder.call(function, [builder.bitcast(pointer, byte), *flags])
        return context.get_dummy_value()

    return types.none(matrix, i, j), codegen
