"""Fusion: merge operators that can share one loop nest into `sod2::Fused` nodes.

The idea (TVM's operator fusion, driven by SoD2's shape facts): an elementwise or broadcast op
reads each input element once and writes each output element once, so a chain of them can run as
one loop nest that keeps every intermediate in a register. A heavy op (Conv, MatMul, Gemm) can
also absorb the elementwise ops that follow it as an *epilogue* applied to its output while it is
still in cache.

Whether ops fit one loop nest depends on their shapes, and in a dynamic model those are symbolic.
RDP's facts decide: every member's output must broadcast to the group's iteration shape with each
dim *provably* equal to the iteration dim or the constant 1. `Sigmoid(A[I,1,1]) + B[I,J,K]` fuses
(the sigmoid is computed once per `i` by the generated code); `X[N] + Y[M]` with N and M unrelated
does not, because nothing proves which of them is 1.

Invariants of the groups (checked by `tests/opt/test_fusion.py`):
- a group lies in one graph, never contains a node with subgraphs, an EDO op or an op the code
  generator refuses, and never contains a tensor whose shape is not resolved from the inputs
  (EDO outputs are read by groups but never computed inside them);
- a group is convex: no path leaves it and comes back, so it can run as one node;
- every tensor a group hands out (read outside it or a graph output) has the iteration shape;
- an epilogue group has exactly one heavy op, first, whose output is read only by the group.

A *chain* joins up to CHAIN_MAX_STAGES stages, convolutions (each with its epilogue if it has
one) and Resizes, where each stage's result is read by the next alone, as its X, and the last is
a convolution. The runtime computes the last stage's output a block of rows at a time from bands
of the earlier stages' output rows (`sod2.backend.kernels.BandChain`), so those results, often
the largest tensors alive at their step (a stem, a subsampling, the inside of a residual block,
an upsampled image), never take arena memory. A link is formed when the tensor between two
stages is 4-D float32 whose shape is symbolic or which holds at least CHAIN_MIN_BYTES, and when
the earlier stage's epilogue reads nothing that varies along the batch or the height (so that it
can finish any band of rows).

`fuse(model, rdp)` rewrites the model in place and returns the groups; the pass `fuse` does the
same inside a pipeline. RDP must be re-run afterwards (the fused nodes' outputs are new tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sod2.analysis.facts import TensorFact
from sod2.analysis.rdp import RDPResult, propagate
from sod2.analysis.symbolic import provably_equal
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ir.types import CONTAINER_TYPES
from sod2.ops.fused import FUSED_DOMAIN, FUSED_OP, is_fused
from sod2.ops.patterns import PatternKind, node_pattern
from sod2.ops.registry import OpClass, lookup_shape_rule
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass

Supports = Callable[[Node, int], str | None]
"""A code generator's verdict on a node: None when it can generate it, else the reason."""

FLOAT_TYPES = frozenset({DType.FLOAT32, DType.FLOAT64, DType.FLOAT16})
GROUP_TYPES = FLOAT_TYPES | {DType.BOOL}
"""Element types a fused loop nest computes: floating point, and booleans from comparisons."""

EPILOGUE_ANCHORS = frozenset(
    {("", "Conv"), ("", "MatMul"), ("", "Gemm"), (FUSED_DOMAIN, "Standardize")}
)
"""(domain, op type) of the heavy ops whose output an elementwise epilogue may finish (runtime
kernels call it back); sod2's Standardize is made by `sod2.opt.standardize`."""


