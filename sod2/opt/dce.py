"""Dead-code elimination: remove nodes whose results reach no output, and unread constants.

Works at every depth: dead nodes inside the subgraphs of live control-flow nodes go too, and a
dead control-flow node takes its subgraphs with it. Graph inputs stay (they are the interface;
a subgraph's inputs are bound by position). Nodes of non-standard domains are kept (see
`sod2.analysis.reachability`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sod2.analysis.reachability import LiveNodes
from sod2.ir.graph import Graph
from sod2.ir.model import Model
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove nodes whose outputs are never used, and constants nothing reads."""

    name = "dce"

    def run(self, model: Model, context: PassContext) -> PassResult:
        live = context.analyses.get(LiveNodes, model.graph)
        graphs = [model.graph, *model.graph.subgraphs()]
        # Inner graphs first: their dead nodes may be the last readers of outer tensors.
        kept_graphs = [g for g in reversed(graphs) if g.parent is None or g.parent in live]
        removed = 0
        for graph in kept_graphs:
            removed += _erase_dead_nodes(graph, live)
        for graph in kept_graphs:
            removed += _remove_unread_constants(graph)
        return PassResult.modified() if removed else PassResult.unchanged()


def _erase_dead_nodes(graph: Graph, live: frozenset) -> int:
    dead = [node for node in reversed(graph.topological_order()) if node not in live]
    for node in dead:
        graph.erase(node)
    return len(dead)


def _remove_unread_constants(graph: Graph) -> int:
    unread = [tensor for tensor in graph.constants if not tensor.has_uses()]
    for tensor in unread:
        graph.remove_constant(tensor)
    return len(unread)
