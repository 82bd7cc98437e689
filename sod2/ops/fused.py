"""`sod2::Fused`: a group of nodes that fusion made into one, with the group as its body.

The fusion pass (`sod2.opt.fusion`) replaces each group of fusable nodes by one node of op type
`Fused` in domain `sod2`. Its `body` attribute is a subgraph holding the group's nodes: the body's
inputs are bound, by position, to the node's inputs, and its outputs are the node's outputs. The
body reads nothing of the enclosing graph, so a fused node is self-contained.

Invariants: the reference interpreter runs a fused node by running its body (so a fused model is
checkable against the unfused one), RDP sees through it by analysing the body, and the memory
planner gives the body no memory at all (its intermediates live only in registers of the generated
loop nest). `kind` records the group's pattern ("elementwise" for a loop nest of elementwise and
broadcast ops, "epilogue" for a heavy op followed by elementwise ops on its output).
"""

from __future__ import annotations

from collections.abc import Sequence

from sod2.analysis.facts import TensorFact
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.graph import Node
from sod2.ops.registry import KernelContext, OpClass, Value, register, shape_rule

FUSED_DOMAIN = "sod2"
FUSED_OP = "Fused"


def is_fused(node: Node) -> bool:
    """True for a node that fusion made (op `Fused` in domain `sod2`)."""
    return node.op_type == FUSED_OP and node.domain == FUSED_DOMAIN


@register(FUSED_OP, domain=FUSED_DOMAIN)
def fused(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Fused: the body's outputs on the node's inputs."""
    if ctx.run_graph is None:
        raise ctx.unsupported("a fused node needs an interpreter to run its body")
    return ctx.run_graph(ctx.attr("body"), list(inputs))


@shape_rule(FUSED_OP, op_class=OpClass.ISDOS, domain=FUSED_DOMAIN)
def fused_shape(ctx: ShapeContext, inputs: Sequence[TensorFact | None]) -> list[TensorFact]:
    """Fused: the facts of the body's outputs, the body analysed on the node's input facts."""
    facts = [f if f is not None else TensorFact(None) for f in inputs]
    return ctx.run_subgraph(ctx.attr("body"), facts)