def is_epilogue_anchor(node: Node) -> bool:
    """True for a node of EPILOGUE_ANCHORS (the standard domain as "" or "ai.onnx")."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    return (domain, node.op_type) in EPILOGUE_ANCHORS


CHAIN_STAGE_OPS = frozenset({"Conv", "Resize"})
"""Ops a chain is made of: their output rows read a band of their input rows."""

CHAIN_MAX_STAGES = 3
"""Stages in a chain at most: each one more widens the bands of the ones before (a 3x3 Conv
reads two more rows), which are computed again where blocks overlap."""

CHAIN_MIN_BYTES = 1 << 20
"""A static tensor between two convolutions is chained away only from this size on (a smaller
one costs the arena little, and bands would only cut the products into smaller pieces)."""


@dataclass(frozen=True)
class FusionGroup:
    """One group: its nodes in execution order, kind, iteration shape and interface."""

    name: str
    kind: str
    """"elementwise" (one loop nest), "epilogue" (a heavy op, then a loop nest on its output) or
    "chain" (convolutions and Resizes, each result but the last made in bands)."""
    nodes: tuple[Node, ...]
    shape: tuple[Dim, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def describe(self) -> str:
        """One line: name, kind, ops and iteration shape."""
        ops = " -> ".join(n.op_type for n in self.nodes)
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name} [{self.kind}] ({dims}): {ops}"


def default_supports(node: Node, opset: int) -> str | None:
    """The Numba code generator's verdict (`sod2.backend.codegen.unsupported_reason`)."""
    from sod2.backend.codegen import unsupported_reason

    return unsupported_reason(node, opset)


# -- forming groups ----------------------------------------------------------------------------


