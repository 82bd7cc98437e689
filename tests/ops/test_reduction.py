"""Differential tests of the reduction kernels against onnxruntime.

Every Reduce* operator runs with its axes as an attribute (opset 11) and as an input (opset 18,
13 for ReduceSum), with keepdims on and off, negative axes, no axes, noop_with_empty_axes, empty
reductions (whose identities ONNX defines), integer and narrow float inputs. ArgMax / ArgMin run
with ties both ways of select_last_index; CumSum / CumProd with every exclusive/reverse pair.
"""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(3)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def positive(*shape):
    return rng.uniform(0.5, 2.0, shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def ints(low, high, *shape, dtype=np.int32):
    return rng.integers(low, high, shape).astype(dtype)


REDUCE_OPS = (
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
)


def axes_input_opset(op):
    return 13 if op == "ReduceSum" else 18


def data_for(op, *shape):
    """ReduceLogSum needs positive sums."""
    return positive(*shape) if op == "ReduceLogSum" else f32(*shape)


def reduce_cases(op):
    new = axes_input_opset(op)
    return [
        (op, [data_for(op, 3, 4, 5)], {"axes": [1]}, 11, 1),
        (op, [data_for(op, 3, 4, 5)], {"axes": [0, -1], "keepdims": 0}, 11, 1),
        (op, [data_for(op, 2, 3)], {}, 11, 1),
        (op, [data_for(op, 3, 4, 5), i64(-2)], {}, new, 1),
        (op, [data_for(op, 2, 3, 2, 2), i64(0, 2)], {"keepdims": 0}, new, 1),
        (op, [data_for(op, 6, 2)], {}, new, 1),
        (op, [data_for(op, 6, 2), i64()], {"keepdims": 0}, new, 1),
        (op, [data_for(op, 3, 2), i64()], {"noop_with_empty_axes": 1}, new, 1),
        (op, [data_for(op, 1, 7, 1), i64(1)], {}, new, 1),
        (op, [data_for(op, 4).astype(np.float16), i64(0)], {}, new, 1),
        (op, [data_for(op, 2, 5).astype(np.float64), i64(1)], {"keepdims": 0}, new, 1),
    ]


# Reductions over an empty set: ONNX defines the result (0, 1, -inf, the type's extremes).
EMPTY_CASES = [
    (op, [np.zeros((2, 0, 4), np.float32), i64(1)], {}, axes_input_opset(op), 1)
    for op in REDUCE_OPS
    if op != "ReduceMean"  # ONNX leaves the mean of nothing undefined
] + [
    ("ReduceSum", [np.zeros((2, 0, 4), np.float32), i64(2)], {}, 13, 1),
    ("ReduceMax", [np.zeros((3, 0), np.int32), i64(1)], {"keepdims": 0}, 18, 1),
    ("ReduceMin", [np.zeros((3, 0), np.int64), i64(1)], {"keepdims": 0}, 18, 1),
    ("ReduceProd", [np.zeros((0, 2), np.int32), i64(0)], {}, 18, 1),
]

INTEGER_CASES = [
    ("ReduceSum", [ints(-50, 50, 3, 4), i64(1)], {}, 13, 1),
    ("ReduceSum", [ints(-50, 50, 3, 4, dtype=np.int64)], {"axes": [0]}, 11, 1),
    ("ReduceMean", [ints(-50, 50, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceMean", [ints(-50, 50, 2, 5, dtype=np.int64), i64(0, 1)], {"keepdims": 0}, 18, 1),
    ("ReduceMax", [ints(-50, 50, 3, 4), i64(0)], {}, 18, 1),
    ("ReduceMin", [ints(-50, 50, 3, 4, dtype=np.int64), i64(-1)], {}, 18, 1),
    ("ReduceMax", [ints(0, 200, 5, 2, dtype=np.uint8), i64(0)], {}, 18, 1),
    ("ReduceMin", [ints(-100, 100, 5, 2, dtype=np.int8), i64(1)], {}, 18, 1),
    ("ReduceProd", [ints(-4, 5, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceL1", [ints(-50, 50, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceL2", [ints(-50, 50, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceSumSquare", [ints(-50, 50, 3, 4, dtype=np.int64), i64(1)], {}, 18, 1),
    ("ReduceLogSum", [ints(1, 50, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceLogSumExp", [ints(-5, 50, 3, 4), i64(1)], {}, 18, 1),
    ("ReduceMax", [np.array([[True, False], [False, False]]), i64(1)], {}, 20, 1),
    ("ReduceMin", [np.array([[True, False], [True, True]]), i64(1)], {"keepdims": 0}, 20, 1),
]

ARG_CASES = [
    *[
        (op, [data], attrs, opset, 1)
        for op in ("ArgMax", "ArgMin")
        for data, attrs, opset in (
            (f32(3, 4), {}, 11),
            (f32(3, 4, 2), {"axis": -1, "keepdims": 0}, 11),
            (np.array([[2, 1, 2], [0, 0, -1]], np.float32), {"axis": 1}, 12),
            (
                np.array([[2, 1, 2], [0, 0, -1]], np.float32),
                {"axis": 1, "select_last_index": 1},
                12,
            ),
            (ints(0, 3, 4, 5), {"axis": 0, "select_last_index": 1}, 13),
            (ints(0, 3, 4, 5, dtype=np.int64), {"axis": 1, "keepdims": 0}, 13),
            (f32(6).astype(np.float64), {}, 13),
            (f32(2, 0, 3), {"axis": 2}, 13),
        )
    ],
]

CUMULATIVE_CASES = [
    *[
        (op, [data, axis], attrs, opset, 1)
        for op, opset, data in (
            ("CumSum", 11, f32(3, 4)),
            ("CumSum", 14, f32(2, 3, 4)),
            ("CumProd", 26, positive(2, 3, 4)),
        )
        for axis in (np.array(1, np.int64), np.array(-1, np.int32))
        for attrs in ({}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1})
    ],
    ("CumSum", [ints(-9, 9, 6), np.array(0, np.int32)], {}, 14, 1),
    ("CumSum", [ints(-9, 9, 2, 3, dtype=np.int64), i64(0)], {"exclusive": 1}, 11, 1),
    ("CumSum", [f32(4, 0), i64(1)], {}, 14, 1),
    ("CumSum", [f32(5).astype(np.float64), i64(0)], {"reverse": 1}, 14, 1),
    ("CumProd", [ints(-3, 4, 2, 5), i64(1)], {"exclusive": 1}, 26, 1),
    ("CumProd", [ints(1, 4, 5, dtype=np.int64), np.array(0, np.int32)], {"reverse": 1}, 26, 1),
]

CASES = [
    *[case for op in REDUCE_OPS for case in reduce_cases(op)],
    *EMPTY_CASES,
    *INTEGER_CASES,
    ("ReduceLogSumExp", [f32(2, 6) * 1000, i64(1)], {}, 18, 1),
    ("ReduceLogSumExp", [np.full((2, 3), -np.inf, np.float32), i64(1)], {}, 18, 1),
    ("ReduceMax", [f32(3, 3), i64(0, -1)], {}, 18, 1),
    *ARG_CASES,
    *CUMULATIVE_CASES,
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join(f"{v.dtype}{list(v.shape)}" for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""
