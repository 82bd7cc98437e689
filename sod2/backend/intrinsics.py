"""Numba intrinsics that generated loop nests call: single LLVM instructions Numba has no
spelling for.

`float32_from_bits(i)` reinterprets the low 32 bits of an integer as a float32 (an LLVM
`bitcast`). The float32 exponential in generated code (`codegen`'s `_exp32`) builds 2^n this
way, as C code does with a union: exact, and unlike a call to `expf` or `ldexpf` it leaves the
loop around it free to be vectorized.

`float32_bits(x)` is the reverse: the IEEE-754 bits of a float32 as an int32. `codegen`'s
`_erfc32` clears the low bits of its argument with it, so that the argument's square splits
exactly into a float32 and a small remainder.

`prefetch(matrix, i, j)` asks the CPU to bring the cache line of `matrix[i, j]` into its caches
(`llvm.prefetch`, for reading, into every level), and returns at once. It is a hint: it never
faults, whatever the address, and changes no value. A loop that will read a block of a large
matrix soon asks for it while it computes on the block before, so the memory's latency is paid
while the arithmetic runs, not after it.

`tile_product(rows, vectors, lanes)` makes the register tile of `sod2.backend.kernels`'s panel
product: an intrinsic `tile(a, lda, w, dst, ldd, count, depth, ahead, lines, resume)` that computes a block of
`rows` rows by `vectors * lanes` columns of a float32 product with explicit LLVM vectors of
`lanes` floats, every partial sum held in a register for the whole sum (see its docstring).
Numba's own loops cannot say this: LLVM vectorizes a loop along one axis and keeps its sums in
memory, or sums along the depth and adds the lanes up at the end.

`call_gemm_scaled(address, codes, sizes, (alpha, beta), a, b, c, strides, integer)` calls a
CBLAS gemm through its address (an integer argument, so a loop that calls it is cached on disk
like any other), and `call_int_function(address, value)` a C function `int f(int)`:
`sod2.backend.blas` runs OpenBLAS's products from Numba's threads with them.

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
def float32_bits(typingctx: Any, value: types.Type) -> Any:
    """The IEEE-754 bits of the float32 `value`, as an int32."""
    if value != types.float32:
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(value), codegen


def _prefetch_line(builder: ir.IRBuilder, pointer: ir.Value) -> None:
    """Emit `llvm.prefetch` of the cache line at `pointer`: for reading (0), kept in every
    cache level (locality 3), data (1)."""
    byte = ir.IntType(8).as_pointer()
    word = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [byte, word, word, word]),
        "llvm.prefetch.p0i8",
    )
    flags = [ir.Constant(word, 0), ir.Constant(word, 3), ir.Constant(word, 1)]
    builder.call(function, [builder.bitcast(pointer, byte), *flags])


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
        _prefetch_line(builder, pointer)
        return context.get_dummy_value()

    return types.none(matrix, i, j), codegen


@intrinsic
def call_gemm_scaled(
    typingctx: Any,
    function: types.Type,
    codes: types.Type,
    sizes: types.Type,
    scales: types.Type,
    a: types.Type,
    b: types.Type,
    c: types.Type,
    strides: types.Type,
    integer: types.Type,
) -> Any:
    """Call the CBLAS gemm at address `function`, c = alpha a b + beta c: codes = (order,
    trans A, trans B), sizes = (M, N, K), scales = (alpha, beta) of the element type, a, b and
    c the operands' addresses, strides = (lda, ldb, ldc); `integer`'s type (a value not used)
    is the BLAS's integer."""
    if not (
        isinstance(codes, types.UniTuple)
        and isinstance(sizes, types.UniTuple)
        and isinstance(strides, types.UniTuple)
        and isinstance(scales, types.UniTuple)
        and isinstance(scales.dtype, types.Float)
        and isinstance(integer, types.Integer)
    ):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        def members(value: ir.Value, kind: types.UniTuple, to: types.Type) -> list[ir.Value]:
            return [
                context.cast(builder, builder.extract_value(value, i), kind.dtype, to)
                for i in range(kind.count)
            ]

        word, real = ir.IntType(32), context.get_value_type(scales.dtype)
        blas_int = context.get_value_type(integer)
        pointer = real.as_pointer()
        kinds = [word] * 3 + [blas_int] * 3 + [real, pointer, blas_int, pointer, blas_int]
        kinds += [real, pointer, blas_int]
        callee = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), kinds).as_pointer())
        code = members(args[1], codes, types.int32)
        size = members(args[2], sizes, integer)
        alpha, beta = members(args[3], scales, scales.dtype)
        lead = members(args[7], strides, integer)
        a_, b_, c_ = (builder.inttoptr(v, pointer) for v in args[4:7])
        builder.call(callee, [*code, *size, alpha, a_, lead[0], b_, lead[1], beta, c_, lead[2]])
        return context.get_dummy_value()

    return types.none(function, codes, sizes, scales, a, b, c, strides, integer), codegen