class _Former:
    """Forms the groups of one graph (see the module docstring for the rules)."""

    def __init__(
        self, graph: Graph, model: Model, rdp: RDPResult, supports: Supports, chains: bool
    ) -> None:
        self.graph = graph
        self.chains = chains
        self.model = model
        self.rdp = rdp
        self.supports = supports
        self.order = graph.topological_order()
        self.position = {node: i for i, node in enumerate(self.order)}
        self.group_of: dict[Node, int] = {}
        self.members: dict[int, list[Node]] = {}
        self.shapes: dict[int, tuple[Dim, ...]] = {}

    # facts

    def fact(self, tensor: Tensor | None) -> TensorFact | None:
        return None if tensor is None else self.rdp.facts.get(tensor)

    def resolved_shape(self, tensor: Tensor | None) -> tuple[Dim, ...] | None:
        fact = self.fact(tensor)
        if fact is None or fact.shape.dims is None:
            return None
        dims = tuple(fact.shape.dims)
        return dims if all(self.rdp.is_resolved(d) for d in dims) else None

    def fusable(self, node: Node) -> bool:
        """An elementwise or broadcast node of float (or bool) type the generator accepts."""
        if node_pattern(node) not in (PatternKind.ELEMENTWISE, PatternKind.BROADCAST):
            return False
        if _op_class(node, self.model) is OpClass.EDO:
            return False
        outputs = [t for t in node.outputs if t is not None]
        if len(outputs) != 1 or self.resolved_shape(outputs[0]) is None:
            return False
        for tensor in [*node.inputs, *outputs]:
            if tensor is not None and isinstance(tensor.type, CONTAINER_TYPES):
                return False  # a sequence or an optional is not a value a loop nest holds
            fact = self.fact(tensor)
            if tensor is not None and (fact is None or fact.dtype not in GROUP_TYPES):
                return False
        if not any(self.fact(t).dtype in FLOAT_TYPES for t in [*node.inputs, *outputs] if t):  # type: ignore[union-attr]
            return False
        return self.supports(node, self.model.opset(node.domain)) is None

    # shapes

    def broadcasts_to(self, dims: Sequence[Dim], shape: Sequence[Dim]) -> bool:
        """True when `dims` provably broadcast to `shape` (right-aligned, each dim equal or 1)."""
        if len(dims) > len(shape):
            return False
        return all(
            d == 1 or provably_equal(d, s)
            for d, s in zip(reversed(dims), reversed(shape), strict=False)
        )

    def same_shape(self, a: Sequence[Dim], b: Sequence[Dim]) -> bool:
        return len(a) == len(b) and all(provably_equal(x, y) for x, y in zip(a, b, strict=True))

    # the walk

    def form(self) -> list[list[Node]]:
        for node in self.order:
            if not self.fusable(node):
                continue
            shape = self.resolved_shape(node.outputs[0])
            assert shape is not None
            index = self.position[node]
            self.members[index] = [node]
            self.group_of[node] = index
            self.shapes[index] = shape
            for producer in self._producer_groups(node):
                self._try_merge(producer, index)
        groups = [self.members[g] for g in sorted(self.members)]
        return self._with_anchors(groups)

    def _producer_groups(self, node: Node) -> list[int]:
        seen: list[int] = []
        for tensor in node.inputs:
            producer = None if tensor is None else tensor.producer
            group = self.group_of.get(producer) if producer is not None else None
            if group is not None and group not in seen and group != self.group_of[node]:
                seen.append(group)
        return seen

    def _try_merge(self, producer: int, consumer: int) -> None:
        """Merge group `producer` into `consumer` when shapes, outputs and convexity allow."""
        shape = self.shapes[consumer]
        if not self.broadcasts_to(self.shapes[producer], shape):
            return
        merged = set(self.members[producer]) | set(self.members[consumer])
        for node in merged:
            out = node.outputs[0]
            escapes = out.is_graph_output or any(u not in merged for u in out.users)  # type: ignore[union-attr]
            if escapes and not self.same_shape(self.resolved_shape(out) or (), shape):
                return
        if not self._convex(merged):
            return
        nodes = sorted(merged, key=self.position.__getitem__)
        del self.members[producer]
        self.members[consumer] = nodes
        for node in nodes:
            self.group_of[node] = consumer

    def _convex(self, members: set[Node]) -> bool:
        """No path from a member through a non-member back to a member."""
        last = max(self.position[n] for n in members)
        frontier = [u for n in members for u in self._users(n) if u not in members]
        seen: set[Node] = set()
        while frontier:
            node = frontier.pop()
            if node in seen or self.position[node] > last:
                continue
            seen.add(node)
            for user in self._users(node):
                if user in members:
                    return False
                frontier.append(user)
        return True

    def _users(self, node: Node) -> Iterable[Node]:
        for tensor in node.outputs:
            if tensor is not None:
                for user in tensor.users:
                    if user.graph is self.graph:
                        yield user
                    else:  # read inside a subgraph: the enclosing node is the user
                        yield from _enclosing(user, self.graph)

    def _with_anchors(self, groups: list[list[Node]]) -> list[list[Node]]:
        """Let a heavy op (EPILOGUE_ANCHORS) whose only reader is an elementwise group lead it."""
        result = []
        for nodes in groups:
            result.append(self._anchored(nodes) or nodes)
        return result

    def _anchored(self, nodes: list[Node]) -> list[Node] | None:
        """The group led by its anchor. Of several possible anchors, one where a chain of
        convolutions can end (`_ends_chain`) leads, so that the chain absorbs the group:
        `relu(shortcut + residual)` is finished by the residual's last convolution; else the
        first found."""
        members = set(nodes)
        shape = self.shapes[self.group_of[nodes[0]]]
        found: list[Node] = []
        for node in nodes:
            for tensor in node.inputs:
                anchor = None if tensor is None else tensor.producer
                if anchor is None or anchor.graph is not self.graph:
                    continue
                if not is_epilogue_anchor(anchor):
                    continue
                out = anchor.outputs[0]
                if out is None or out.is_graph_output or any(u not in members for u in out.users):
                    continue
                dims = self.resolved_shape(out)
                fact = self.fact(out)
                if dims is None or not self.same_shape(dims, shape) or fact is None:
                    continue
                if fact.dtype is not DType.FLOAT32:
                    continue
                if anchor not in found and self._convex(members | {anchor}):
                    found.append(anchor)
        if not found:
            return None
        ends = [anchor for anchor in found if self.chains and self._ends_chain(anchor)]
        return [max(ends, key=self.position.__getitem__) if ends else found[0], *nodes]

    def _ends_chain(self, anchor: Node) -> bool:
        """True for a Conv whose X is another Conv's or a Resize's result, perhaps through
        elementwise ops of one data input (a chain can end at it)."""
        if anchor.op_type != "Conv":
            return False
        tensor = anchor.inputs[0]
        while tensor is not None and tensor.producer is not None:
            producer = tensor.producer
            if producer.graph is not self.graph:
                return False
            if _is_stage(producer):
                return True
            if not self.fusable(producer):
                return False
            tensor = producer.inputs[0]
        return False


