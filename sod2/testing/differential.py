"""Differential testing of single operators against onnxruntime.

`check_op_against_onnxruntime(op, inputs, attrs, opset, outputs)` builds a one-node ONNX model
(inputs beyond `node_inputs` become graph inputs that subgraphs read from the outer scope), runs it
with onnxruntime and with sod2's reference interpreter, and returns why they differ ("" when they
agree). `subgraph(...)` builds bodies for If, Loop and Scan cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime


def one_node_model(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any],
    opset: int,
    outputs: int,
    node_inputs: int | None = None,
    domain: str = "",
) -> onnx.ModelProto:
    """A model with one `op` node; its outputs' types come from onnx shape inference."""
    names = ["" if v is None else f"in{i}" for i, v in enumerate(inputs)]
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
        for name, v in zip(names, inputs, strict=True)
        if v is not None
    ]
    node_attrs = {key: _attribute_value(value) for key, value in attrs.items()}
    node = helper.make_node(
        op, names[:node_inputs], [f"out{i}" for i in range(outputs)], domain=domain, **node_attrs
    )
    graph_outputs = [helper.make_value_info(f"out{i}", onnx.TypeProto()) for i in range(outputs)]
    graph = helper.make_graph([node], "case", graph_inputs, graph_outputs)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _attribute_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return helper.make_tensor(
            "value",
            helper.np_dtype_to_tensor_dtype(value.dtype),
            value.shape,
            value.reshape(-1).tolist(),
        )
    return value


def subgraph(
    nodes: list[onnx.NodeProto], inputs: Sequence[Any], outputs: Sequence[Any]
) -> onnx.GraphProto:
    """A body graph: plain names are float32 of unknown shape, (name, elem type) pairs scalars."""

    def info(item: Any) -> onnx.ValueInfoProto:
        if isinstance(item, tuple):
            return helper.make_tensor_value_info(item[0], item[1], [])
        return helper.make_tensor_value_info(item, onnx.TensorProto.FLOAT, None)

    return helper.make_graph(nodes, "body", [info(i) for i in inputs], [info(o) for o in outputs])


def check_op_against_onnxruntime(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any],
    opset: int,
    outputs: int = 1,
    node_inputs: int | None = None,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> str:
    """Why sod2's reference result differs from onnxruntime's for one node ("" if it does not)."""
    proto = one_node_model(op, inputs, attrs, opset, outputs, node_inputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    expected = run_onnxruntime(proto, feeds)
    model = load(proto, check=False)  # outputs may lack a shape, which the checker wants
    actual = list(run_reference(model, feeds).outputs.values())
    return outputs_mismatch(expected, actual, rtol=rtol, atol=atol)
