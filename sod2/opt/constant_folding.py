"""Constant folding: evaluate nodes whose inputs are all constants, with the reference kernels.

A node is folded when every input it reads is a constant (not a graph input, even one with a
default value: the caller may override those), its operator has a deterministic reference kernel
in the catalogue, it holds no subgraph, and its results are tensors. Folding runs in dependency
order, so whole constant-only subgraphs collapse in one run.

What is left alone, on purpose:
- ops without a kernel (the catalogue says which), random ops, control flow;
- nodes whose evaluation fails: the failure may sit in a branch that never runs, so it must stay
  a run-time error rather than become a compile-time one;
- results that would grow the model: outputs larger than both their inputs and `max_bytes`
  (an `Expand` of a scalar to a large shape is cheaper to compute than to store).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sod2.errors import Sod2Error
from sod2.ir.graph import Graph, Node
from sod2.ir.model import Model
from sod2.ops import KernelContext, lookup_node
from sod2.passes.base import Pass, PassResult, option
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass

log = logging.getLogger(__name__)


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Replace nodes computed from constants only by the constants they compute."""

    name = "fold-constants"
    max_bytes: int = option(1 << 20, "largest result kept when it is larger than the inputs")

    def run(self, model: Model, context: PassContext) -> PassResult:
        folded = 0
        for graph in [model.graph, *model.graph.subgraphs()]:
            if graph.parent is not None and graph.parent.graph is None:
                continue  # its control-flow node was folded away meanwhile
            for node in graph.topological_order():
                if self._try_fold(node, graph, model):
                    folded += 1
        return PassResult.modified() if folded else PassResult.unchanged()

    def _try_fold(self, node: Node, graph: Graph, model: Model) -> bool:
        values = self._constant_inputs(node)
        if values is None:
            return False
        try:
            opdef = lookup_node(node, model.opset(node.domain))
        except Sod2Error:
            return False
        if not opdef.deterministic:
            return False
        try:
            results = list(opdef.kernel(KernelContext(node, model.opset(node.domain)), values))
        except (Sod2Error, ValueError, TypeError, IndexError, ArithmeticError) as error:
            log.debug("not folding %s (%s): %s", node.name, node.op_type, error)
            return False
        if not self._worth_storing(values, results, node):
            return False
        self._replace(node, graph, results)
        return True

    @staticmethod
    def _constant_inputs(node: Node) -> list[np.ndarray | None] | None:
        if node.subgraphs:
            return None
        values: list[np.ndarray | None] = []
        for tensor in node.inputs:
            if tensor is None:
                values.append(None)
            elif tensor.is_constant:
                values.append(tensor.const_value)
            else:
                return None
        return values

    def _worth_storing(self, values: list, results: list, node: Node) -> bool:
        outputs = [t for t in node.outputs if t is not None]
        if len(results) != len(node.outputs) or not all(isinstance(r, np.ndarray) for r in results):
            return False
        for tensor, result in zip(node.outputs, results, strict=True):
            if (
                tensor is not None
                and tensor.dtype is not None
                and tensor.dtype.numpy != result.dtype
            ):
                raise Sod2Error(
                    f"kernel of {node.op_type} produced {result.dtype} for {tensor.name!r} "
                    f"(node {node.name!r}) whose type is {tensor.type}"
                )
        produced = sum(r.nbytes for r in results)
        consumed = sum(v.nbytes for v in values if v is not None)
        return bool(outputs) and (produced <= consumed or produced <= self.max_bytes)

    @staticmethod
    def _replace(node: Node, graph: Graph, results: list[np.ndarray]) -> None:
        for tensor, result in zip(node.outputs, results, strict=True):
            if tensor is None:
                continue
            constant = graph.add_constant(result, graph.fresh_name(tensor.name + "_folded"))
            tensor.replace_all_uses_with(constant)
        graph.erase(node)
