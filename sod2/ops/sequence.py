"""Sequences and optionals: values that are lists of tensors, or maybe nothing.

A sequence is a Python list of numpy arrays; an optional is its element (a tensor or a sequence)
or None when empty. Kernels never mutate a list they were given: Insert and Erase build new ones,
since the same sequence value may feed several nodes.

Positions follow ONNX's rules, which are Python's for reading (negative counts from the end) but
stricter at the edges: SequenceAt and SequenceErase take a position in [-n, n-1], SequenceInsert
one in [-n, n] (n appends). Anything else is an error rather than numpy's silent clamp.
SequenceMap runs its body once per element (`ctx.run_graph`); its extra inputs are either
sequences, read element by element, or tensors, passed whole to every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import Element, facts_agree, value_dims
from sod2.analysis.rule_kit import optional as optional_fact
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import ceil_div, provably_equal
from sod2.ir.dims import Dim, as_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import OptionalType, SequenceType, Shape, TensorType, Type
from sod2.ops.registry import (
    GraphRunner,
    KernelContext,
    OpClass,
    Value,
    as_array,
    register,
    shape_rule,
)
from sod2.ops.shape import normalize_axis


def _input(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _sequence(ctx: KernelContext, value: Value, what: str) -> list[np.ndarray]:
    if not isinstance(value, list):
        kind = "nothing" if value is None else type(value).__name__
        raise ctx.fail(f"{what} must be a sequence, got {kind}")
    return value


def _position(ctx: KernelContext, value: Value, length: int, *, inserting: bool = False) -> int:
    """A position in [-n, n-1] ([-n, n] when inserting) as an index from the front."""
    array = as_array(value, ctx, "input position")
    if array.size != 1 or array.dtype.kind not in "iu":
        raise ctx.fail(f"position must be one integer, got {array.dtype}{list(array.shape)}")
    position = int(array.reshape(-1)[0])
    upper = length if inserting else length - 1
    if not -length <= position <= upper:
        raise ctx.fail(f"position {position} is out of range [{-length}, {upper}]")
    return position + length if position < 0 else position


@register("SequenceEmpty", since=11)
def sequence_empty(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceEmpty: the sequence of no tensors (its element type is the `dtype` attribute)."""
    return [[]]


