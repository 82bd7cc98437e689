"""A model at a glance: interface, symbols, size and operator mix, as text.

This is what `sod2 inspect` prints first: the inputs with their symbolic dims, the outputs, the
symbols the model's shapes depend on, how many nodes sit at top level and in subgraphs, the
control-flow nodes, and the operator histogram.
"""

from __future__ import annotations

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
