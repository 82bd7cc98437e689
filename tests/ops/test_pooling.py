"""Differential tests of the pooling kernels against onnxruntime: MaxPool (with Indices),
AveragePool, LpPool, the global poolings and MaxUnpool; pads, strides, dilations, ceil_mode and
every auto_pad, in 1-D, 2-D and 3-D."""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


K2, K3 = {"kernel_shape": [2, 2]}, {"kernel_shape": [3, 3]}

# (op, inputs, attrs, opset, outputs)
CASES = [
    # MaxPool
    ("MaxPool", [f32(1, 2, 6, 6)], K2, 12, 1),
    ("MaxPool", [f32(2, 3, 7, 8)], {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, 12, 1),
    ("MaxPool", [f32(1, 2, 7, 8)], {**K3, "strides": [2, 2], "ceil_mode": 1}, 12, 1),
    (
        "MaxPool",
        [f32(1, 1, 5, 5)],
        {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        12,
        1,
    ),
    ("MaxPool", [f32(1, 2, 9, 9)], {**K3, "dilations": [2, 2], "pads": [1, 2, 1, 2]}, 12, 1),
    ("MaxPool", [f32(1, 2, 7, 8)], {**K3, "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 12, 1),
    (
        "MaxPool",
        [f32(1, 2, 7, 8)],
        {"kernel_shape": [2, 4], "strides": [2, 3], "auto_pad": "SAME_LOWER"},
        12,
        1,
    ),
    ("MaxPool", [f32(1, 2, 7, 8)], {**K3, "strides": [2, 2], "auto_pad": "VALID"}, 12, 1),
    ("MaxPool", [f32(1, 2, 6, 7)], {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, 12, 2),
    ("MaxPool", [f32(2, 2, 6, 7)], {**K3, "strides": [2, 1], "storage_order": 1}, 12, 2),
    ("MaxPool", [f32(1, 2, 9)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}, 12, 1),
    (
        "MaxPool",
        [f32(1, 2, 5, 6, 7)],
        {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "ceil_mode": 1},
        12,
        1,
    ),
    ("MaxPool", [ints(0, 255, 1, 2, 6, 6, dtype=np.uint8)], {**K3, "pads": [1, 1, 1, 1]}, 12, 1),
    ("MaxPool", [ints(-128, 127, 1, 2, 6, 6, dtype=np.int8)], {**K2, "strides": [2, 2]}, 12, 1),
    ("MaxPool", [f32(1, 2, 6, 6).astype(np.float64)], K3, 12, 1),
    ("MaxPool", [f32(1, 2, 6, 6)], K2, 8, 1),
    ("MaxPool", [f32(0, 2, 6, 6)], K2, 12, 1),
    # AveragePool
    ("AveragePool", [f32(1, 2, 6, 6)], K2, 11, 1),
    ("AveragePool", [f32(2, 3, 7, 8)], {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, 11, 1),
    (
        "AveragePool",
        [f32(2, 3, 7, 8)],
        {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        11,
        1,
    ),
    ("AveragePool", [f32(1, 2, 7, 8)], {**K3, "strides": [2, 2], "ceil_mode": 1}, 11, 1),
    (
        "AveragePool",
        [f32(1, 2, 5, 5)],
        {**K3, "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "count_include_pad": 1},
        19,
        1,
    ),
    ("AveragePool", [f32(1, 2, 9, 9)], {**K3, "dilations": [2, 2], "pads": [1, 1, 1, 1]}, 19, 1),
    (
        "AveragePool",
        [f32(1, 2, 9, 9)],
        {**K2, "dilations": [2, 3], "count_include_pad": 1, "pads": [1, 0, 1, 1]},
        19,
        1,
    ),
    ("AveragePool", [f32(1, 2, 7, 8)], {**K3, "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 11, 1),
    (
        "AveragePool",
        [f32(1, 2, 7, 8)],
        {**K2, "strides": [2, 3], "auto_pad": "SAME_LOWER", "count_include_pad": 1},
        11,
        1,
    ),
    ("AveragePool", [f32(1, 2, 7, 8)], {**K3, "auto_pad": "VALID"}, 11, 1),
    ("AveragePool", [f32(1, 2, 11)], {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}, 11, 1),
    (
        "AveragePool",
        [f32(1, 2, 5, 6, 7)],
        {"kernel_shape": [2, 3, 2], "pads": [1, 1, 1, 0, 0, 0]},
        11,
        1,
    ),
    # LpPool
    ("LpPool", [f32(1, 2, 6, 6)], {**K2, "p": 2}, 11, 1),
    ("LpPool", [f32(1, 2, 7, 7)], {**K3, "p": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, 11, 1),
    ("LpPool", [f32(1, 2, 7, 7)], {**K3, "p": 1, "auto_pad": "SAME_UPPER"}, 11, 1),
    (
        "LpPool",
        [f32(1, 2, 9, 9)],
        {**K2, "dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]},
        18,
        1,
    ),
    ("LpPool", [f32(1, 2, 10)], {"kernel_shape": [3], "p": 2}, 18, 1),
    # Global pooling
    ("GlobalAveragePool", [f32(2, 3, 5, 6)], {}, 11, 1),
    ("GlobalAveragePool", [f32(2, 3, 7)], {}, 11, 1),
    ("GlobalAveragePool", [f32(1, 3, 2, 3, 4)], {}, 22, 1),
    ("GlobalMaxPool", [f32(2, 3, 5, 6)], {}, 11, 1),
    ("GlobalMaxPool", [f32(1, 3, 2, 3, 4)], {}, 22, 1),
    ("GlobalLpPool", [f32(2, 3, 5, 6)], {}, 11, 1),
    ("GlobalLpPool", [f32(2, 3, 5)], {"p": 3}, 11, 1),
    # MaxUnpool: indices of a 2x2 / stride 2 max pool, and with an explicit (equal) output shape
    (
        "MaxUnpool",
        [f32(1, 1, 2, 2), np.array([[[[5, 7], [13, 15]]]], np.int64)],
        {**K2, "strides": [2, 2]},
        11,
        1,
    ),
    (
        "MaxUnpool",
        [
            f32(1, 2, 2, 2),
            np.array([[[[0, 3], [9, 14]], [[16, 19], [26, 31]]]], np.int64),
            np.array([1, 2, 4, 4], np.int64),
        ],
        {**K2, "strides": [2, 2]},
        11,
        1,
    ),
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""
