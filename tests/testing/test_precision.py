"""The float64 judge: widening a model, and deciding which float32 result is closer."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sod2.testing.precision import (
    closer_than_peer,
    float64_outputs,
    max_error,
    widen_to_float64,
)


def _model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.full((3,), 0.1, np.float32), "w")
    then_graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT)],
        "then",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "w"], ["m"]),
            helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Constant", [], ["t"], value_int=1),
            helper.make_node("Cast", ["t"], ["cond"], to=TensorProto.BOOL),
            helper.make_node("If", ["cond"], ["z"], then_branch=then_graph, else_branch=then_graph),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [3]),
        ],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_widening_turns_every_float32_into_float64_and_nothing_else():
    wide = widen_to_float64(_model())
    assert wide.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    assert wide.graph.initializer[0].data_type == TensorProto.DOUBLE
    assert wide.graph.output[1].type.tensor_type.elem_type == TensorProto.INT64
    casts = [n for n in wide.graph.node if n.op_type == "Cast"]
    assert [a.i for n in casts for a in n.attribute] == [TensorProto.DOUBLE, TensorProto.BOOL]
    branch = next(n for n in wide.graph.node if n.op_type == "If").attribute[0].g
    assert branch.node[0].attribute[0].i == TensorProto.DOUBLE
    assert _model().graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # a copy


def test_float64_outputs_compute_without_float32_rounding():
    x = np.array([1.0, 3.0, 7.0], np.float32)
    outputs = float64_outputs(_model(), {"x": x})
    assert outputs["y"].dtype == np.float64 and outputs["s"].dtype == np.int64
    np.testing.assert_array_equal(outputs["y"], x.astype(np.float64) * np.float64(np.float32(0.1)))
    np.testing.assert_array_equal(outputs["z"], x.astype(np.float64))


def test_the_closer_result_wins_and_ties_go_to_ours():
    exact = np.array([1.0, 2.0, 3.0])
    near = np.array([1.0, 2.0, 3.00001], np.float32)
    far = np.array([1.0, 2.0001, 3.0], np.float32)
    assert closer_than_peer(near, far, exact)
    assert not closer_than_peer(far, near, exact)
    assert closer_than_peer(near, near, exact)
    assert max_error(np.zeros(0, np.float32), np.zeros(0)) == 0.0
