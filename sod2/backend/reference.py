"""The reference interpreter: run a model node by node with the catalogue's numpy kernels.

It is the oracle every optimization is checked against, so it favours being obviously right over
being fast:
- nodes run in topological order, each through its catalogue kernel (`sod2.ops`);
- subgraphs (If, Loop, Scan, SequenceMap bodies) run through the same machinery, with the values
  of enclosing graphs in scope (a `ChainMap` of environments, innermost first);
- inputs are checked before anything runs: each model input must be fed (or have a default), with
  its declared element type and rank, static dims equal, and every symbol bound to one value
  across all inputs; a mismatch is an error naming the input, the dim and the symbol;
- every kernel result is checked against the node's declared output types, so a kernel bug
  surfaces as an error naming the node instead of a wrong answer downstream.

An operator the catalogue lacks fails with `UnsupportedOpError` when a node of it is about to run
(so a model whose unsupported ops sit in branches that never run still runs);
`unsupported_ops(model)` lists them up front.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from sod2.errors import Sod2Error
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ir.types import OptionalType, SequenceType, TensorType
from sod2.ops import KernelContext, OpDef, Value, lookup_node

Environment = ChainMap  # Tensor -> Value, innermost graph first


class InputError(Sod2Error):
    """A value fed to a model does not fit the input's declared type or shape."""


@dataclass
class RunResult:
    """The outputs of a run by name, and (when asked) every top-level tensor's value by name."""

    outputs: dict[str, Value]
    intermediates: dict[str, Value] = field(default_factory=dict)


class ReferenceInterpreter:
    """Runs one model; reusable across calls (kernel lookups are cached)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._kernels: dict[Node, OpDef] = {}
        self._orders: dict[Graph, list[Node]] = {}
        self._releases: dict[Graph, list[list[Tensor]]] = {}
        self._keep = False

    def run(self, feeds: Mapping[str, Any], *, intermediates: bool = False) -> RunResult:
        """Run the model on `feeds` (input name -> value); outputs come back by name."""
        graph = self.model.graph
        env: Environment = ChainMap(bind_inputs(graph, feeds))
        for tensor in graph.constants:
            env[tensor] = tensor.const_value
        self._keep = intermediates
        self._run_nodes(graph, env)
        outputs = {tensor.name: env[tensor] for tensor in graph.outputs}
        recorded = {t.name: v for t, v in env.items()} if intermediates else {}
        return RunResult(outputs, recorded)

    # -- graphs ------------------------------------------------------------------------------

    def run_subgraph(
        self, graph: Graph, inputs: Sequence[Value], outer: Environment
    ) -> list[Value]:
        """Run a subgraph with its inputs bound by position, seeing the values of `outer`."""
        if len(inputs) != len(graph.inputs):
            raise Sod2Error(
                f"subgraph {graph.name!r} takes {len(graph.inputs)} inputs, got {len(inputs)}"
            )
        env = outer.new_child(dict(zip(graph.inputs, inputs, strict=True)))
        for tensor in graph.constants:
            env[tensor] = tensor.const_value
        self._run_nodes(graph, env)
        return [env[tensor] for tensor in graph.outputs]

    def _run_nodes(self, graph: Graph, env: Environment) -> None:
        order = self._orders.get(graph)
        if order is None:
            order = self._orders[graph] = graph.topological_order()
        if self._keep:
            for node in order:
                self._run_node(node, env)
            return
        releases = self._releases.get(graph)
        if releases is None:
            releases = self._releases[graph] = _releases(graph, order)
        scope = env.maps[0]
        for node, dead in zip(order, releases, strict=True):
            self._run_node(node, env)
            for tensor in dead:  # a value no later node reads: dropped at once
                scope.pop(tensor, None)

    def _run_node(self, node: Node, env: Environment) -> None:
        opdef = self._kernels.get(node)
        opset = self.model.opset(node.domain)
        if opdef is None:
            opdef = self._kernels[node] = lookup_node(node, opset)
        values = [None if t is None else env[t] for t in node.inputs]
        context = KernelContext(
            node, opset, run_graph=lambda graph, inputs: self.run_subgraph(graph, inputs, env)
        )
        results = list(opdef.kernel(context, values))
        if len(results) > len(node.outputs):
            raise Sod2Error(
                f"kernel of {node.op_type} returned {len(results)} values for node {node.name!r} "
                f"with {len(node.outputs)} outputs"
            )
        results += [None] * (len(node.outputs) - len(results))
        for tensor, result in zip(node.outputs, results, strict=True):
            if tensor is not None:
                check_result(node, tensor, result)
                env[tensor] = result


def _releases(graph: Graph, order: Sequence[Node]) -> list[list[Tensor]]:
    """For each node of `order`, the tensors of `graph` it reads (itself or inside its
    subgraphs) or makes for the last time; the graph's outputs are never released."""
    last: dict[Tensor, int] = {}
    for step, node in enumerate(order):
        for tensor in (*node.inputs, *node.outputs, *_outer_reads(node, graph)):
            if tensor is not None:
                last[tensor] = step
    kept = set(graph.outputs)
    releases: list[list[Tensor]] = [[] for _ in order]
    for tensor, step in last.items():
        if tensor not in kept and not tensor.is_constant:
            releases[step].append(tensor)
    return releases


