"""Find normalizations written out op by op and make each one `sod2::Standardize` node.

A LayerNorm over an image's channels (SAM's LayerNorm2d, ConvNeXt's channels-first LayerNorm)
has no ONNX operator: LayerNormalization normalizes the trailing axes only. Exporters write it
out as seven nodes over the same axes A:

    u = ReduceMean(x, A)            d = Sub(x, u)          p = Pow(d, 2)  (or Mul(d, d))
    v = ReduceMean(p, A)            e = Add(v, epsilon)    s = Sqrt(e)    y = Div(d, s)

Run one by one they read and write the tensor four times and keep `d` and `p` alive. The
rewrite replaces them by `y = Standardize(x)` (axes A, epsilon), which the runtime computes in
one kernel that reads each block of `x` from the cache (`sod2.backend.kernels`), and which can
lead an epilogue group: the affine map and activation after it are applied as its output is
finished (`sod2.opt.fusion`).

Invariants: only a complete pattern over a float X (or one of unknown type) is rewritten.
Every intermediate (u, d, p, v, e, s) must be read by the pattern alone and be no graph output;
both ReduceMeans keep their dims and reduce the same non-empty run of consecutive axes, given as
constants; epsilon and the exponent are constants of one element. The result keeps Div's
output tensor, so nothing downstream changes. Works at every depth (subgraphs too). The value
may differ from the op-by-op one by rounding: the kernel multiplies by 1 / sqrt(var + epsilon)
where the graph divided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ops.fused import FUSED_DOMAIN
from sod2.ops.normalization import STANDARDIZE_OP
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass


@dataclass(frozen=True)
class _Match:
    """The seven nodes of one written-out normalization, and what the new node needs."""

    x: Tensor
    y: Tensor
    axes: tuple[int, ...]
    epsilon: float
    nodes: tuple[Node, ...]


def _standard(node: Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def _scalar(tensor: Tensor | None) -> float | None:
    """The value of a constant of one element, else None."""
    if tensor is None or not tensor.is_constant:
        return None
    value = np.asarray(tensor.const_value)
    if value.size != 1 or value.dtype.kind not in "fiu":
        return None
    return float(value.reshape(()))


def _mean_axes(node: Node, opset: int) -> tuple[int, ...] | None:
    """The axes of a ReduceMean that keeps its dims and reduces constant, non-empty axes."""
    if not _standard(node, "ReduceMean") or int(node.attr("keepdims", 1)) != 1:
        return None
    if opset >= 18:
        given = node.inputs[1] if len(node.inputs) > 1 else None
        if given is None or not given.is_constant:
            return None
        axes = np.asarray(given.const_value).reshape(-1).tolist()
    else:
        axes = list(node.attr("axes", None) or [])
    return tuple(int(a) for a in axes) or None


def _consecutive(axes: tuple[int, ...], rank: int | None) -> tuple[int, ...] | None:
    """`axes` sorted, counted from 0 where the rank is known, when they are distinct and
    consecutive; else None (negative and positive axes mixed need the rank)."""
    if rank is not None:
        if not all(-rank <= a < rank for a in axes):
            return None
        axes = tuple(a + rank if a < 0 else a for a in axes)
    elif min(axes) < 0 <= max(axes):
        return None
    ordered = tuple(sorted(axes))
    if len(set(ordered)) != len(ordered) or ordered[-1] - ordered[0] != len(ordered) - 1:
        return None
    return ordered


def _sole_user(tensor: Tensor | None) -> Node | None:
    """The one node reading `tensor`, once, where it is no graph output; else None."""
    if tensor is None or tensor.is_graph_output or len(tensor.uses) != 1:
        return None
    return tensor.users[0]


def _squares(node: Node, d: Tensor) -> bool:
    """True for Pow(d, 2) and Mul(d, d)."""
    if _standard(node, "Pow"):
        return node.inputs[0] is d and _scalar(node.inputs[1]) == 2.0
    return _standard(node, "Mul") and node.inputs[0] is d and node.inputs[1] is d


def _match(first: Node, opset: int) -> _Match | None:
    """The pattern (module docstring) starting at ReduceMean `first`, or None."""
    axes = _mean_axes(first, opset)
    x = first.inputs[0] if first.inputs else None
    if axes is None or x is None or (x.dtype is not None and not x.dtype.is_float):
        return None  # (Standardize computes on floats; an integer mean truncates)
    sub = _sole_user(first.outputs[0])
    if sub is None or not _standard(sub, "Sub"):
        return None
    if sub.inputs[0] is not x or sub.inputs[1] is not first.outputs[0]:
        return None
    d = sub.outputs[0]
    if d is None or d.is_graph_output:
        return None
    square = div = None
    for user in d.users:
        if _squares(user, d):
            square = user
        elif _standard(user, "Div") and user.inputs[0] is d and user.inputs[1] is not d:
            div = user
    if square is None or div is None or len(d.users) != 2:
        return None
    second = _sole_user(square.outputs[0])
    if (
        second is None
        or _mean_axes(second, opset) != axes
        or second.inputs[0] is not square.outputs[0]
    ):
        return None
    add = _sole_user(second.outputs[0])
    if not _standard(add, "Add"):
        return None
    v = second.outputs[0]
    other = add.inputs[1] if add.inputs[0] is v else add.inputs[0]  # type: ignore[union-attr]
    epsilon = _scalar(other)
    if epsilon is None or other is v:
        return None
    sqrt = _sole_user(add.outputs[0])  # type: ignore[union-attr]
    if sqrt is None or not _standard(sqrt, "Sqrt") or _sole_user(sqrt.outputs[0]) is not div:
        return None
    if div.inputs[1] is not sqrt.outputs[0] or div.outputs[0] is None:  # type: ignore[union-attr]
        return None
    rank = x.shape.rank if x.tensor_type is not None else None
    ordered = _consecutive(axes, rank)
    if ordered is None:
        return None
    nodes = (div, sqrt, add, second, square, sub, first)
    return _Match(x, div.outputs[0], ordered, epsilon, nodes)  # type: ignore[arg-type]


def _rewrite(graph: Graph, match: _Match) -> None:
    """Replace the matched nodes by one Standardize node computing the same tensor."""
    node = graph.add_node(
        STANDARDIZE_OP,
        [match.x],
        attrs={"axes": list(match.axes), "epsilon": match.epsilon},
        domain=FUSED_DOMAIN,
        name=match.nodes[0].name + "_standardize",
        output_types=[match.y.type],
    )
    match.y.replace_all_uses_with(node.outputs[0])  # type: ignore[arg-type]
    for old in match.nodes:  # readers first
        graph.erase(old)


def standardize(model: Model) -> int:
    """Rewrite every written-out normalization of `model` (module docstring); returns how many."""
    opset = model.opset("")
    found = 0
    for graph in [model.graph, *model.graph.subgraphs()]:
        for node in graph.topological_order():
            if node.graph is not graph:
                continue  # erased by an earlier rewrite
            match = _match(node, opset)
            if match is not None:
                _rewrite(graph, match)
                found += 1
    if found and FUSED_DOMAIN not in model.opset_imports:
        model.opset_imports[FUSED_DOMAIN] = 1
    return found


@register_pass
@dataclass(frozen=True)
class Standardize(Pass):
    """Make each normalization written out in ReduceMean ... Div one `sod2::Standardize`."""

    name = "standardize"

    def run(self, model: Model, context: PassContext) -> PassResult:
        return PassResult.modified() if standardize(model) else PassResult.unchanged()