@register("SequenceConstruct", since=11)
def sequence_construct(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceConstruct: [x_0, ..., x_(n-1)] from the n inputs, all of one element type."""
    tensors = [as_array(v, ctx, f"input {i}") for i, v in enumerate(inputs)]
    if len({t.dtype for t in tensors}) > 1:
        kinds = ", ".join(str(t.dtype) for t in tensors)
        raise ctx.fail(f"inputs must share one element type, got {kinds}")
    return [tensors]


@register("SequenceAt", since=11)
def sequence_at(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceAt: seq[position], position in [-n, n-1]."""
    sequence = _sequence(ctx, inputs[0], "input_sequence")
    return [sequence[_position(ctx, inputs[1], len(sequence))]]


@register("SequenceInsert", since=11)
def sequence_insert(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceInsert: seq[:p] + [tensor] + seq[p:], p in [-n, n] (default n: append)."""
    sequence = _sequence(ctx, inputs[0], "input_sequence")
    tensor = as_array(inputs[1], ctx, "input tensor")
    if sequence and sequence[0].dtype != tensor.dtype:
        raise ctx.fail(f"cannot insert a {tensor.dtype} tensor into a {sequence[0].dtype} sequence")
    given = _input(inputs, 2)
    position = (
        len(sequence) if given is None else _position(ctx, given, len(sequence), inserting=True)
    )
    return [[*sequence[:position], tensor, *sequence[position:]]]


@register("SequenceErase", since=11)
def sequence_erase(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceErase: seq without seq[p], p in [-n, n-1] (default -1: the last)."""
    sequence = _sequence(ctx, inputs[0], "input_sequence")
    if not sequence:
        raise ctx.fail("cannot erase from an empty sequence")
    given = _input(inputs, 1)
    position = len(sequence) - 1 if given is None else _position(ctx, given, len(sequence))
    return [sequence[:position] + sequence[position + 1 :]]


@register("SequenceLength", since=11)
def sequence_length(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceLength: n, as an int64 scalar."""
    return [np.array(len(_sequence(ctx, inputs[0], "input_sequence")), dtype=np.int64)]


@register("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """ConcatFromSequence: concatenate the elements along `axis`, or stack them along a new
    `axis` (in [-r-1, r]) when `new_axis` is 1."""
    sequence = _sequence(ctx, inputs[0], "input_sequence")
    if not sequence:
        raise ctx.fail("cannot concatenate an empty sequence")
    stacking = bool(ctx.attr("new_axis", 0))
    rank = sequence[0].ndim + (1 if stacking else 0)
    axis = normalize_axis(ctx, ctx.attr("axis"), rank)
    try:
        joined = np.stack(sequence, axis=axis) if stacking else np.concatenate(sequence, axis=axis)
    except ValueError:
        shapes = ", ".join(str(list(t.shape)) for t in sequence)
        raise ctx.fail(f"cannot join shapes {shapes} along axis {axis}") from None
    return [joined]


def _split_sizes(ctx: KernelContext, split: np.ndarray, extent: int) -> list[int]:
    """Chunk sizes: a scalar s gives ceil(extent / s) chunks of s (the last one smaller)."""
    if split.dtype.kind not in "iu":
        raise ctx.fail(f"split must hold integers, got {split.dtype}")
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise ctx.fail(f"split must be positive, got {size}")
        return [min(size, extent - start) for start in range(0, extent, size)]
    sizes = [int(s) for s in split.reshape(-1)]
    if any(s < 0 for s in sizes) or sum(sizes) != extent:
        raise ctx.fail(f"split sizes {sizes} must be non-negative and add up to dim {extent}")
    return sizes


@register("SplitToSequence", since=11)
def split_to_sequence(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SplitToSequence: cut along `axis` into the given sizes, or into chunks of a scalar size;
    without `split`, into slices of size 1, squeezed unless `keepdims`."""
    data = as_array(inputs[0], ctx, "input")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), data.ndim)
    split = _input(inputs, 1)
    extent = data.shape[axis]
    if split is None:
        parts = [np.take(data, [i], axis=axis) for i in range(extent)]
        if not ctx.attr("keepdims", 1):
            parts = [np.squeeze(part, axis=axis) for part in parts]
        return [parts]
    sizes = _split_sizes(ctx, as_array(split, ctx, "input split"), extent)
    bounds = np.cumsum(sizes)[:-1]
    return [list(np.split(data, bounds, axis=axis))]


def _runner(ctx: KernelContext) -> GraphRunner:
    if ctx.run_graph is None:
        raise ctx.unsupported("SequenceMap needs an interpreter to run its body")
    return ctx.run_graph


@register("SequenceMap", since=17)
def sequence_map(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """SequenceMap: out_j[i] = body(seq[i], extra_1[i] or extra_1, ...)_j for i < len(seq)."""
    run = _runner(ctx)
    body = ctx.attr("body")
    length = len(_sequence(ctx, inputs[0], "input_sequence"))
    for index, value in enumerate(inputs):
        if isinstance(value, list) and len(value) != length:
            raise ctx.fail(
                f"input {index} holds {len(value)} elements; the first sequence holds {length}"
            )
    outputs: list[list[Value]] = [[] for _ in body.outputs]
    for position in range(length):
        arguments = [v[position] if isinstance(v, list) else v for v in inputs]
        for collected, result in zip(outputs, run(body, arguments), strict=True):
            collected.append(result)
    return outputs


@register("Optional", since=15)
def optional(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Optional: the input as a non-empty optional, or the empty optional (None) without one."""
    return [_input(inputs, 0)]


@register("OptionalGetElement", since=15)
def optional_get_element(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """OptionalGetElement: the optional's element (a tensor or sequence passes through)."""
    value = _input(inputs, 0)
    if value is None:
        raise ctx.fail("the optional input is empty")
    return [value]


@register("OptionalHasElement", since=15)
def optional_has_element(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """OptionalHasElement: true unless the input is missing or an empty optional."""
    return [np.array(_input(inputs, 0) is not None)]


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# A sequence is not a tensor; RDP describes a sequence-typed value by the fact of its ELEMENTS:
# their element type, and their shape when every element provably has that shape (else a shape
# of unknown rank; a fresh symbol would wrongly claim that the elements agree on it). The one
# thing that is the sequence's own, its length, rides in `value` as `(length,)` when RDP knows it
# (an int or an expression over input dims); element values are not tracked. Only the rules
# below read a sequence's value. An optional is described by the fact of the value it holds.
#
# Control flow treats the length like any value: Loop drops a length that changes per iteration
# (the value does not settle), and `join` keeps only a length both branches of an If agree on.


def _sequence_fact(dtype: DType | None, shape: Shape, length: Element) -> TensorFact:
    """The fact of a sequence of `length` elements (None: unknown), each of `shape`."""
    return TensorFact(dtype, shape, None if length is None else (as_dim(length),))


def _length(sequence: TensorFact) -> Element:
    """The number of elements of a sequence fact, or None."""
    return sequence.value[0] if sequence.value is not None and len(sequence.value) == 1 else None


def _element(fact: TensorFact) -> TensorFact:
    """What every element of a sequence (or a plain tensor) is known to be: type and shape."""
    return TensorFact(fact.dtype, fact.shape)


def _common_shape(shapes: list[Shape]) -> Shape:
    """The shape all of `shapes` provably have, else a shape of unknown rank."""
    first = TensorFact(None, shapes[0])
    if all(facts_agree(first, TensorFact(None, shape)) for shape in shapes[1:]):
        return shapes[0]
    return Shape.unknown()


def _described(ctx: ShapeContext, inputs: Facts, index: int) -> TensorFact:
    """Input `index`'s fact or, where RDP has none (a sequence or optional graph input), what
    its declared type says: the innermost element type, and a static shape."""
    fact = inputs[index]
    if fact is None:
        return TensorFact(None)
    if fact.dtype is not None or fact.shape.dims is not None or fact.value is not None:
        return fact
    return _fact_of_type(ctx.node.inputs[index].type)  # type: ignore[union-attr]


def _fact_of_type(declared: Type | None) -> TensorFact:
    while isinstance(declared, (SequenceType, OptionalType)):
        declared = declared.element
    if not isinstance(declared, TensorType):
        return TensorFact(None)
    return TensorFact(
        declared.dtype, declared.shape if declared.shape.is_static else Shape.unknown()
    )


@shape_rule("SequenceEmpty", since=11, op_class=OpClass.ISDOS)
def sequence_empty_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceEmpty: no elements, of element type `dtype` (float32 by default)."""
    code = ctx.attr("dtype", None)
    dtype = DType.FLOAT32 if code is None else DType.from_onnx(int(code))
    return [_sequence_fact(dtype, Shape.unknown(), 0)]


@shape_rule("SequenceConstruct", since=11, op_class=OpClass.ISDOS)
def sequence_construct_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceConstruct: n elements, the inputs; their common shape when they share one."""
    facts = [f for f in inputs if f is not None]
    if not facts:
        raise ctx.fail("SequenceConstruct needs at least one tensor")
    return [_sequence_fact(facts[0].dtype, _common_shape([f.shape for f in facts]), len(facts))]


@shape_rule("SequenceInsert", since=11, op_class=OpClass.ISDOS)
def sequence_insert_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceInsert: n + 1 elements, the tensor's shape shared when all the others have it."""
    sequence, tensor = _described(ctx, inputs, 0), inputs[1]
    length = _length(sequence)
    shapes = [tensor.shape] if length == 0 else [sequence.shape, tensor.shape]
    grown = None if length is None else length + 1
    return [_sequence_fact(sequence.dtype or tensor.dtype, _common_shape(shapes), grown)]


@shape_rule("SequenceErase", since=11, op_class=OpClass.ISDOS)
def sequence_erase_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceErase: n - 1 elements (n >= 1), each as before."""
    sequence = _described(ctx, inputs, 0)
    length = _length(sequence)
    if length == 0:
        raise ctx.fail("cannot erase from an empty sequence")
    return [_sequence_fact(sequence.dtype, sequence.shape, None if length is None else length - 1)]


@shape_rule("SequenceAt", since=11, op_class=OpClass.ISVDOS)
def sequence_at_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceAt: an element, so the type and shape every element has."""
    return [_element(_described(ctx, inputs, 0))]


@shape_rule("SequenceLength", since=11, op_class=OpClass.ISDO)
def sequence_length_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceLength: an int64 scalar whose value is n when RDP knows it."""
    length = _length(_described(ctx, inputs, 0))
    return [TensorFact(DType.INT64, Shape([]), None if length is None else (length,))]


@shape_rule("ConcatFromSequence", since=11, op_class=OpClass.ISDOS)
def concat_from_sequence_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """ConcatFromSequence of n elements of shape s: s with s[axis] * n, or with n inserted at
    `axis` (in [-r-1, r]) when `new_axis` is 1."""
    sequence = _described(ctx, inputs, 0)
    dims = sequence.shape.dims
    if dims is None:
        return [TensorFact(sequence.dtype, Shape.unknown())]
    stacking = bool(ctx.attr("new_axis", 0))
    axis = normalize_axis(ctx, ctx.attr("axis"), len(dims) + int(stacking))
    length = _length(sequence)
    if length == 0:
        raise ctx.fail("cannot concatenate an empty sequence")
    count = ctx.fresh(note="sequence length") if length is None else length
    result = list(dims)
    if stacking:
        result.insert(axis, count)
    else:
        result[axis] = as_dim(dims[axis] * count)
    return [TensorFact(sequence.dtype, Shape(result))]


@shape_rule("SplitToSequence", since=11, op_class=OpClass.ISVDOS)
def split_to_sequence_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SplitToSequence along `axis` (extent d): d pieces of 1 (squeezed unless keepdims)
    without `split`; ceil(d / s) pieces of s (the last one smaller) for a scalar s; else one
    piece per listed size, which add up to d."""
    data, split = inputs[0], optional_fact(inputs, 1)
    dims = data.shape.dims
    if dims is None:
        return [_sequence_fact(data.dtype, Shape.unknown(), None)]
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(dims))
    extent = dims[axis]
    if split is None:
        piece = list(dims)
        piece[axis : axis + 1] = [1] if ctx.attr("keepdims", 1) else []
        return [_sequence_fact(data.dtype, Shape(piece), extent)]
    length, size = _pieces(ctx, split, extent)
    piece = list(dims)
    piece[axis] = size
    shape = Shape.unknown() if size is None else Shape(piece)
    return [_sequence_fact(data.dtype, shape, length)]


def _pieces(ctx: ShapeContext, split: TensorFact, extent: Dim) -> tuple[Element, Element]:
    """(how many pieces, the size every piece provably has) for a `split` input."""
    sizes = value_dims(split)
    if split.shape.rank == 0:
        size = None if sizes is None else sizes[0]
        if not isinstance(size, int) or size <= 0:
            return None, None
        count = ceil_div(extent, size)
        uniform = size == 1 or (isinstance(extent, int) and extent % size == 0)
        return count, size if uniform else None
    if sizes is None:
        dims = split.shape.dims
        return (dims[0] if dims is not None and len(dims) == 1 else None), None
    if None not in sizes:
        ctx.same(extent, as_dim(sum(sizes)), "split sizes add up to the dim")  # type: ignore[arg-type]
    same_size = sizes[0] is not None and all(
        s is not None and provably_equal(s, sizes[0]) for s in sizes
    )
    return len(sizes), sizes[0] if same_size else None


@shape_rule("SequenceMap", since=17, op_class=OpClass.ISDOS)
def sequence_map_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """SequenceMap: out_j = [body(...)_j per element], as long as the input sequence; its
    elements' facts are the body's outputs when a second analysis of the body gives the same
    (extents the body computes afresh, such as a NonZero count, differ per element)."""
    body = ctx.attr("body")
    arguments = [_element(_described(ctx, inputs, i)) for i in range(len(inputs))]
    first = ctx.run_subgraph(body, arguments)
    second = ctx.run_subgraph(body, arguments)
    length = _length(_described(ctx, inputs, 0))
    return [
        _sequence_fact(a.dtype, a.shape if facts_agree(a, b) else Shape.unknown(), length)
        for a, b in zip(first, second, strict=True)
    ]


@shape_rule("Optional", since=15, op_class=OpClass.ISDOS)
def optional_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Optional: the fact of the value held, or of the `type` attribute when empty."""
    if optional_fact(inputs, 0) is not None:
        return [_described(ctx, inputs, 0)]
    return [_fact_of_type(ctx.attr("type", None))]


@shape_rule("OptionalGetElement", since=15, op_class=OpClass.ISDOS)
def optional_get_element_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """OptionalGetElement: the value held."""
    return [_described(ctx, inputs, 0)]


@shape_rule("OptionalHasElement", since=15, op_class=OpClass.ISDOS)
def optional_has_element_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """OptionalHasElement: a bool scalar, known when the input is omitted, a plain tensor or
    sequence, or made by an Optional node."""
    given = ctx.node.inputs[0] if ctx.node.inputs else None
    known: int | None = None
    if given is None:
        known = 0
    elif isinstance(given.type, (TensorType, SequenceType)):
        known = 1
    elif given.producer is not None and given.producer.op_type == "Optional":
        known = int(bool(given.producer.inputs) and given.producer.inputs[0] is not None)
    return [TensorFact(DType.BOOL, Shape([]), None if known is None else (known,))]