def _enclosing(node: Node, graph: Graph) -> Iterable[Node]:
    """The node of `graph` whose subgraph (at any depth) holds `node`."""
    current: Graph | None = node.graph
    while current is not None and current.parent is not None:
        if current.parent.graph is graph:
            yield current.parent
            return
        current = current.parent.graph
    return


def _op_class(node: Node, model: Model) -> OpClass | None:
    try:
        return lookup_shape_rule(node.op_type, node.domain, model.opset(node.domain)).op_class
    except Exception:  # no rule: treat as opaque
        return None


# -- rewriting ---------------------------------------------------------------------------------


def copy_node(graph: Graph, node: Node, mapped: dict[Tensor, Tensor]) -> Node:
    """A copy of `node` added to `graph`, reading `mapped[t]` for each input `t`; its outputs get
    fresh names in `graph` and are recorded in `mapped`."""
    copy = graph.add_node(
        node.op_type,
        [None if t is None else mapped[t] for t in node.inputs],
        outputs=[None if t is None else graph.fresh_name(t.name) for t in node.outputs],
        attrs=dict(node.attrs),
        domain=node.domain,
        name=node.name,
        output_types=[None if t is None else t.type for t in node.outputs],
    )
    for old, new in zip(node.outputs, copy.outputs, strict=True):
        if old is not None and new is not None:
            mapped[old] = new
    return copy


def _rewrite(graph: Graph, nodes: Sequence[Node], kind: str, shape: tuple[Dim, ...]) -> FusionGroup:
    """Replace `nodes` by one `sod2::Fused` node whose body holds copies of them."""
    members = set(nodes)
    inputs: list[Tensor] = []
    inlined: list[Tensor] = []
    for node in nodes:
        for tensor in node.inputs:
            if tensor is None or tensor.producer in members or tensor in (*inputs, *inlined):
                continue
            if kind == "elementwise" and _scalar_constant(tensor):
                inlined.append(tensor)  # the loop nest sees its value (Pow(x, 2) is x * x)
            elif kind == "chain" and _shape_constant(tensor, node):
                inlined.append(tensor)  # RDP sees the output shape it gives
            else:
                inputs.append(tensor)
    outputs = [
        n.outputs[0]
        for n in nodes
        if n.outputs[0] is not None
        and (n.outputs[0].is_graph_output or any(u not in members for u in n.outputs[0].users))
    ]
    name = graph.fresh_name("fused_" + "_".join(n.op_type.lower() for n in nodes[:3]))
    body = graph.new_subgraph(name + "_body")
    mapped: dict[Tensor, Tensor] = {}
    for tensor in inputs:
        mapped[tensor] = body.add_input(body.fresh_name(tensor.name), tensor.type)
    for tensor in inlined:
        mapped[tensor] = body.add_constant(tensor.const_value, body.fresh_name(tensor.name))
    for node in nodes:
        copy_node(body, node, mapped)
    body.set_outputs([mapped[t] for t in outputs])
    fused = graph.add_node(
        FUSED_OP,
        inputs,
        outputs=len(outputs),
        attrs={"body": body, "kind": kind},
        domain=FUSED_DOMAIN,
        name=name,
        output_types=[t.type for t in outputs],
    )
    names = [t.name for t in outputs]
    for old, new in zip(outputs, fused.outputs, strict=True):
        old.replace_all_uses_with(new)  # type: ignore[arg-type]
    for node in reversed(nodes):
        graph.erase(node)
    for new, original in zip(fused.outputs, names, strict=True):
        if new is not None and new.name != original and graph.find_tensor(original) is None:
            new.rename(original)
    return FusionGroup(
        fused.name,
        kind,
        tuple(body.nodes),
        shape,
        tuple(fused.inputs),
        tuple(fused.outputs),  # type: ignore[arg-type]
    )


