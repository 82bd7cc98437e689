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
import sympy

from sod2.analysis.facts import Facts, SymbolOrigin, TensorFact
from sod2.analysis.rule_kit import facts_agree, int_values, join, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import provably_equal
from sod2.ir.dims import Dim, as_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape, TensorType
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


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# If: a condition RDP knows picks its branch; otherwise both branches are analysed and joined,
# and the node is EDO unless the branches provably agree. Loop: the body is analysed with the
# carried facts; a carried dim that changes by a constant k per iteration ends as d0 + k*T, where
# T is the trip count (M itself when no condition can stop the loop early). Scan: the trip count
# is the scan axis's length.


@shape_rule("If", op_class=OpClass.EDO)
def if_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """If: the taken branch's outputs, or the join of both branches' outputs."""
    condition = int_values(inputs[0])
    if condition is not None and len(condition) == 1:
        branch = "then_branch" if condition[0] else "else_branch"
        ctx.classify(OpClass.ISDOS)
        return ctx.run_subgraph(ctx.attr(branch), [])
    then_facts = ctx.run_subgraph(ctx.attr("then_branch"), [])
    else_facts = ctx.run_subgraph(ctx.attr("else_branch"), [])
    if all(facts_agree(a, b) for a, b in zip(then_facts, else_facts, strict=True)):
        ctx.classify(OpClass.ISDOS)  # the shapes agree; values may still differ by branch
    return [join(ctx, a, b) for a, b in zip(then_facts, else_facts, strict=True)]


