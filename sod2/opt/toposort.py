"""Topological sort: make program order a dependency order, in every graph.

Among the orders that respect dependencies it picks the one closest to the current program order
(`Graph.topological_order`), so sorting an already sorted graph changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sod2.analysis.reachability import LiveNodes, OpHistogram
from sod2.ir.model import Model
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class TopologicalSort(Pass):
    """Reorder nodes so each comes after the nodes it depends on (stable)."""

    name = "toposort"

    def run(self, model: Model, context: PassContext) -> PassResult:
        changed = False
        for graph in [model.graph, *model.graph.subgraphs()]:
            if not graph.is_topologically_ordered():
                graph.reorder(graph.topological_order())
                changed = True
        # Node order is not a fact any analysis caches; dependencies and values are unchanged.
        if not changed:
            return PassResult.unchanged()
        return PassResult.modified(preserved=(LiveNodes, OpHistogram))