def _shape_constant(tensor: Tensor, node: Node) -> bool:
    """A constant that gives `node`'s output shape (a Resize's roi, scales or sizes): a chain's
    body holds it, so that RDP resolves the shapes inside and after the chain."""
    return (
        tensor.const_value is not None
        and node.op_type == "Resize"
        and node.domain in ("", "ai.onnx")
        and tensor is not node.inputs[0]
    )


def _scalar_constant(tensor: Tensor) -> bool:
    """A one-element constant: an elementwise group's body holds it, not an input."""
    value = tensor.const_value
    return value is not None and np.size(value) == 1


def find_groups(
    model: Model, rdp: RDPResult, *, supports: Supports = default_supports, chains: bool = True
) -> dict[Graph, list[list[Node]]]:
    """The groups fusion would form, per graph (top-level and control-flow bodies), without
    rewriting anything; single nodes count as groups of one (they still become loop nests).
    With `chains`, an epilogue prefers an anchor where a chain can end (`fuse`)."""
    found: dict[Graph, list[list[Node]]] = {}
    for graph in [model.graph, *model.graph.subgraphs()]:
        if graph.parent is not None and is_fused(graph.parent):
            continue
        former = _Former(graph, model, rdp, supports, chains)
        groups = former.form()
        if groups:
            found[graph] = groups
    return found


def find_chains(graph: Graph, groups: Sequence[list[Node]], rdp: RDPResult) -> list[list[Node]]:
    """The chains of `graph` (module docstring): runs of up to CHAIN_MAX_STAGES units, each
    reading the one before's result alone, with a Conv among them. A unit is a Conv alone, a
    Conv's epilogue group from `groups`, or a Resize. Runs are taken in execution order, each
    unit in one chain at most."""
    grouped = {node for nodes in groups for node in nodes}
    units: dict[Node, list[Node]] = {nodes[0]: nodes for nodes in groups if _is_stage(nodes[0])}
    order = graph.topological_order()
    for node in order:
        if _is_stage(node) and node not in grouped:
            units[node] = [node]
    position = {node: i for i, node in enumerate(order)}
    chains: list[list[Node]] = []
    used: set[Node] = set()
    for head in sorted(units, key=position.__getitem__):
        if head in used:
            continue
        run = [head]
        while len(run) < CHAIN_MAX_STAGES:
            follower = _chain_follower(units[run[-1]], units, rdp)
            if follower is None or follower in used or follower in run:
                break
            run.append(follower)
        while run and run[-1].op_type != "Conv":
            run.pop()  # (a Resize ending a run: nothing is saved by making its output in bands)
        if len(run) < 2 or not any(n.op_type == "Conv" for n in run):
            continue
        used.update(run)
        chains.append([n for anchor in run for n in units[anchor]])
    return chains


def _is_stage(node: Node) -> bool:
    return node.op_type in CHAIN_STAGE_OPS and node.domain in ("", "ai.onnx")


