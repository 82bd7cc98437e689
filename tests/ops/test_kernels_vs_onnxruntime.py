"""Differential tests: every reference kernel in the catalogue agrees with onnxruntime.

Each case is one node with concrete inputs; the kernel runs on the node imported into sod2's IR.
`test_every_kernel_has_a_case` keeps the table complete as the catalogue grows.
"""

import numpy as np
import onnx
import pytest
from onnx import helper

from sod2.ir import load
from sod2.ops import KernelContext, catalogue, lookup_node
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


# (op, inputs, attrs, opset, outputs)
CASES = [
    ("Add", [f32(2, 3), f32(3)], {}, 18, 1),
    ("Add", [ints(-5, 5, 4), ints(-5, 5, 1)], {}, 18, 1),
    ("Sub", [f32(2, 1, 4), f32(3, 1)], {}, 18, 1),
    ("Mul", [ints(-9, 9, 2, 3, dtype=np.int32), ints(-9, 9, 3, dtype=np.int32)], {}, 18, 1),
    ("Div", [f32(5), f32(5)], {}, 18, 1),
    ("Div", [i64(7, -7, 7, -7, 0), i64(2, 2, -2, -2, 3)], {}, 18, 1),
    ("Mod", [i64(7, -7, 7, -7), i64(3, 3, -3, -3)], {}, 18, 1),
    ("Mod", [i64(7, -7, 7, -7), i64(3, 3, -3, -3)], {"fmod": 1}, 18, 1),
    ("Mod", [f32(6) * 5, f32(6) + 3], {"fmod": 1}, 18, 1),
    ("Pow", [np.abs(f32(4)) + 0.5, f32(4)], {}, 18, 1),
    ("Pow", [i64(2, 3, -2), i64(3, 2, 3)], {}, 18, 1),
    ("Equal", [i64(1, 2, 3), i64(1, 0, 3)], {}, 18, 1),
    ("Less", [f32(3, 2), f32(2)], {}, 18, 1),
    ("Greater", [f32(3), f32(3)], {}, 18, 1),
    ("LessOrEqual", [i64(1, 2, 3), i64(2)], {}, 18, 1),
    ("GreaterOrEqual", [i64(1, 2, 3), i64(2)], {}, 18, 1),
    ("And", [np.array([True, False, True]), np.array([True, True, False])], {}, 18, 1),
    ("Or", [np.array([True, False, False]), np.array([False])], {}, 18, 1),
    ("Xor", [np.array([True, False]), np.array([True, True])], {}, 18, 1),
    ("Not", [np.array([True, False])], {}, 18, 1),
    ("BitwiseAnd", [ints(0, 64, 5, dtype=np.int32), ints(0, 64, 5, dtype=np.int32)], {}, 18, 1),
    ("BitwiseOr", [ints(0, 64, 5, dtype=np.uint8), ints(0, 64, 5, dtype=np.uint8)], {}, 18, 1),
    ("BitwiseXor", [ints(0, 64, 5, dtype=np.int64), ints(0, 64, 5, dtype=np.int64)], {}, 18, 1),
    ("BitwiseNot", [ints(0, 64, 5, dtype=np.int32)], {}, 18, 1),
    ("Neg", [f32(3, 2)], {}, 18, 1),
    ("Abs", [ints(-5, 5, 6, dtype=np.int32)], {}, 18, 1),
    ("Sqrt", [np.abs(f32(5))], {}, 18, 1),
    ("Exp", [f32(5)], {}, 18, 1),
    ("Log", [np.abs(f32(5)) + 0.1], {}, 18, 1),
    ("Floor", [f32(5) * 3], {}, 18, 1),
    ("Ceil", [f32(5) * 3], {}, 18, 1),
    ("Reciprocal", [f32(5) + 3], {}, 18, 1),
    ("Sign", [np.array([-2.0, 0.0, 3.5], dtype=np.float32)], {}, 18, 1),
    ("Round", [np.array([0.5, 1.5, 2.5, -0.5, -1.4, 2.6], dtype=np.float32)], {}, 18, 1),
    ("Relu", [f32(4, 3)], {}, 18, 1),
    ("Sigmoid", [f32(4, 3)], {}, 18, 1),
    ("Tanh", [f32(4)], {}, 18, 1),
    ("Erf", [f32(6)], {}, 18, 1),
    ("Identity", [f32(2, 2)], {}, 18, 1),
    ("Max", [f32(2, 3), f32(3), f32(1)], {}, 18, 1),
    ("Min", [ints(-5, 5, 4), ints(-5, 5, 4)], {}, 18, 1),
    ("Sum", [f32(2, 3), f32(2, 3)], {}, 18, 1),
    ("Mean", [f32(2, 3), f32(3), f32(2, 1)], {}, 18, 1),
    ("Where", [np.array([[True], [False]]), f32(2, 3), f32(3)], {}, 18, 1),
    ("Clip", [f32(8), np.array(-0.5, np.float32), np.array(0.5, np.float32)], {}, 18, 1),
    ("Clip", [f32(8), None, np.array(0.1, np.float32)], {}, 18, 1),
    ("Clip", [f32(8)], {"min": -0.2, "max": 0.3}, 9, 1),
    ("Shape", [f32(2, 3, 4)], {}, 18, 1),
    ("Shape", [f32(2, 3, 4)], {"start": 1, "end": -1}, 18, 1),
    ("Size", [f32(2, 3, 4)], {}, 18, 1),
    ("Reshape", [f32(2, 3, 4), i64(0, -1)], {}, 18, 1),
    ("Reshape", [f32(2, 3, 4), i64(4, 0, 2)], {}, 18, 1),
    ("Flatten", [f32(2, 3, 4)], {"axis": 2}, 18, 1),
    ("Flatten", [f32(2, 3, 4)], {"axis": -3}, 18, 1),
    ("Squeeze", [f32(1, 3, 1), i64(-1)], {}, 18, 1),
    ("Squeeze", [f32(1, 3, 1)], {}, 18, 1),
    ("Squeeze", [f32(1, 3, 1)], {"axes": [0]}, 11, 1),
    ("Unsqueeze", [f32(3, 4), i64(0, -1)], {}, 18, 1),
    ("Unsqueeze", [f32(3, 4)], {"axes": [1]}, 11, 1),
    ("Concat", [f32(2, 3), f32(4, 3)], {"axis": -2}, 18, 1),
    ("Split", [f32(6, 2), i64(2, 4)], {"axis": 0}, 18, 2),
    ("Split", [f32(7, 2)], {"axis": 0, "num_outputs": 3}, 18, 3),
    ("Split", [f32(6, 2)], {"axis": 0}, 11, 3),
    ("Gather", [f32(5, 3), i64(0, -1, 2)], {"axis": 0}, 18, 1),
    ("Gather", [f32(5, 3), np.array([[1, 0], [2, 2]], np.int64)], {"axis": 1}, 18, 1),
    ("Slice", [f32(6, 5), i64(1, -4), i64(5, 100), i64(0, 1), i64(2, 1)], {}, 18, 1),
    ("Slice", [f32(6, 5), i64(-1), i64(-9223372036854775807), i64(0), i64(-2)], {}, 18, 1),
    ("Slice", [f32(6, 5)], {"starts": [1], "ends": [3], "axes": [1]}, 9, 1),
    ("Transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]}, 18, 1),
    ("Transpose", [f32(2, 3, 4)], {}, 18, 1),
    ("Range", [np.array(1, np.int64), np.array(10, np.int64), np.array(3, np.int64)], {}, 18, 1),
    (
        "Range",
        [np.array(1.0, np.float32), np.array(-2.0, np.float32), np.array(-0.75, np.float32)],
        {},
        18,
        1,
    ),
    ("ConstantOfShape", [i64(2, 3)], {}, 18, 1),
    ("ConstantOfShape", [i64(2)], {"value": np.array([7], np.int64)}, 18, 1),
    ("Expand", [f32(3, 1), i64(2, 1, 4)], {}, 18, 1),
    ("Tile", [f32(2, 3), i64(2, 1)], {}, 18, 1),
    ("Cast", [f32(6) * 4], {"to": onnx.TensorProto.INT32}, 18, 1),
    ("Cast", [ints(-3, 3, 4)], {"to": onnx.TensorProto.FLOAT}, 18, 1),
    ("Cast", [f32(4)], {"to": onnx.TensorProto.BOOL}, 18, 1),
    ("CastLike", [ints(-3, 3, 4), f32(1)], {}, 18, 1),
]


def _case_id(case):
    op, inputs, attrs, opset, _ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(sorted(attrs))}"


