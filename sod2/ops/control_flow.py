"""Control flow: If, Loop, Scan. Their bodies are subgraphs that the caller's interpreter runs
(`KernelContext.run_graph`), with the enclosing values in scope.

- If: runs `then_branch` or `else_branch` by a one-element boolean condition.
- Loop: runs `body(i, cond, carried...)` while `i < M` (when M is given) and `cond` (when given);
  the body returns `(cond, carried..., scan outputs...)`; scan outputs are stacked on a new axis 0.
- Scan: runs `body(states..., slices...)` once per position along each scan input's axis (forward
  or backward), returning the final states and the per-step outputs stacked along their axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.ir.types import TensorType
from sod2.ops.registry import GraphRunner, KernelContext, Value, as_array, register
from sod2.ops.shape import normalize_axis


def _flag(ctx: KernelContext, value: Value, what: str) -> bool:
    array = as_array(value, ctx, what)
    if array.size != 1:
        raise ctx.fail(f"{what} must hold one value, got shape {list(array.shape)}")
    return bool(array.reshape(-1)[0])


def _runner(ctx: KernelContext) -> GraphRunner:
    if ctx.run_graph is None:
        raise ctx.unsupported("control flow needs an interpreter to run its subgraphs")
    return ctx.run_graph


@register("If")
def if_(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """If: the outputs of `then_branch` when the condition holds, else of `else_branch`."""
    branch = "then_branch" if _flag(ctx, inputs[0], "condition") else "else_branch"
    return _runner(ctx)(ctx.attr(branch), [])


@register("Loop")
def loop(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Loop: iterate the body while the trip count and the condition allow."""
    run = _runner(ctx)
    body = ctx.attr("body")
    trip_limit = None if inputs[0] is None else int(as_array(inputs[0], ctx, "M").reshape(-1)[0])
    keep_going = True if len(inputs) < 2 or inputs[1] is None else _flag(ctx, inputs[1], "cond")
    carried = list(inputs[2:])
    scan_count = len(body.outputs) - 1 - len(carried)
    if scan_count < 0:
        raise ctx.fail(f"body returns {len(body.outputs)} values for {len(carried)} carried ones")
    scans: list[list[Value]] = [[] for _ in range(scan_count)]
    iteration = 0
    while keep_going and (trip_limit is None or iteration < trip_limit):
        results = run(body, [np.array(iteration, dtype=np.int64), np.array(keep_going), *carried])
        keep_going = _flag(ctx, results[0], "body condition")
        carried = list(results[1 : 1 + len(carried)])
        for collected, value in zip(scans, results[1 + len(carried) :], strict=True):
            collected.append(value)
        iteration += 1
    first_scan = len(ctx.node.outputs) - scan_count
    stacked = [_stack(ctx, collected, first_scan + index) for index, collected in enumerate(scans)]
    return carried + stacked


def _stack(ctx: KernelContext, values: list[Value], output_index: int, axis: int = 0) -> Value:
    if values:
        return np.stack([as_array(v, ctx, "scan output") for v in values], axis=axis)
    tensor = ctx.node.outputs[output_index]
    declared = tensor.type if tensor is not None else None
    dtype = declared.dtype if isinstance(declared, TensorType) and declared.dtype else None
    rank = declared.shape.rank if isinstance(declared, TensorType) else None
    if dtype is None or not rank:
        raise ctx.fail("a loop that runs zero times needs typed scan outputs")
    return np.zeros((0,) + (0,) * (rank - 1), dtype=dtype.numpy)


@register("Scan", since=9)
def scan(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Scan: run the body once per step along the scan inputs' axes."""
    run = _runner(ctx)
    body = ctx.attr("body")
    scan_count = int(ctx.attr("num_scan_inputs"))
    states = list(inputs[: len(inputs) - scan_count])
    sequences = [as_array(v, ctx, "scan input") for v in inputs[len(inputs) - scan_count :]]
    in_axes = list(ctx.attr("scan_input_axes", [0] * scan_count))
    in_reverse = list(ctx.attr("scan_input_directions", [0] * scan_count))
    in_axes = [normalize_axis(ctx, a, s.ndim) for a, s in zip(in_axes, sequences, strict=True)]
    lengths = {s.shape[a] for s, a in zip(sequences, in_axes, strict=True)}
    if len(lengths) > 1:
        raise ctx.fail(f"scan inputs have different lengths {sorted(lengths)}")
    length = lengths.pop() if lengths else 0
    output_count = len(body.outputs) - len(states)
    collected: list[list[Value]] = [[] for _ in range(output_count)]
    for step in range(length):
        slices = [
            np.take(s, length - 1 - step if reverse else step, axis=a)
            for s, a, reverse in zip(sequences, in_axes, in_reverse, strict=True)
        ]
        results = run(body, [*states, *slices])
        states = list(results[: len(states)])
        for values, value in zip(collected, results[len(states) :], strict=True):
            values.append(value)
    out_axes = list(ctx.attr("scan_output_axes", [0] * output_count))
    out_reverse = list(ctx.attr("scan_output_directions", [0] * output_count))
    outputs = []
    for index, values in enumerate(collected):
        ordered = values[::-1] if out_reverse[index] else values
        stacked = _stack(ctx, ordered, len(states) + index)
        axis = normalize_axis(ctx, out_axes[index], stacked.ndim)
        outputs.append(np.moveaxis(stacked, 0, axis))
    return states + outputs
