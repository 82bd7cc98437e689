"""Facts about an exported ONNX graph that the zoo reports and tests: node and `If` counts, op
types, the symbolic interface, and a structural signature.

Everything here walks subgraphs too (the branches of `If`), so a node inside a branch counts once
like any other. The signature ignores weight values and node names: two exports of the same
architecture have the same signature even if their random weights or naming differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx


def walk_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of its subgraphs, depth first, in file order."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from walk_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from walk_nodes(subgraph)


def value_dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    """The dims of a graph input or output: ints for `dim_value`, names for `dim_param`."""
    dims = value.type.tensor_type.shape.dim
    return tuple(dim.dim_param if dim.HasField("dim_param") else dim.dim_value for dim in dims)


@dataclass(frozen=True, slots=True)
class GraphFacts:
    """Counts that summarize one model file."""

    nodes: int
    if_count: int
    op_counts: tuple[tuple[str, int], ...]
    file_bytes: int

    @property
    def op_types(self) -> tuple[str, ...]:
        """The distinct op types, sorted."""
        return tuple(op for op, _ in self.op_counts)


def graph_facts(path: str | Path) -> GraphFacts:
    """Node count, `If` count, op histogram and size of the ONNX file at `path`."""
    model = onnx.load(str(path), load_external_data=False)
    counts = Counter(node.op_type for node in walk_nodes(model.graph))
    return GraphFacts(
        nodes=sum(counts.values()),
        if_count=counts.get("If", 0),
        op_counts=tuple(sorted(counts.items())),
        file_bytes=Path(path).stat().st_size,
    )


def structure_signature(model: onnx.ModelProto) -> dict[str, object]:
    """What must not change when a zoo model is rebuilt: op types in order (subgraphs included),
    node count, `If` count, the interface (names, dtypes, dims) and the initializers' shapes."""
    ops = [node.op_type for node in walk_nodes(model.graph)]
    return {
        "ops": ops,
        "nodes": len(ops),
        "if_count": ops.count("If"),
        "inputs": [_interface(value) for value in model.graph.input],
        "outputs": [_interface(value) for value in model.graph.output],
        "initializers": sorted((t.name, tuple(t.dims)) for t in model.graph.initializer),
        "opsets": sorted((opset.domain, opset.version) for opset in model.opset_import),
    }


def _interface(value: onnx.ValueInfoProto) -> tuple[str, int, tuple[int | str, ...]]:
    return (value.name, value.type.tensor_type.elem_type, value_dims(value))