@intrinsic
def call_int_function(typingctx: Any, function: types.Type, count: types.Type) -> Any:
    """Call `int f(int count)` at address `function` and return its result (`sod2.backend.blas`
    calls openblas_set_num_threads_local so: OpenBLAS's thread count becomes `count`, and the
    one before comes back)."""
    if not isinstance(count, types.Integer):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        word = ir.IntType(32)
        callee = builder.inttoptr(args[0], ir.FunctionType(word, [word]).as_pointer())
        value = context.cast(builder, args[1], count, types.int32)
        return builder.call(callee, [value])

    return types.int32(function, count), codegen


def tile_product(rows: int, vectors: int, lanes: int, gather: str = "") -> Any:
    """The intrinsic `tile(a, lda, w, dst, ldd, count, depth, ahead, lines, resume)`, all
    integers (addresses, and counts in elements), for a tile of `rows` rows by
    `vectors * lanes` columns of a float32 product:

        dst[i, j] = (dst[i, j] if resume else 0) + sum_k a[i, k] * w[k, j]
        for i < count, j < vectors * lanes

    `a` is the address of the first row's first element, its rows `lda` floats apart (each
    row's elements adjacent); `w` a panel of `depth` rows of `vectors * lanes` adjacent floats,
    one after the other; `dst` the first row of the result, its rows `ldd` floats apart. Rows
    from `count` up (1 <= count <= rows) are computed from the last row, not stored. Each step
    of the depth loads the panel's row once as `vectors` vectors, broadcasts one element of
    each of `rows` rows of `a`, and adds the `rows * vectors` products with fused
    multiply-adds (`llvm.fma`) into sums that stay in registers: `rows * vectors` of them, plus
    the panel's row, must fit the machine's vector registers. Meanwhile it asks for the `lines`
    64-byte cache lines from address `ahead` (`llvm.prefetch`), the same number at each step
    (the last steps may ask for none): the memory the caller's next tiles read, so that it
    arrives while this one computes.

    With `gather`, the intrinsic is `tile(a, lda, w, dst, ldd, count, depth, ahead, lines,
    resume, taps)`, `taps` the address of a table of `depth` int64 offsets (in floats), one per
    step, and what it gathers is read at them; a convolution's patches need no copy so:

    - `gather="rows"`: `a`'s rows are gathered, not read along. `lda` is the address of a
      table of int64 offsets (in floats) of the tile's rows (entries from `count` up are not
      read), and the element of row i at step k is `a[rows[i] + taps[k]]`: a row is an output
      position (the offset of its window's first element in the padded image), a step a tap
      (its channel, kernel row and column).
    - `gather="panel"`: the panel's row at step k starts at `w + taps[k]` (floats), not
      `w + k * vectors * lanes`: its columns are output positions along a row of the image,
      each step a tap's input run under them, and `a`'s rows the filters."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> ir.Value:
        word = ir.IntType(64)
        a_, lda_, w_, dst_, ldd_, count_, depth_, ahead_, lines_, resume_, *taps_ = (
            context.cast(builder, value, kind, types.int64)
            for value, kind in zip(args, signature.args, strict=True)
        )
        real = ir.FloatType()
        vector = ir.VectorType(real, lanes)
        pointer, vector_pointer = real.as_pointer(), vector.as_pointer()

        def constant(value: int) -> ir.Constant:
            return ir.Constant(word, value)

        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.v{lanes}f32"
        )
        zero = ir.Constant(vector, [0.0] * lanes)
        sums = [
            [cgutils.alloca_once_value(builder, zero) for _ in range(vectors)] for _ in range(rows)
        ]
        last = builder.sub(count_, constant(1))
        row_bytes = builder.mul(lda_, constant(4))
        target = builder.inttoptr(dst_, pointer)
        a_rows, dst_rows = [], []
        offsets = builder.inttoptr(lda_, word.as_pointer())  # (gather="rows": the rows' table)
        for i in range(rows):  # rows past `count` read the last one
            index = builder.select(builder.icmp_signed("<", constant(i), count_), constant(i), last)
            if gather == "rows":
                offset = builder.mul(builder.load(builder.gep(offsets, [index])), constant(4))
            else:
                offset = builder.mul(index, row_bytes)
            a_rows.append(builder.inttoptr(builder.add(a_, offset), pointer))
            dst_rows.append(builder.gep(target, [builder.mul(index, ldd_)]))
        tap_table = builder.inttoptr(taps_[0], word.as_pointer()) if gather else None

        def vector_at(row: ir.Value, v: int) -> ir.Value:
            """The address of the `v`-th vector of a row, as a vector pointer."""
            return builder.bitcast(builder.gep(row, [constant(v * lanes)]), vector_pointer)

        with builder.if_then(builder.icmp_signed("!=", resume_, constant(0))):
            for i in range(rows):
                for v in range(vectors):
                    value = builder.load(vector_at(dst_rows[i], v), align=4)
                    builder.store(value, sums[i][v])
        panel = builder.inttoptr(w_, pointer)
        undefined = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        first = ir.Constant(ir.IntType(32), 0)
        # `per` lines at each step (lines [k * per, (k + 1) * per), those below `lines`)
        steps = builder.select(builder.icmp_signed(">", depth_, constant(0)), depth_, constant(1))
        per = builder.sdiv(builder.add(lines_, builder.sub(steps, constant(1))), steps)
        with cgutils.for_range(builder, depth_) as loop:
            k = loop.index
            with cgutils.for_range(builder, per) as fetched:
                line = builder.add(builder.mul(k, per), fetched.index)
                with builder.if_then(builder.icmp_signed("<", line, lines_)):
                    address = builder.add(ahead_, builder.mul(line, constant(64)))
                    _prefetch_line(builder, builder.inttoptr(address, pointer))
            tap = builder.load(builder.gep(tap_table, [k])) if gather else k
            row_start = tap if gather == "panel" else builder.mul(k, constant(vectors * lanes))
            start = builder.gep(panel, [row_start])
            loaded = [builder.load(vector_at(start, v), align=4) for v in range(vectors)]
            step = tap if gather == "rows" else k
            for i in range(rows):
                element = builder.load(builder.gep(a_rows[i], [step]))
                broadcast = builder.shuffle_vector(
                    builder.insert_element(undefined, element, first), undefined, splat
                )
                for v in range(vectors):
                    total = builder.load(sums[i][v])
                    builder.store(builder.call(fma, [broadcast, loaded[v], total]), sums[i][v])
        for i in range(rows):
            with builder.if_then(builder.icmp_signed("<", constant(i), count_)):
                for v in range(vectors):
                    builder.store(builder.load(sums[i][v]), vector_at(dst_rows[i], v), align=4)
        return context.get_dummy_value()

    def integers(*arguments: types.Type) -> Any:
        """The intrinsic's signature, where every argument is an integer."""
        if not all(isinstance(t, types.Integer) for t in arguments):
            return None
        return types.none(*arguments), codegen

    if gather:

        @intrinsic
        def gathered(
            typingctx: Any,
            a: types.Type,
            lda: types.Type,
            w: types.Type,
            dst: types.Type,
            ldd: types.Type,
            count: types.Type,
            depth: types.Type,
            ahead: types.Type,
            lines: types.Type,
            resume: types.Type,
            taps: types.Type,
        ) -> Any:
            return integers(a, lda, w, dst, ldd, count, depth, ahead, lines, resume, taps)

        return gathered

    @intrinsic
    def tile(
        typingctx: Any,
        a: types.Type,
        lda: types.Type,
        w: types.Type,
        dst: types.Type,
        ldd: types.Type,
        count: types.Type,
        depth: types.Type,
        ahead: types.Type,
        lines: types.Type,
        resume: types.Type,
    ) -> Any:
        return integers(a, lda, w, dst, ldd, count, depth, ahead, lines, resume)

    return tile