def _outer_reads(node: Node, graph: Graph) -> list[Tensor]:
    """Tensors of `graph` read inside `node`'s subgraphs, at any depth."""
    found: list[Tensor] = []
    for _, subgraph in node.subgraphs:
        for body in (subgraph, *subgraph.subgraphs()):
            found += [t for t in body.outputs if t.graph is graph]  # a branch may return it
        for inner in subgraph.walk():
            found += [t for t in inner.inputs if t is not None and t.graph is graph]
    return found


def run_reference(
    model: Model, feeds: Mapping[str, Any], *, intermediates: bool = False
) -> RunResult:
    """Run `model` once with the reference interpreter."""
    return ReferenceInterpreter(model).run(feeds, intermediates=intermediates)


def unsupported_ops(model: Model) -> list[str]:
    """The operators of `model`, at any depth, that the catalogue cannot run (with node names)."""
    missing = []
    for node in model.graph.walk():
        try:
            lookup_node(node, model.opset(node.domain))
        except Sod2Error as error:
            missing.append(str(error))
    return missing


# -- checking ----------------------------------------------------------------------------------


def bind_inputs(graph: Graph, feeds: Mapping[str, Any]) -> dict[Tensor, Value]:
    """Match feeds to the graph's inputs, checking types, ranks, static dims and symbols."""
    by_name = {tensor.name: tensor for tensor in graph.inputs}
    unknown = sorted(set(feeds) - set(by_name))
    if unknown:
        raise InputError(
            f"model has no input(s) {', '.join(map(repr, unknown))}; its inputs are "
            f"{', '.join(by_name)}"
        )
    bound: dict[Tensor, Value] = {}
    symbols: dict[sympy.Symbol, tuple[int, str]] = {}
    for tensor in graph.inputs:
        if tensor.name in feeds:
            value = _as_value(tensor, feeds[tensor.name])
            _check_input(tensor, value, symbols)
        elif tensor.const_value is not None:
            value = tensor.const_value
        else:
            raise InputError(f"model input {tensor.name!r} ({tensor.type}) was not given a value")
        bound[tensor] = value
    return bound


def _as_value(tensor: Tensor, value: Any) -> Value:
    if isinstance(tensor.type, (SequenceType, OptionalType)):
        return value
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def _check_input(
    tensor: Tensor, value: Value, symbols: dict[sympy.Symbol, tuple[int, str]]
) -> None:
    tensor_type = tensor.type
    if not isinstance(tensor_type, TensorType):
        return
    if not isinstance(value, np.ndarray):
        raise InputError(f"model input {tensor.name!r} takes a tensor, got {type(value).__name__}")
    _check_dtype(f"model input {tensor.name!r}", tensor_type.dtype, value, InputError)
    dims = tensor_type.shape.dims
    if dims is None:
        return
    if len(dims) != value.ndim:
        raise InputError(
            f"model input {tensor.name!r} has rank {len(dims)} {tensor_type.shape}, "
            f"got an array of shape {list(value.shape)}"
        )
    for axis, (dim, actual) in enumerate(zip(dims, value.shape, strict=True)):
        if isinstance(dim, int):
            if dim != actual:
                raise InputError(
                    f"model input {tensor.name!r}: dim {axis} must be {dim}, got {actual} "
                    f"(shape {list(value.shape)})"
                )
        elif isinstance(dim, sympy.Symbol):
            seen = symbols.setdefault(dim, (actual, tensor.name))
            if seen[0] != actual:
                raise InputError(
                    f"symbol {dim} is {seen[0]} in input {seen[1]!r} but {actual} in input "
                    f"{tensor.name!r} (dim {axis})"
                )


def check_result(node: Node, tensor: Tensor, value: Value) -> None:
    """Refuse a kernel result whose kind or element type contradicts `tensor`'s declared type."""
    declared = tensor.type
    where = f"node {node.name!r} ({node.op_type}) output {tensor.name!r}"
    if value is None:
        if not isinstance(declared, OptionalType):
            raise Sod2Error(f"{where}: the kernel produced no value")
        return
    if isinstance(declared, TensorType):
        if not isinstance(value, np.ndarray):
            raise Sod2Error(
                f"{where}: expected a tensor, the kernel produced {type(value).__name__}"
            )
        _check_dtype(where, declared.dtype, value, Sod2Error)
        dims = declared.shape.dims
        if dims is not None and len(dims) != value.ndim:
            raise Sod2Error(f"{where}: declared {declared} but computed shape {list(value.shape)}")
    elif isinstance(declared, SequenceType) and not isinstance(value, list):
        raise Sod2Error(f"{where}: expected a sequence, the kernel produced {type(value).__name__}")


def _check_dtype(
    where: str, dtype: DType | None, value: np.ndarray, error: type[Sod2Error]
) -> None:
    if dtype is None:
        return
    if dtype is DType.STRING:
        if value.dtype.kind not in "OUS":
            raise error(f"{where} holds strings, got {value.dtype}")
    elif value.dtype != dtype.numpy:
        raise error(f"{where} has element type {dtype}, got {value.dtype}")