def one_node_model(op, inputs, attrs, opset, outputs):
    names = ["" if v is None else f"in{i}" for i, v in enumerate(inputs)]
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
        for name, v in zip(names, inputs, strict=True)
        if v is not None
    ]
    attrs = {
        k: helper.make_tensor("value", helper.np_dtype_to_tensor_dtype(v.dtype), v.shape, v)
        if isinstance(v, np.ndarray)
        else v
        for k, v in attrs.items()
    }
    node = helper.make_node(op, names, [f"out{i}" for i in range(outputs)], **attrs)
    graph_outputs = [helper.make_value_info(f"out{i}", onnx.TypeProto()) for i in range(outputs)]
    graph = helper.make_graph([node], "case", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    op, inputs, attrs, opset, outputs = case
    proto = one_node_model(op, inputs, attrs, opset, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    expected = run_onnxruntime(proto, feeds)
    model = load(proto, check=False)  # outputs may lack a shape, which the checker wants
    (node,) = model.graph.nodes
    kernel = lookup_node(node, opset).kernel
    actual = list(kernel(KernelContext(node, opset), inputs))
    assert outputs_mismatch(expected, actual, rtol=1e-6, atol=1e-6) == ""


def test_every_kernel_has_a_case():
    tested = {op for op, *_ in CASES}
    registered = {op for (_, op) in catalogue()}
    assert registered - tested == set()
