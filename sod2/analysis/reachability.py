"""Which nodes matter: those whose results reach a graph output.

`LiveNodes` walks backwards from the outputs of the top-level graph. A live control-flow node makes
the outputs of its subgraphs live too (and, through them, the subgraph nodes and the outer tensors
they read). Nodes of operator domains other than the standard one are treated as live wherever
their graph is live: sod2 cannot know that such an op has no effect besides its outputs.

`OpHistogram` counts nodes per operator, subgraphs included.
"""

from __future__ import annotations

from collections import Counter

from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import STANDARD_DOMAINS
from sod2.passes.analysis import Analysis, AnalysisManager


def may_have_effects(node: Node) -> bool:
    """True for nodes that must not be removed even when nothing reads their outputs."""
    return node.domain not in STANDARD_DOMAINS


class LiveNodes(Analysis[frozenset[Node]]):
    """The nodes, at any depth, whose results reach the outputs of the top-level graph."""

    name = "live-nodes"

    def run(self, graph: Graph, analyses: AnalysisManager) -> frozenset[Node]:
        live: set[Node] = set()
        pending: list[Tensor] = list(graph.outputs)
        for node in graph.nodes:
            if may_have_effects(node):
                _mark(node, live, pending)
        while pending:
            producer = pending.pop().producer
            if producer is not None and producer not in live:
                _mark(producer, live, pending)
        return frozenset(live)


def _mark(node: Node, live: set[Node], pending: list[Tensor]) -> None:
    live.add(node)
    pending.extend(t for t in node.inputs if t is not None)
    for _, subgraph in node.subgraphs:
        pending.extend(subgraph.outputs)
        for inner in subgraph.nodes:
            if may_have_effects(inner) and inner not in live:
                _mark(inner, live, pending)


class OpHistogram(Analysis[Counter[str]]):
    """How many nodes of each operator the graph holds, subgraphs included."""

    name = "op-histogram"

    def run(self, graph: Graph, analyses: AnalysisManager) -> Counter[str]:
        return Counter(node.qualified_op for node in graph.walk())