def _chain_follower(unit: list[Node], units: dict[Node, list[Node]], rdp: RDPResult) -> Node | None:
    """The stage that `unit` can chain into, or None."""
    members = set(unit)
    escaping = [
        t
        for node in unit
        for t in node.outputs
        if t is not None and (t.is_graph_output or any(u not in members for u in t.users))
    ]
    if len(escaping) != 1 or escaping[0].is_graph_output:
        return None
    middle = escaping[0]
    users = list(middle.users)
    if len(users) != 1 or users[0] not in units or users[0].graph is not unit[0].graph:
        return None
    follower = users[0]
    if follower.inputs[0] is not middle or middle in follower.inputs[1:]:
        return None
    fact = rdp.facts.get(middle)
    source = rdp.facts.get(unit[0].inputs[0]) if unit[0].inputs[0] is not None else None
    if fact is None or fact.dtype is not DType.FLOAT32 or fact.shape.dims is None:
        return None
    dims = tuple(fact.shape.dims)
    if len(dims) != 4 or source is None or source.shape.rank != 4:
        return None
    if not all(rdp.is_resolved(d) for d in dims):
        return None
    if all(isinstance(d, int) for d in dims) and 4 * int(np.prod(dims)) < CHAIN_MIN_BYTES:
        return None  # a small static tensor: bands would only cut the products smaller
    for node in unit[1:]:
        for tensor in node.inputs:
            if tensor is None or tensor.producer in members:
                continue
            operand = rdp.facts.get(tensor)
            if operand is None or operand.shape.dims is None or operand.shape.rank > 4:
                return None
            aligned = (1,) * (4 - operand.shape.rank) + tuple(operand.shape.dims)
            if not (aligned[0] == 1 and aligned[2] == 1):
                return None  # it varies along the batch or the height: no band of it
    return follower


def fuse(
    model: Model,
    rdp: RDPResult | None = None,
    *,
    supports: Supports = default_supports,
    chains: bool = True,
) -> list[FusionGroup]:
    """Rewrite `model` in place: every group becomes a `sod2::Fused` node (module docstring);
    with `chains`, pairs of convolutions become chains."""
    rdp = rdp or propagate(model)
    found = find_groups(model, rdp, supports=supports, chains=chains)
    kinds: dict[Graph, list[tuple[list[Node], str]]] = {}
    for graph in [model.graph, *model.graph.subgraphs()]:
        if graph.parent is not None and is_fused(graph.parent):
            continue
        groups = found.get(graph, [])
        linked = find_chains(graph, groups, rdp) if chains else []
        inside = {node for nodes in linked for node in nodes}
        listed = [
            (nodes, "epilogue" if is_epilogue_anchor(nodes[0]) else "elementwise")
            for nodes in groups
            if nodes[0] not in inside
        ]
        listed += [(nodes, "chain") for nodes in linked]
        if listed:
            kinds[graph] = listed
    if kinds and FUSED_DOMAIN not in model.opset_imports:
        model.opset_imports[FUSED_DOMAIN] = 1
    done = []
    for graph, listed in kinds.items():
        for nodes, kind in listed:
            last = nodes[-1].outputs[0]
            dims = rdp.facts[last].shape.dims if last in rdp.facts else None  # type: ignore[index]
            done.append(_rewrite(graph, nodes, kind, tuple(dims or ())))
    return done


def group_table(groups: Sequence[FusionGroup]) -> str:
    """The groups as text, one per line, with counts by kind first (for `sod2 inspect --fusion`)."""
    kinds: dict[str, int] = {}
    for group in groups:
        kinds[group.kind] = kinds.get(group.kind, 0) + 1
    fused_nodes = sum(len(g.nodes) for g in groups)
    lines = [
        f"{len(groups)} fused groups ("
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        + f") holding {fused_nodes} nodes"
    ]
    lines += ["  " + g.describe() for g in groups]
    return "\n".join(lines)


@register_pass
@dataclass(frozen=True)
class Fuse(Pass):
    """Merge elementwise chains and heavy-op epilogues into `sod2::Fused` nodes."""

    name = "fuse"

    def run(self, model: Model, context: PassContext) -> PassResult:
        groups = fuse(model)
        return PassResult.modified() if groups else PassResult.unchanged()
