"""Differential tests of the core kernels (elementwise, shape, control flow) against onnxruntime.

Each case is one node with concrete inputs, run by the reference interpreter on the model imported
into sod2's IR (`sod2.testing.differential`). `test_catalogue_coverage.py` checks that every kernel
has a case in some `tests/ops/test_*.py` module.
"""

import numpy as np
import onnx
import pytest
from onnx import helper

from sod2.testing.differential import check_op_against_onnxruntime
from sod2.testing.differential import subgraph as body

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


BOOL, INT64 = onnx.TensorProto.BOOL, onnx.TensorProto.INT64

IF_BRANCHES = {
    "then_branch": body([helper.make_node("Neg", ["in1"], ["t"])], [], ["t"]),
    "else_branch": body([helper.make_node("Relu", ["in1"], ["e"])], [], ["e"]),
}
LOOP_BODY = body(
    [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Add", ["x_in", "in2"], ["x_out"]),
        helper.make_node("Mul", ["x_in", "x_in"], ["square"]),
    ],
    [("i", INT64), ("cond_in", BOOL), "x_in"],
    [("cond_out", BOOL), "x_out", "square"],
)
SCAN_BODY = body(
    [
        helper.make_node("Add", ["sum_in", "row"], ["sum_out"]),
        helper.make_node("Identity", ["sum_out"], ["partial"]),
    ],
    ["sum_in", "row"],
    ["sum_out", "partial"],
)

# (op, inputs, attrs, opset, outputs[, node inputs]): when given, only the first `node inputs`
# inputs feed the node; the others are graph inputs that its subgraphs read from the outer scope.
CASES = [
    ("If", [np.array(True), f32(3)], IF_BRANCHES, 18, 1, 1),
    ("If", [np.array([False]), f32(3)], IF_BRANCHES, 18, 1, 1),
    (
        "Loop",
        [np.array(4, np.int64), np.array(True), f32(2), f32(2)],
        {"body": LOOP_BODY},
        18,
        2,
        3,
    ),
    (
        "Scan",
        [np.zeros(3, np.float32), f32(5, 3)],
        {"body": SCAN_BODY, "num_scan_inputs": 1},
        18,
        2,
    ),
    (
        "Scan",
        [np.zeros(5, np.float32), f32(5, 4)],
        {
            "body": SCAN_BODY,
            "num_scan_inputs": 1,
            "scan_input_axes": [1],
            "scan_input_directions": [1],
            "scan_output_directions": [1],
        },
        18,
        2,
    ),
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
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(sorted(attrs))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""