@shape_rule("Loop", op_class=OpClass.EDO)
def loop_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Loop: final carried facts (growth expressed in the trip count T) and [T, ...] scans.

    The body runs once on the initial facts. A carried value whose fact changes is generalized: a
    dim that grows by a loop-invariant step s ends as d0 + s*T, and the body runs again with that
    dim as a fresh symbol v, which must then come back as v + s; anything else becomes unknown.
    """
    body = ctx.attr("body")
    carried = [f if f is not None else TensorFact(None) for f in inputs[2:]]
    trips = _trip_count(ctx, inputs)
    iteration = TensorFact(DType.INT64, Shape([]))
    condition = TensorFact(DType.BOOL, Shape([]))
    outputs = ctx.run_subgraph(body, [iteration, condition, *carried])
    after = outputs[1 : 1 + len(carried)]
    if all(_settled(c, a) for c, a in zip(carried, after, strict=True)):
        finals = carried
    else:
        growths = [_growth(c, a) for c, a in zip(carried, after, strict=True)]
        states = [_generalized(ctx, c, g) for c, g in zip(carried, growths, strict=True)]
        outputs = ctx.run_subgraph(body, [iteration, condition, *states])
        again = outputs[1 : 1 + len(carried)]
        finals = [
            _final(ctx, c, s, a, g, trips)
            for c, s, a, g in zip(carried, states, again, growths, strict=True)
        ]
    scans = [
        TensorFact(
            f.dtype, Shape([trips, *f.shape.dims]) if f.shape.dims is not None else Shape.unknown()
        )
        for f in outputs[1 + len(carried) :]
    ]
    if all(facts_agree(c, f) for c, f in zip(carried, finals, strict=True)) and not scans:
        ctx.classify(OpClass.ISDOS)
    return [
        TensorFact(f.dtype, f.shape, f.value if f is c else None)
        for f, c in zip(finals, carried, strict=True)
    ] + scans


def _settled(before: TensorFact, after: TensorFact) -> bool:
    """One more iteration changes neither the shape nor (when known) the value."""
    if not facts_agree(before, after):
        return False
    if before.value is None:
        return True
    return (
        after.value is not None
        and len(before.value) == len(after.value)
        and all(
            x is not None and y is not None and provably_equal(x, y)
            for x, y in zip(before.value, after.value, strict=True)
        )
    )


def _growth(before: TensorFact, after: TensorFact) -> list[Dim | None] | None:
    """Per dim, how much one iteration adds (0, an invariant step, or None: not a step)."""
    a, b = before.shape.dims, after.shape.dims
    if a is None or b is None or len(a) != len(b):
        return None
    steps: list[Dim | None] = []
    for x, y in zip(a, b, strict=True):
        step = sympy.expand(sympy.sympify(y) - x)
        steps.append(
            int(step) if step.is_Integer and step >= 0 else step if step.is_positive else None
        )
    return steps


def _generalized(
    ctx: ShapeContext, initial: TensorFact, growth: list[Dim | None] | None
) -> TensorFact:
    if growth is None or initial.shape.dims is None:
        return TensorFact(initial.dtype, Shape.unknown())
    dims = [
        d if step == 0 else ctx.fresh(note="loop-carried extent at some iteration")
        for d, step in zip(initial.shape.dims, growth, strict=True)
    ]
    return TensorFact(initial.dtype, Shape(dims))


def _final(
    ctx: ShapeContext,
    initial: TensorFact,
    state: TensorFact,
    after: TensorFact,
    growth: list[Dim | None] | None,
    trips: Dim,
) -> TensorFact:
    if growth is None or initial.shape.dims is None:
        return TensorFact(after.dtype, Shape.unknown())
    if state.shape.dims is None or after.shape.dims is None or len(after.shape.dims) != len(growth):
        return TensorFact(after.dtype, ctx.unknown_shape(len(growth), "loop state"))
    dims = []
    for d0, v, y, step in zip(
        initial.shape.dims, state.shape.dims, after.shape.dims, growth, strict=True
    ):
        consistent = step is not None and provably_equal(y, v + step)
        if step == 0 and consistent:
            dims.append(d0)
        elif consistent:
            dims.append(as_dim(d0 + step * trips))
        else:
            dims.append(ctx.fresh(note="loop-carried extent"))
    return TensorFact(after.dtype, Shape(dims))


def _trip_count(ctx: ShapeContext, inputs: Facts) -> Dim:
    limit = int_values(inputs[0]) if inputs and inputs[0] is not None else None
    bound = limit[0] if limit else None
    condition = optional(inputs, 1)
    stops_early = condition is not None and int_values(condition) != [1]
    body = ctx.attr("body")
    produced = body.outputs[0]
    constant_true = produced.is_constant and bool(np.all(produced.const_value))
    body_condition_constant = constant_true or (
        produced.producer is not None
        and produced.producer.op_type == "Identity"
        and produced.producer.inputs[0] is body.inputs[1]
    )
    if bound is not None and not stops_early and body_condition_constant:
        return bound
    return ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=bound, note="loop trip count")


@shape_rule("Scan", since=9, op_class=OpClass.ISDOS)
def scan_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Scan: final states, and per-step outputs stacked along their axes (length L)."""
    body = ctx.attr("body")
    scan_count = int(ctx.attr("num_scan_inputs"))
    states = list(inputs[: len(inputs) - scan_count])
    sequences = list(inputs[len(inputs) - scan_count :])
    in_axes = list(ctx.attr("scan_input_axes", [0] * scan_count))
    length: Dim | None = None
    slices = []
    for fact, axis in zip(sequences, in_axes, strict=True):
        dims = fact.shape.dims
        if dims is None:
            slices.append(TensorFact(fact.dtype, Shape.unknown()))
            continue
        axis = normalize_axis(ctx, axis, len(dims))
        length = dims[axis] if length is None else ctx.same(length, dims[axis], "scan lengths")
        slices.append(TensorFact(fact.dtype, Shape(dims[:axis] + dims[axis + 1 :])))
    if length is None:
        length = ctx.fresh(note="scan length")
    outputs = ctx.run_subgraph(body, [*states, *slices])
    finals = outputs[: len(states)]
    if not all(facts_agree(s, f) for s, f in zip(states, finals, strict=True)):
        finals = [
            TensorFact(f.dtype, ctx.unknown_shape(f.shape.rank, "scan state")) for f in finals
        ]
    out_axes = list(ctx.attr("scan_output_axes", [0] * (len(outputs) - len(states))))
    stacked = []
    for fact, axis in zip(outputs[len(states) :], out_axes, strict=True):
        dims = fact.shape.dims
        if dims is None:
            stacked.append(TensorFact(fact.dtype, Shape.unknown()))
            continue
        axis = normalize_axis(ctx, axis, len(dims) + 1)
        stacked.append(TensorFact(fact.dtype, Shape([*dims[:axis], length, *dims[axis:]])))
    return finals + stacked
