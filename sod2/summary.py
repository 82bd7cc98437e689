"""A model at a glance: interface, symbols, size and operator mix, as text.

This is what `sod2 inspect` prints first: the inputs with their symbolic dims, the outputs, the
symbols the model's shapes depend on, how many nodes sit at top level and in subgraphs, the
control-flow nodes, and the operator histogram.
"""

from __future__ import annotations

from sod2.analysis.rdp import RDPResult
from sod2.analysis.reachability import OpHistogram
from sod2.ir.graph import Tensor
from sod2.ir.model import Model
from sod2.ir.types import TensorType
from sod2.passes.analysis import AnalysisManager

CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")


def model_summary(model: Model, label: str = "model", *, top_ops: int = 0) -> str:
    """A few lines describing `model`; `top_ops` limits the histogram (0: every op)."""
    graph = model.graph
    histogram = AnalysisManager().get(OpHistogram, graph)
    total = sum(histogram.values())
    nested = total - len(graph)
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(model.opset_imports.items()))
    lines = [
        f"{label}: {model.producer_name or 'unknown producer'} {model.producer_version}".rstrip()
        + f"; IR version {model.ir_version}; opsets {opsets}"
    ]
    lines.append("inputs:")
    lines += [f"  {_signature(t)}" for t in graph.inputs if t.const_value is None]
    overridable = [t for t in graph.inputs if t.const_value is not None]
    if overridable:
        lines.append(f"  (+{len(overridable)} inputs with default values)")
    lines.append("outputs:")
    lines += [f"  {_signature(t)}" for t in graph.outputs]
    symbols = sorted({s.name for t in graph.inputs for s in _symbols(t)})
    lines.append(
        f"symbols: {', '.join(symbols) if symbols else 'none (all input shapes are static)'}"
    )
    lines.append(
        f"nodes: {total} ({len(graph)} top level, {nested} in subgraphs); "
        f"constants: {sum(len(g.constants) for g in [graph, *graph.subgraphs()])}"
    )
    control = {op: histogram[op] for op in CONTROL_FLOW if histogram.get(op)}
    lines.append(
        "control flow: " + (", ".join(f"{op} x{n}" for op, n in control.items()) or "none")
    )
    lines.append("ops:")
    shown = histogram.most_common(top_ops or None)
    width = max((len(op) for op, _ in shown), default=0)
    lines += [f"  {op:<{width}}  {count}" for op, count in shown]
    if top_ops and len(histogram) > top_ops:
        lines.append(f"  ... {len(histogram) - top_ops} more")
    return "\n".join(lines)


def _signature(tensor: Tensor) -> str:
    return f"{tensor.name}: {tensor.type if tensor.type is not None else '?'}"


def _symbols(tensor: Tensor) -> frozenset:
    return tensor.type.shape.symbols if isinstance(tensor.type, TensorType) else frozenset()


def shapes_report(model: Model, result: RDPResult) -> str:
    """Every node with its SoD2 class and its outputs' inferred types, then the symbols RDP
    introduced, what it learned about the inputs, and the assumptions the runtime must check."""
    lines = []
    for graph in [model.graph, *model.graph.subgraphs()]:
        if graph is not model.graph:
            lines.append(f"-- subgraph {graph.name} (of node {graph.parent.name!r})")  # type: ignore[union-attr]
        for node in graph.topological_order():
            op_class = result.classes.get(node)
            outputs = ", ".join(
                f"{t.name}: {result.facts[t]}"
                for t in node.outputs
                if t is not None and t in result.facts
            )
            lines.append(
                f"{node.qualified_op:<16} {op_class.name if op_class else '?':<6} {outputs}"
            )
    introduced = [i for i in result.symbols.values() if not i.origin.from_inputs]
    if introduced:
        lines.append("symbols:")
        lines += [f"  {info.describe()}" for info in introduced]
    if result.learned:
        lines.append("learned about the inputs:")
        lines += [f"  {symbol} = {value}" for symbol, value in result.learned.items()]
    if result.assumptions:
        lines.append("assumptions (checked at run time):")
        lines += [f"  {a.describe()}" for a in result.assumptions]
    if result.unsupported:
        lines.append("ops without a shape rule:")
        lines += [f"  {text}" for text in result.unsupported]
    return "\n".join(lines)


def resolution_summary(model: Model, result: RDPResult) -> str:
    """One line: how many dims of the model's tensors RDP resolved from the inputs."""
    dims = [d for fact in result.facts.values() if fact.shape.dims for d in fact.shape.dims]
    resolved = sum(result.is_resolved(d) for d in dims)
    unknown_rank = sum(1 for fact in result.facts.values() if fact.shape.dims is None)
    share = 100 * resolved / len(dims) if dims else 100.0
    return (
        f"{resolved} of {len(dims)} dims resolved from the input shapes ({share:.1f}%); "
        f"{unknown_rank} tensors of unknown rank; {len(result.assumptions)} assumptions; "
        f"{len(result.unsupported)} ops without a shape rule"
    )
