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

from sod2.ops.registry import GraphRunner, KernelContext, Value, as_array, register
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
