"""Who is closer to the exact answer: a float64 run as the judge of float32 disagreements.

Two float32 runtimes that sum in different orders disagree by rounding error, and on deep models
(a VAE decoder: dozens of convolutions and group norms) that error can exceed a fixed tolerance
such as rtol 1e-4, atol 1e-5, for both of them. A disagreement then says nothing about which one
is wrong. This module settles it: the model is *widened* (every float32 initializer, constant,
declared type and Cast target becomes float64), run by the reference interpreter on the same
inputs widened, and each float32 result is measured against that float64 answer.

`closer_than_peer` is the check the tests use: an output that differs from the peer's beyond the
tolerance is still accepted when its own error against float64 is no larger than the peer's (so the
disagreement is the peer's rounding, not ours). Integer and boolean outputs are never widened: they
must match exactly.

Invariants: widening never changes the model's structure, names or non-float32 types; the float64
run is the reference interpreter's, the oracle of every other test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, numpy_helper

from sod2.backend.reference import run_reference
from sod2.ir import load


def widen_to_float64(proto: ModelProto) -> ModelProto:
    """A copy of `proto` computing in float64 wherever it computed in float32."""
    wide = ModelProto()
    wide.CopyFrom(proto)
    _widen_graph(wide.graph)
    return wide


def _widen_tensor(tensor: TensorProto) -> None:
    if tensor.data_type == TensorProto.FLOAT:
        array = numpy_helper.to_array(tensor).astype(np.float64)
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def _widen_graph(graph: GraphProto) -> None:
    for initializer in graph.initializer:
        _widen_tensor(initializer)
    for info in [*graph.input, *graph.output, *graph.value_info]:
        _widen_type(info.type)
    for node in graph.node:
        for attribute in node.attribute:
            if (
                node.op_type == "Cast"
                and attribute.name == "to"
                and attribute.i == TensorProto.FLOAT
            ):
                attribute.i = TensorProto.DOUBLE
            if attribute.type == AttributeProto.TENSOR:
                _widen_tensor(attribute.t)
            if attribute.type == AttributeProto.GRAPH:
                _widen_graph(attribute.g)
            for subgraph in attribute.graphs:
                _widen_graph(subgraph)


def _widen_type(type_proto: onnx.TypeProto) -> None:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type" and type_proto.tensor_type.elem_type == TensorProto.FLOAT:
        type_proto.tensor_type.elem_type = TensorProto.DOUBLE
    elif kind == "sequence_type":
        _widen_type(type_proto.sequence_type.elem_type)
    elif kind == "optional_type":
        _widen_type(type_proto.optional_type.elem_type)


def float64_outputs(proto: ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of `proto` computed in float64 by the reference interpreter (float32 feeds
    widened first)."""
    model = load(widen_to_float64(proto), check=False)
    wide = {
        name: value.astype(np.float64) if value.dtype == np.float32 else value
        for name, value in feeds.items()
    }
    return run_reference(model, wide).outputs


def max_error(value: np.ndarray, exact: np.ndarray) -> float:
    """The largest absolute difference between `value` and `exact`, in float64."""
    if value.size == 0:
        return 0.0
    return float(np.max(np.abs(value.astype(np.float64) - exact)))


def closer_than_peer(ours: np.ndarray, peer: np.ndarray, exact: np.ndarray) -> bool:
    """True when `ours` is no farther from `exact` than `peer` is."""
    return max_error(ours, exact) <= max_error(peer, exact)
