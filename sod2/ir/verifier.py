"""`verify()`: check the IR's invariants and report every violation at once.

The editing API keeps these invariants; `verify` is the independent check that tests and debug
pipelines run between passes. It walks the graph and its subgraphs once (linear in their size) and
rebuilds from the nodes' inputs what the bookkeeping should say, then compares:

1. definitions: every tensor is defined once (graph input, constant, or output of one node), its
   `graph` and `producer` fields agree, and its name is the model's only tensor of that name;
2. uses: every input slot and graph output slot that reads a tensor appears in its `uses`, and
   every recorded use is such a slot (no dangling references either way);
3. scoping: a node or graph output reads only tensors of its own or an enclosing graph; a subgraph's
   `parent` is the node holding it;
4. dependencies: each graph's DiGraph holds exactly the edges the uses imply, and is acyclic;
5. types: top-level inputs have tensor (or sequence/optional) types; constants carry values whose
   dtype and shape match their type;
6. (with a model) every node's domain is imported by the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import networkx as nx
import numpy as np

from sod2.errors import VerificationError
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node, Tensor, Use, anchor_node
from sod2.ir.model import STANDARD_DOMAINS, Model
from sod2.ir.types import TensorType


def verify(target: Graph | Model) -> None:
    """Raise `VerificationError` listing every broken invariant of a graph or a model."""
    problems = list(find_problems(target))
    if problems:
        raise VerificationError(problems)


def find_problems(target: Graph | Model) -> Iterator[str]:
    """Yield one message per broken invariant (empty when the IR is sound)."""
    graph = target.graph if isinstance(target, Model) else target
    graphs = [graph, *graph.subgraphs()]
    defined: dict[Tensor, Graph] = {}
    for current in graphs:
        yield from _check_definitions(current, defined)
    yield from _check_names(graph, defined, graphs)
    for current in graphs:
        yield from _check_reads(current)
        yield from _check_dependencies(current)
    yield from _check_recorded_uses(defined, set(graphs))
    yield from _check_top_level_types(graph)
    if isinstance(target, Model):
        yield from _check_domains(graph, graphs, target)


def _check_definitions(graph: Graph, defined: dict[Tensor, Graph]) -> Iterator[str]:
    def define(tensor: Tensor, what: str) -> Iterator[str]:
        if tensor in defined:
            yield f"tensor {tensor.name!r} is defined twice (again as {what} of graph {graph.name!r})"
        defined[tensor] = graph
        if tensor.graph is not graph:
            yield f"tensor {tensor.name!r} ({what} of graph {graph.name!r}) claims another graph"

    for tensor in graph.inputs:
        yield from define(tensor, "an input")
        if tensor.producer is not None:
            yield f"graph input {tensor.name!r} has a producer {tensor.producer.name!r}"
    for tensor in graph.constants:
        yield from define(tensor, "a constant")
        yield from _check_constant(tensor)
    for node in graph.nodes:
        if node.graph is not graph:
            yield f"node {node.name!r} ({node.op_type}) claims another graph than {graph.name!r}"
        if not node.op_type:
            yield f"node {node.name!r} in graph {graph.name!r} has an empty op type"
        for tensor in node.outputs:
            if tensor is None:
                continue
            yield from define(tensor, f"output of node {node.name!r}")
            if tensor.const_value is not None:
                yield f"tensor {tensor.name!r} is computed by node {node.name!r} but also holds a constant value"
            if tensor.producer is not node:
                yield f"tensor {tensor.name!r} is an output of node {node.name!r} but its producer is {tensor.producer!r}"
        for key, subgraph in node.subgraphs:
            if subgraph.parent is not node:
                yield f"subgraph {subgraph.name!r} (attribute {key!r} of node {node.name!r}) does not name that node as its parent"


def _check_constant(tensor: Tensor) -> Iterator[str]:
    value = tensor.const_value
    if value is None:
        yield f"constant {tensor.name!r} has no value"
        return
    if not isinstance(value, np.ndarray):
        yield f"constant {tensor.name!r} holds a {type(value).__name__}, not a numpy array"
        return
    tensor_type = tensor.type
    if not isinstance(tensor_type, TensorType):
        yield f"constant {tensor.name!r} has no tensor type"
        return
    if tensor_type.shape.dims != tuple(value.shape):
        yield f"constant {tensor.name!r}: type shape {tensor_type.shape} but value shape {list(value.shape)}"
    dtype = tensor_type.dtype
    if dtype is not None and dtype is not DType.STRING and dtype.numpy != value.dtype:
        yield f"constant {tensor.name!r}: type {tensor_type.dtype} but value dtype {value.dtype}"


def _check_names(root: Graph, defined: dict[Tensor, Graph], graphs: list[Graph]) -> Iterator[str]:
    nodes = {node for graph in graphs for node in graph.nodes}
    for node in nodes:
        if root._names.nodes.get(node.name) is not node:
            yield f"node {node.name!r} ({node.op_type}) is not registered under its name (names must be unique)"
    for name, node in root._names.nodes.items():
        if node not in nodes:
            yield f"node name {name!r} refers to a node that no graph of this model holds"
    table = root._names.tensors
    for tensor in defined:
        if table.get(tensor.name) is not tensor:
            yield f"tensor {tensor.name!r} is not registered under its name (names must be unique)"
    for name, tensor in table.items():
        if tensor not in defined:
            yield f"name {name!r} refers to tensor {tensor.name!r} that no graph of this model defines"


def _check_reads(graph: Graph) -> Iterator[str]:
    for node in graph.nodes:
        for index, tensor in enumerate(node.inputs):
            if tensor is not None:
                yield from _check_read(graph, Use(node, index), tensor)
    for index, tensor in enumerate(graph.outputs):
        yield from _check_read(graph, Use(graph, index), tensor)


def _check_read(graph: Graph, use: Use, tensor: Tensor) -> Iterator[str]:
    where = _where(use)
    if tensor.graph is None:
        yield f"{where} reads {tensor.name!r}, a tensor removed from its graph (dangling)"
        return
    if not graph.sees(tensor):
        yield f"{where} reads {tensor.name!r} of graph {tensor.graph.name!r}, which is not in scope"
    if use not in tensor._uses:
        yield f"{where} reads {tensor.name!r} but {tensor.name!r} does not record that use"


def _check_recorded_uses(defined: dict[Tensor, Graph], graphs: set[Graph]) -> Iterator[str]:
    for tensor in defined:
        for use in tensor._uses:
            user = use.user
            slots = user._inputs if isinstance(user, Node) else user._outputs
            alive = (user.graph in graphs) if isinstance(user, Node) else (user in graphs)
            if not alive:
                yield f"tensor {tensor.name!r} records a use by removed {_where(use)}"
            elif use.index >= len(slots) or slots[use.index] is not tensor:
                yield f"tensor {tensor.name!r} records a use at {_where(use)}, which reads something else"


def _check_dependencies(graph: Graph) -> Iterator[str]:
    expected: Counter[tuple[Node, Node]] = Counter()
    for tensor in graph.tensors():
        if tensor.producer is None:
            continue
        for use in tensor._uses:
            anchor = anchor_node(use, graph)
            if anchor is not None:
                expected[(tensor.producer, anchor)] += 1
    actual = Counter({(u, v): data["links"] for u, v, data in graph._dag.edges(data=True)})
    for edge in expected.keys() | actual.keys():
        if expected[edge] != actual[edge]:
            producer, user = edge
            yield (
                f"graph {graph.name!r}: dependency {producer.name!r} -> {user.name!r} recorded "
                f"{actual[edge]} time(s), but the uses imply {expected[edge]}"
            )
    if not nx.is_directed_acyclic_graph(graph._dag):
        cycle = " -> ".join(u.name for u, _ in nx.find_cycle(graph._dag))
        yield f"graph {graph.name!r} has a dependency cycle: {cycle}"


def _check_top_level_types(root: Graph) -> Iterator[str]:
    for tensor in root.inputs:
        if tensor.type is None:
            yield f"model input {tensor.name!r} has no type"
        elif isinstance(tensor.type, TensorType) and tensor.type.dtype is None:
            yield f"model input {tensor.name!r} has no element type"


def _check_domains(root: Graph, graphs: list[Graph], model: Model) -> Iterator[str]:
    imported = set(model.opset_imports)
    standard_imported = bool(imported & set(STANDARD_DOMAINS))
    for graph in graphs:
        for node in graph.nodes:
            if node.domain in STANDARD_DOMAINS:
                if not standard_imported:
                    yield f"node {node.name!r} ({node.op_type}) uses the standard domain, which the model does not import"
            elif node.domain not in imported:
                yield f"node {node.name!r} ({node.qualified_op}) uses domain {node.domain!r}, which the model does not import"


def _where(use: Use) -> str:
    if isinstance(use.user, Node):
        return f"input {use.index} of node {use.user.name!r} ({use.user.op_type})"
    return f"output {use.index} of graph {use.user.name!r}"
