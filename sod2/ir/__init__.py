"""sod2's intermediate representation: a small typed dataflow IR built on networkx.

Values (`DType`, `Dim`, `Shape`, `TensorType`, `Attribute`) are immutable; entities (`Tensor`,
`Node`, `Graph`, `Model`) are compared by identity and edited through an API that keeps
producers and users consistent. `verify` checks the invariants; `format_graph` prints; `load` and
`save` read and write ONNX.
"""

from sod2.ir.attributes import Attribute, AttrKind, SparseTensor
from sod2.ir.dims import Dim, as_dim, evaluate_dim, format_dim, is_static, parse_dim, symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node, Tensor, Use
from sod2.ir.model import Model
from sod2.ir.onnx_export import save, to_onnx
from sod2.ir.onnx_import import from_onnx, load
from sod2.ir.printer import format_graph, format_model, format_node
from sod2.ir.types import (
    MapType,
    OptionalType,
    SequenceType,
    Shape,
    SparseTensorType,
    TensorType,
    Type,
    tensor_type,
)
from sod2.ir.verifier import find_problems, verify

__all__ = [
    "AttrKind",
    "Attribute",
    "DType",
    "Dim",
    "Graph",
    "MapType",
    "Model",
    "Node",
    "OptionalType",
    "SequenceType",
    "Shape",
    "SparseTensor",
    "SparseTensorType",
    "Tensor",
    "TensorType",
    "Type",
    "Use",
    "as_dim",
    "evaluate_dim",
    "find_problems",
    "format_dim",
    "format_graph",
    "format_model",
    "format_node",
    "from_onnx",
    "is_static",
    "load",
    "parse_dim",
    "save",
    "symbol",
    "tensor_type",
    "to_onnx",
    "verify",
]
