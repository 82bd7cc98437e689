"""Fold inference-mode BatchNormalization into the convolution before it, or into Mul and Add.

In inference, BatchNormalization is an affine map per channel:
`y = x * s + t` with `s = scale / sqrt(var + epsilon)` and `t = B - mean * s`. When its four
parameters are constants:
- after a Conv whose weights (and bias) are constants and whose output only the BatchNorm reads,
  the map folds into the Conv: `W'[m] = W[m] * s[m]`, `b' = b * s + t`; the BatchNorm disappears;
- anywhere else it becomes `Mul(x, s) + t` with `s` and `t` shaped `[C, 1, ..., 1]`, which fusion
  then merges with the elementwise ops around it.

BatchNorms in training mode, with a used running-statistics output, or with parameters that are
not constants are left alone. Works at every depth (subgraphs too). Folding changes rounding a
little (the parameters are combined in float64, then rounded once to the weight type).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass


def _constant(tensor: Tensor | None) -> np.ndarray | None:
    if tensor is None or not tensor.is_constant:
        return None
    return tensor.const_value


def _affine(node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) of a foldable inference BatchNorm, or None."""
    if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
        return None
    if node.attr("training_mode", 0):
        return None
    if any(t is not None and t.has_uses() for t in node.outputs[1:]):
        return None
    params = [_constant(t) for t in node.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
    if scale.ndim != 1:
        return None
    s = scale / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
    return s, bias - mean * s


def _fold_into_conv(graph: Graph, bn: Node, s: np.ndarray, t: np.ndarray) -> bool:
    x = bn.inputs[0]
    conv = None if x is None else x.producer
    if conv is None or conv.op_type != "Conv" or conv.graph is not graph:
        return False
    if len(x.uses) != 1 or x.is_graph_output:  # type: ignore[union-attr]
        return False
    weight = _constant(conv.inputs[1])
    if weight is None or weight.shape[0] != len(s) or weight.dtype.kind != "f":
        return False
    bias = (
        _constant(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
    )
    if len(conv.inputs) > 2 and conv.inputs[2] is not None and bias is None:
        return False
    old_bias = np.zeros(len(s)) if bias is None else bias.astype(np.float64)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    new_weight = (weight.astype(np.float64) * s.reshape(shape)).astype(weight.dtype)
    new_bias = (old_bias * s + t).astype(weight.dtype)
    inputs = [conv.inputs[0], graph.add_constant(new_weight), graph.add_constant(new_bias)]
    conv.set_inputs(inputs)
    output = bn.outputs[0]
    if output is not None:
        output.replace_all_uses_with(x)  # type: ignore[arg-type]
    graph.erase(bn)
    return True


def _as_mul_add(graph: Graph, bn: Node, s: np.ndarray, t: np.ndarray) -> bool:
    x = bn.inputs[0]
    rank = None if x is None or x.type is None else x.shape.rank
    output = bn.outputs[0]
    if x is None or output is None or rank is None or rank < 2:
        return False
    dtype = x.dtype.numpy if x.dtype is not None else np.float32
    shape = (len(s),) + (1,) * (rank - 2)
    # (both outputs typed as the BatchNorm's: an untyped one is a value whose element type
    # nothing knows, which fusion would leave out of every group)
    scaled = graph.add_node(
        "Mul",
        [x, graph.add_constant(s.astype(dtype).reshape(shape))],
        output_types=[output.type],
    )
    shifted = graph.add_node(
        "Add",
        [scaled.outputs[0], graph.add_constant(t.astype(dtype).reshape(shape))],
        output_types=[output.type],
    )
    output.replace_all_uses_with(shifted.outputs[0])  # type: ignore[arg-type]
    graph.erase(bn)
    return True


def fold_batchnorm(model: Model) -> int:
    """Fold every foldable BatchNormalization (module docstring); returns how many."""
    folded = 0
    for graph in [model.graph, *model.graph.subgraphs()]:
        for node in graph.topological_order():
            affine = _affine(node)
            if affine is None:
                continue
            if _fold_into_conv(graph, node, *affine) or _as_mul_add(graph, node, *affine):
                folded += 1
    return folded


@register_pass
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold inference BatchNormalization into the Conv before it, or into Mul and Add."""

    name = "fold-batchnorm"

    def run(self, model: Model, context: PassContext) -> PassResult:
        return PassResult.modified() if fold_batchnorm(model) else PassResult.unchanged()
