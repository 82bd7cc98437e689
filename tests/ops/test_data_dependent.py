"""Differential tests of the operators whose output shape depends on input values (TopK, NonZero,
Unique, NonMaxSuppression) against onnxruntime.

Inputs are chosen to exercise the ordering rules ONNX fixes: ties in TopK (lower index first), the
first-occurrence order of Unique with sorted=0, equal scores and IoU thresholds in
NonMaxSuppression. Several shapes per operator stand in for dynamic shapes.
"""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(31)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def boxes(batch, count, *, center=False):
    """Random boxes, either as two corners (in either order) or as centre and size."""
    corners = rng.uniform(0, 10, (batch, count, 4)).astype(np.float32)
    if center:
        corners[..., 2:] = rng.uniform(0.5, 4, (batch, count, 2))
    return corners


def scalar(value, dtype):
    return np.array([value], dtype=dtype)


TIES = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 0, 0, 0, 0]], dtype=np.float32)

TOPK_CASES = [
    ("TopK", [f32(3, 7)], {"k": 3}, 1, 2),
    ("TopK", [f32(2, 5, 4)], {"k": 2, "axis": 1}, 9, 2),
    ("TopK", [f32(3, 7), i64(4)], {}, 10, 2),
    ("TopK", [f32(4, 6), i64(3)], {"axis": -2}, 11, 2),
    ("TopK", [TIES, i64(4)], {}, 11, 2),
    ("TopK", [TIES, i64(5)], {"largest": 0}, 11, 2),
    ("TopK", [TIES.T.copy(), i64(2)], {"axis": 0, "largest": 0}, 11, 2),
    ("TopK", [ints(0, 4, 3, 8), i64(8)], {}, 11, 2),
    ("TopK", [ints(-(2**62), 2**62, 5), i64(2)], {}, 24, 2),
    ("TopK", [ints(-3, 3, 2, 9, dtype=np.int32), i64(5)], {"largest": 0}, 24, 2),
    ("TopK", [f32(5).astype(np.float64), i64(0)], {}, 11, 2),
    ("TopK", [f32(0, 4), i64(2)], {}, 11, 2),
    ("TopK", [np.array([1, np.nan, 3, np.nan, -1], np.float32), i64(3)], {}, 11, 2),
]

NONZERO_CASES = [
    ("NonZero", [ints(0, 2, 3, 4).astype(np.float32)], {}, 9, 1),
    ("NonZero", [ints(0, 2, 2, 3, 2).astype(bool)], {}, 13, 1),
    ("NonZero", [ints(-1, 2, 7, dtype=np.int32)], {}, 13, 1),
    ("NonZero", [np.zeros((2, 3), np.int64)], {}, 13, 1),
    ("NonZero", [f32(0, 3)], {}, 13, 1),
    ("NonZero", [np.array(3.0, np.float32)], {}, 13, 1),
]

UNIQUE_INPUTS = [
    np.array([2, 1, 1, 3, 4, 3, 2, 0], np.float32),
    ints(-3, 3, 3, 4),
    np.array([[1, 0, 0], [1, 0, 0], [2, 3, 4], [0, 5, 1]], np.int64),
]
UNIQUE_CASES = [
    *[("Unique", [x], {}, 11, 4) for x in UNIQUE_INPUTS],
    *[("Unique", [x], {"sorted": 0}, 11, 4) for x in UNIQUE_INPUTS],
    ("Unique", [UNIQUE_INPUTS[2]], {"axis": 0}, 11, 4),
    ("Unique", [UNIQUE_INPUTS[2]], {"axis": 0, "sorted": 0}, 11, 4),
    ("Unique", [ints(0, 2, 2, 6, 2).astype(np.float32)], {"axis": 1}, 11, 4),
    ("Unique", [ints(0, 2, 2, 3, 5).astype(np.float32)], {"axis": -1, "sorted": 0}, 11, 4),
    ("Unique", [np.array([5, 5, 5], np.int64)], {}, 11, 1),
    ("Unique", [np.zeros(0, np.float32)], {}, 11, 4),
    ("Unique", [np.array(["b", "a", "b", "c", "a"], dtype=object)], {}, 11, 4),
    ("Unique", [np.array(["b", "a", "b", "c", "a"], dtype=object)], {"sorted": 0}, 11, 4),
]

NMS_CASES = [
    (
        "NonMaxSuppression",
        [boxes(1, 12), f32(1, 1, 12), i64(5), scalar(0.3, np.float32)],
        {},
        10,
        1,
    ),
    (
        "NonMaxSuppression",
        [boxes(2, 20), f32(2, 3, 20), i64(6), scalar(0.2, np.float32), scalar(0.0, np.float32)],
        {},
        11,
        1,
    ),
    (
        "NonMaxSuppression",
        [boxes(1, 30, center=True), f32(1, 2, 30), i64(30), scalar(0.1, np.float32)],
        {"center_point_box": 1},
        11,
        1,
    ),
    ("NonMaxSuppression", [boxes(3, 8), f32(3, 1, 8), i64(4)], {}, 11, 1),
    ("NonMaxSuppression", [boxes(1, 8), f32(1, 2, 8)], {}, 11, 1),
    (
        "NonMaxSuppression",
        [
            np.array(
                [[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 0.5], [1, 1, 0, 0.5], [0, 0, 0, 0]]],
                np.float32,
            ),
            np.array([[[0.5, 0.5, 0.5, 0.5, 0.9]]], np.float32),
            i64(5),
            scalar(0.5, np.float32),
            scalar(0.5, np.float32),
        ],
        {},
        11,
        1,
    ),
    ("NonMaxSuppression", [boxes(1, 0), f32(1, 2, 0), i64(3)], {}, 11, 1),
]

CASES = TOPK_CASES + NONZERO_CASES + UNIQUE_CASES + NMS_CASES


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    details = "-".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return f"{op}-opset{opset}-{shapes}-{details}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""
