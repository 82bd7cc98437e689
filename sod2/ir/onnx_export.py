"""ONNX export: `Model` -> `ModelProto`.

The inverse of import, plus what sod2 learned: every tensor with a known type is written into
`value_info`, symbolic dims as `dim_param` text (`2*H`, `floor(W/2) + 1`) that import reads back
as the same expression.

- Nodes are written in topological order (ONNX requires it), programs order where it already is.
- Top-level constants become initializers; constants of subgraphs become `Constant` nodes at the top
  of their subgraph, which every runtime accepts. Inputs with a default value are written as an
  input plus an initializer of the same name.
- For IR versions below 4 (where ONNX wants every initializer listed as an input) constants are
  listed as inputs too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sod2.errors import OnnxExportError
from sod2.ir.attributes import Attribute, AttrKind, SparseTensor
from sod2.ir.dims import format_dim
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ir.types import (
    MapType,
    OptionalType,
    SequenceType,
    Shape,
    SparseTensorType,
    TensorType,
    Type,
)

_PROTOBUF_LIMIT = 2**31 - 2**24  # stay clear of protobuf's 2 GiB message limit


def to_onnx(model: Model) -> onnx.ModelProto:
    """The `ModelProto` of `model`, with every known type in `value_info`."""
    graph = _graph_to_onnx(model.graph, top_level=True, ir_version=model.ir_version)
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()],
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
    )
    proto.ir_version = model.ir_version
    for key, value in model.metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if _untyped_outputs(proto.graph):
        proto = _fill_output_types(proto)
    return proto


def save(model: Model, path: str | os.PathLike, *, external_data: bool | None = None) -> None:
    """Write `model` to `path`; large models (or `external_data=True`) keep weights beside it."""
    proto = to_onnx(model)
    if external_data is None:
        external_data = proto.ByteSize() > _PROTOBUF_LIMIT
    target = Path(path)
    try:
        onnx.save_model(
            proto,
            str(target),
            save_as_external_data=external_data,
            all_tensors_to_one_file=True,
            location=target.name + ".data",
        )
    except (OSError, ValueError) as error:
        raise OnnxExportError(f"{target}: cannot write the model: {error}") from error


def _untyped_outputs(graph: onnx.GraphProto) -> list[str]:
    """Names of outputs without a type, in `graph` and its subgraphs (ONNX requires them)."""
    missing = [out.name for out in graph.output if not out.HasField("type")]
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                missing += _untyped_outputs(sub)
    return missing


def _fill_output_types(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Type the outputs sod2 left untyped with onnx's own inference; fail if that cannot."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception as error:
        raise OnnxExportError(
            f"outputs {_untyped_outputs(proto.graph)} have no type and onnx shape inference "
            f"failed: {error}"
        ) from error
    _copy_output_types(proto.graph, inferred.graph)
    missing = _untyped_outputs(proto.graph)
    if missing:
        raise OnnxExportError(
            f"outputs {missing} have no known type; give them types (or run shape inference) "
            f"before export"
        )
    return proto


def _copy_output_types(graph: onnx.GraphProto, inferred: onnx.GraphProto) -> None:
    """Copy output types from `inferred`, the same graph after onnx shape inference."""
    known = {v.name: v.type for v in [*inferred.value_info, *inferred.output] if v.HasField("type")}
    for out in graph.output:
        if not out.HasField("type") and out.name in known:
            out.type.CopyFrom(known[out.name])
    for node, inferred_node in zip(graph.node, inferred.node, strict=True):
        for attr, inferred_attr in zip(node.attribute, inferred_node.attribute, strict=True):
            subs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            inferred_subs = (
                [inferred_attr.g] if inferred_attr.HasField("g") else list(inferred_attr.graphs)
            )
            for sub, inferred_sub in zip(subs, inferred_subs, strict=True):
                _copy_output_types(sub, inferred_sub)


# -- graphs ----------------------------------------------------------------------------------


def _graph_to_onnx(graph: Graph, *, top_level: bool, ir_version: int) -> onnx.GraphProto:
    nodes = []
    initializers = []
    for tensor in graph.inputs:
        if tensor.const_value is not None:
            initializers.append(_array_to_onnx(tensor.const_value, tensor.name))
    for tensor in graph.constants:
        assert tensor.const_value is not None
        if top_level:
            initializers.append(_array_to_onnx(tensor.const_value, tensor.name))
        else:
            nodes.append(
                onnx.helper.make_node(
                    "Constant", [], [tensor.name], value=_array_to_onnx(tensor.const_value, "")
                )
            )
    try:
        order = graph.topological_order()
    except Exception as error:
        raise OnnxExportError(f"cannot export graph {graph.name!r}: {error}") from error
    nodes.extend(_node_to_onnx(node, ir_version) for node in order)
    inputs = [_value_info(t) for t in graph.inputs]
    if top_level and ir_version < 4:
        inputs += [_value_info(t) for t in graph.constants]
    outputs = [_value_info(t) for t in graph.outputs]
    listed = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    value_info = [
        _value_info(tensor)
        for node in order
        for tensor in node.outputs
        if tensor is not None and tensor.type is not None and tensor.name not in listed
    ]
    proto = onnx.helper.make_graph(
        nodes,
        graph.name,
        inputs,
        outputs,
        initializer=initializers,
        value_info=value_info,
        doc_string=graph.doc_string or None,
    )
    return proto


def _node_to_onnx(node: Node, ir_version: int) -> onnx.NodeProto:
    proto = onnx.NodeProto()
    proto.op_type = node.op_type
    proto.domain = node.domain
    proto.name = node.name
    if node.doc_string:
        proto.doc_string = node.doc_string
    proto.input.extend("" if t is None else t.name for t in node.inputs)
    proto.output.extend("" if t is None else t.name for t in node.outputs)
    for key, attr in node.attrs.items():
        proto.attribute.append(attribute_to_onnx(key, attr, ir_version))
    return proto


def attribute_to_onnx(name: str, attr: Attribute, ir_version: int = 10) -> onnx.AttributeProto:
    """The `AttributeProto` of a typed attribute."""
    proto = onnx.AttributeProto()
    proto.name = name
    proto.type = int(attr.kind)
    value = attr.value
    match attr.kind:
        case AttrKind.FLOAT:
            proto.f = value
        case AttrKind.INT:
            proto.i = value
        case AttrKind.STRING:
            proto.s = _bytes(value)
        case AttrKind.TENSOR:
            proto.t.CopyFrom(_array_to_onnx(value, ""))
        case AttrKind.GRAPH:
            proto.g.CopyFrom(_graph_to_onnx(value, top_level=False, ir_version=ir_version))
        case AttrKind.SPARSE_TENSOR:
            proto.sparse_tensor.CopyFrom(_sparse_to_onnx(value))
        case AttrKind.TYPE_PROTO:
            proto.tp.CopyFrom(type_to_onnx(value))
        case AttrKind.FLOATS:
            proto.floats.extend(value)
        case AttrKind.INTS:
            proto.ints.extend(value)
        case AttrKind.STRINGS:
            proto.strings.extend(_bytes(v) for v in value)
        case AttrKind.TENSORS:
            proto.tensors.extend(_array_to_onnx(v, "") for v in value)
        case AttrKind.GRAPHS:
            proto.graphs.extend(
                _graph_to_onnx(g, top_level=False, ir_version=ir_version) for g in value
            )
        case AttrKind.SPARSE_TENSORS:
            proto.sparse_tensors.extend(_sparse_to_onnx(v) for v in value)
        case AttrKind.TYPE_PROTOS:
            proto.type_protos.extend(type_to_onnx(v) for v in value)
    return proto


# -- types and values ------------------------------------------------------------------------


def _value_info(tensor: Tensor) -> onnx.ValueInfoProto:
    info = onnx.ValueInfoProto()
    info.name = tensor.name
    if tensor.type is not None:
        info.type.CopyFrom(type_to_onnx(tensor.type))
    return info


def type_to_onnx(value_type: Type | None) -> onnx.TypeProto:
    """The `TypeProto` of an IR type (an empty one for None)."""
    proto = onnx.TypeProto()
    if value_type is None:
        return proto
    if isinstance(value_type, (TensorType, SparseTensorType)):
        inner = (
            proto.tensor_type if isinstance(value_type, TensorType) else proto.sparse_tensor_type
        )
        inner.elem_type = 0 if value_type.dtype is None else value_type.dtype.onnx
        _shape_to_onnx(value_type.shape, inner)
    elif isinstance(value_type, SequenceType):
        proto.sequence_type.SetInParent()
        if value_type.element is not None:
            proto.sequence_type.elem_type.CopyFrom(type_to_onnx(value_type.element))
    elif isinstance(value_type, OptionalType):
        proto.optional_type.SetInParent()
        if value_type.element is not None:
            proto.optional_type.elem_type.CopyFrom(type_to_onnx(value_type.element))
    elif isinstance(value_type, MapType):
        proto.map_type.key_type = value_type.key.onnx
        proto.map_type.value_type.CopyFrom(type_to_onnx(value_type.value))
    else:
        raise OnnxExportError(f"cannot export type {value_type!r}")
    return proto


def _shape_to_onnx(shape: Shape, inner: onnx.TypeProto.Tensor) -> None:
    if shape.dims is None:
        return
    inner.shape.SetInParent()
    for dim in shape.dims:
        entry = inner.shape.dim.add()
        if isinstance(dim, int):
            entry.dim_value = dim
        else:
            entry.dim_param = format_dim(dim)


def _array_to_onnx(value: np.ndarray, name: str) -> onnx.TensorProto:
    try:
        return numpy_helper.from_array(value, name)
    except Exception as error:
        raise OnnxExportError(
            f"cannot export tensor value {name!r} of dtype {value.dtype}: {error}"
        ) from error


def _sparse_to_onnx(value: SparseTensor) -> onnx.SparseTensorProto:
    return onnx.helper.make_sparse_tensor(
        _array_to_onnx(value.values, ""), _array_to_onnx(value.indices, ""), list(value.dims)
    )


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
