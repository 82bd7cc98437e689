"""Write what RDP proved onto the IR: every tensor's element type and symbolic shape.

After this pass, `Tensor.type` holds RDP's facts (export writes them into `value_info`, symbolic
dims as `dim_param` expressions), so sod2 can stand in for onnxruntime's symbolic shape inference.
Model inputs get the values RDP learned for their unnamed dims (an input `[N, ?]` read by a MatMul
with 64-row weights becomes `[N, 64]`). Sequence and optional values keep their declared types.
"""

from __future__ import annotations

from dataclasses import dataclass

from sod2.analysis.rdp import RDP, RDPResult
from sod2.ir.graph import Tensor
from sod2.ir.model import Model
from sod2.ir.types import TensorType
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class InferShapes(Pass):
    """Annotate every tensor with the type and symbolic shape RDP proves."""

    name = "infer-shapes"

    def run(self, model: Model, context: PassContext) -> PassResult:
        result = context.analyses.get(RDP, model)
        changed = False
        for graph in [model.graph, *model.graph.subgraphs()]:
            for tensor in graph.tensors():
                changed |= _annotate(tensor, result)
        return PassResult.modified(preserved=(RDP,)) if changed else PassResult.unchanged()


def _annotate(tensor: Tensor, result: RDPResult) -> bool:
    fact = result.facts.get(tensor)
    if fact is None or not (tensor.type is None or isinstance(tensor.type, TensorType)):
        return False
    if tensor.is_constant:
        return False
    old = tensor.tensor_type
    dtype = fact.dtype if fact.dtype is not None else (None if old is None else old.dtype)
    shape = fact.shape if fact.shape.dims is not None or old is None else old.shape
    new = TensorType(dtype, shape)
    if new == old:
        return False
    tensor.type = new
    return True
