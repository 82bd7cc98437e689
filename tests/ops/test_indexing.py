"""Differential tests of the indexing kernels (gathers, scatters, Pad, Trilu, OneHot, EyeLike,
Compress, ReverseSequence, TensorScatter) against onnxruntime.

Each case is one node; several shapes per operator stand in for the dynamic shapes a model sees.
TensorScatter (opset 24) is newer than the installed onnxruntime's kernels in some builds, so its
cases are also checked against a direct numpy formulation of the ONNX pseudocode.
"""

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.errors import Sod2Error
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(21)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def permutation_rows(rows, cols, extent):
    """Indices with no duplicate along axis 0 (scatter without reduction needs unique targets)."""
    return np.stack([rng.permutation(extent)[:rows] for _ in range(cols)], axis=1).astype(np.int64)


def scalar(value, dtype=np.int64):
    return np.array(value, dtype=dtype)


GATHER_CASES = [
    ("GatherElements", [f32(3, 4), ints(-3, 3, 2, 4)], {"axis": 0}, 11, 1),
    ("GatherElements", [f32(3, 4), ints(-4, 4, 3, 2)], {"axis": -1}, 13, 1),
    ("GatherElements", [f32(2, 3, 5), ints(0, 3, 2, 2, 5, dtype=np.int32)], {"axis": 1}, 13, 1),
    ("GatherElements", [f32(4, 2), ints(0, 4, 0, 2)], {"axis": 0}, 13, 1),
    ("GatherND", [f32(3, 4), ints(-3, 3, 5, 1)], {}, 11, 1),
    ("GatherND", [f32(3, 4, 2), ints(0, 2, 2, 3, 2)], {}, 13, 1),
    ("GatherND", [f32(2, 3, 4), np.array([[1, -1], [0, 2]], np.int64)], {"batch_dims": 1}, 12, 1),
    ("GatherND", [f32(2, 3, 4, 5), ints(0, 4, 2, 3, 6, 1)], {"batch_dims": 2}, 13, 1),
    ("GatherND", [ints(0, 9, 4, 3, dtype=np.int32), ints(0, 3, 0, 2)], {}, 13, 1),
]

SCATTER_CASES = [
    ("Scatter", [f32(3, 3), permutation_rows(2, 3, 3), f32(2, 3)], {"axis": 0}, 10, 1),
    ("Scatter", [f32(2, 5), i64([1, 3]), f32(1, 2)], {"axis": -1}, 9, 1),
    ("ScatterElements", [f32(4, 3), permutation_rows(3, 3, 4), f32(3, 3)], {}, 11, 1),
    ("ScatterElements", [f32(2, 5), i64([-1, 0], [2, -5]), f32(2, 2)], {"axis": 1}, 13, 1),
    *[
        ("ScatterElements", [f32(3, 4), ints(-3, 3, 5, 4), f32(5, 4)], {"reduction": r}, 18, 1)
        for r in ("add", "mul", "max", "min")
    ],
    ("ScatterElements", [f32(5), ints(0, 5, 7), f32(7)], {"reduction": "add"}, 16, 1),
    (
        "ScatterElements",
        [ints(-5, 5, 4, 2), ints(0, 4, 3, 2), ints(-5, 5, 3, 2)],
        {"reduction": "max"},
        18,
        1,
    ),
    ("ScatterND", [f32(4, 3), np.array([[1], [3]], np.int64), f32(2, 3)], {}, 11, 1),
    ("ScatterND", [f32(2, 3, 4), np.array([[0, 1, 2], [1, -1, -4]], np.int64), f32(2)], {}, 13, 1),
    ("ScatterND", [f32(5, 2), ints(-5, 5, 3, 4, 1), f32(3, 4, 2)], {"reduction": "add"}, 16, 1),
    ("ScatterND", [f32(5, 2), ints(0, 5, 6, 1), f32(6, 2)], {"reduction": "mul"}, 16, 1),
    ("ScatterND", [f32(3, 3), ints(0, 3, 6, 2), f32(6)], {"reduction": "max"}, 18, 1),
    ("ScatterND", [f32(3, 3), ints(0, 3, 6, 2), f32(6)], {"reduction": "min"}, 18, 1),
    ("ScatterND", [f32(3, 2), np.zeros((0, 1), np.int64), f32(0, 2)], {}, 18, 1),
]

PAD_CASES = [
    ("Pad", [f32(3, 4)], {"pads": [1, 0, 2, 3], "value": 1.5}, 2, 1),
    ("Pad", [f32(3, 4)], {"pads": [0, 2, 1, 0], "mode": "edge"}, 2, 1),
    ("Pad", [f32(3, 4), i64(1, 2, 0, 1)], {}, 11, 1),
    ("Pad", [f32(3, 4), i64(1, 2, 0, 1), scalar(-2.5, np.float32)], {}, 11, 1),
    ("Pad", [f32(1, 3, 5), i64(0, 0, 2, 0, 0, 3)], {"mode": "reflect"}, 13, 1),
    ("Pad", [f32(2, 3, 4), i64(0, 1, 1, 0, 2, 2)], {"mode": "edge"}, 13, 1),
    ("Pad", [f32(2, 5, 4), i64(-1, 2, 0, 1, -2, 3)], {"mode": "constant"}, 18, 1),
    ("Pad", [f32(5, 4), i64(-1, 2, 3, -1)], {"mode": "reflect"}, 18, 1),
    ("Pad", [f32(2, 5, 4), i64(1, 3), None, i64(-1)], {"mode": "edge"}, 18, 1),
    ("Pad", [f32(2, 5, 4), i64(1, 0, 2, 1), scalar(7.0, np.float32), i64(1, -1)], {}, 18, 1),
    ("Pad", [f32(3, 4), i64(2, 5, 1, 6)], {"mode": "wrap"}, 19, 1),
    ("Pad", [f32(3, 4), i64(-1, 1, 2, -2)], {"mode": "wrap"}, 21, 1),
    ("Pad", [ints(0, 9, 2, 3, dtype=np.int32), i64(1, 1, 1, 1), scalar(-1, np.int32)], {}, 21, 1),
    ("Pad", [np.array([True, False]), i64(2, 1)], {}, 21, 1),
    ("Pad", [f32(0, 3), i64(1, 0, 2, 0)], {}, 21, 1),
]

MASK_CASES = [
    ("Trilu", [f32(4, 5)], {}, 14, 1),
    ("Trilu", [f32(2, 4, 3), scalar(1)], {"upper": 0}, 14, 1),
    ("Trilu", [f32(3, 3), scalar(-1)], {"upper": 1}, 14, 1),
    ("Trilu", [ints(0, 9, 2, 1, 3, 6), scalar(-7)], {"upper": 0}, 14, 1),
    ("Trilu", [f32(3, 0)], {}, 14, 1),
    ("OneHot", [i64(0, 3, -1, 5, -6), scalar(5), np.array([0, 1], np.float32)], {}, 11, 1),
    ("OneHot", [ints(-4, 4, 2, 3), i64(4), np.array([-2, 7], np.float32)], {"axis": 0}, 11, 1),
    (
        "OneHot",
        [ints(0, 3, 2, 2, dtype=np.int32), scalar(3.0, np.float32), np.array([1, 0], np.float32)],
        {"axis": -2},
        11,
        1,
    ),
    (
        "OneHot",
        [
            np.array([0.7, 2.2, 1.9], np.float32),
            scalar(3, np.float32),
            np.array([0, 5], np.float32),
        ],
        {"axis": 1},
        9,
        1,
    ),
    ("EyeLike", [f32(3, 4)], {}, 9, 1),
    ("EyeLike", [f32(4, 3)], {"k": -1, "dtype": 7}, 9, 1),
    ("EyeLike", [ints(0, 2, 3, 3, dtype=np.int32)], {"k": 2}, 22, 1),
    ("EyeLike", [f32(2, 5)], {"k": 9, "dtype": 6}, 9, 1),
    ("Compress", [f32(3, 2), np.array([False, True, True])], {"axis": 0}, 11, 1),
    ("Compress", [f32(3, 4), np.array([True, False])], {"axis": -1}, 11, 1),
    ("Compress", [f32(2, 3), np.array([False, True, False, False, True])], {}, 9, 1),
    ("Compress", [ints(0, 5, 4, 2), np.array([False, False, False])], {"axis": 0}, 11, 1),
    ("ReverseSequence", [f32(4, 3, 2), i64(4, 1, 3)], {"time_axis": 0, "batch_axis": 1}, 10, 1),
    ("ReverseSequence", [f32(3, 5), i64(0, 5, 2)], {"time_axis": 1, "batch_axis": 0}, 10, 1),
    ("ReverseSequence", [ints(0, 9, 2, 6, 3), i64(6, 3)], {"time_axis": 1, "batch_axis": 0}, 10, 1),
]

TENSOR_SCATTER_CASES = [
    ("TensorScatter", [f32(2, 3, 6, 4), f32(2, 3, 2, 4), i64(0, 4)], {}, 24, 1),
    (
        "TensorScatter",
        [f32(2, 5, 3), f32(2, 3, 3), i64(4, 1)],
        {"axis": 1, "mode": "circular"},
        24,
        1,
    ),
    ("TensorScatter", [f32(3, 4, 2), f32(3, 4, 2)], {"axis": -2}, 24, 1),
    ("TensorScatter", [f32(2, 2, 7), f32(2, 2, 0), i64(3, 7)], {"axis": 2}, 24, 1),
]

CASES = GATHER_CASES + SCATTER_CASES + PAD_CASES + MASK_CASES + TENSOR_SCATTER_CASES


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    details = "-".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return f"{op}-opset{opset}-{shapes}-{details}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


def _tensor_scatter_by_pseudocode(past, update, write, axis, circular):
    """The loop of the ONNX TensorScatter specification, written out literally."""
    present = past.copy()
    axis = axis % past.ndim
    for prefix in np.ndindex(past.shape[:axis]):
        for step in range(update.shape[axis]):
            target = write[prefix[0]] + step
            if circular:
                target %= past.shape[axis]
            present[(*prefix, target)] = update[(*prefix, step)]
    return present


@pytest.mark.parametrize(
    "case", TENSOR_SCATTER_CASES, ids=[_case_id(c) for c in TENSOR_SCATTER_CASES]
)
def test_tensor_scatter_matches_the_specification_loop(case):
    op, inputs, attrs, opset, outputs = case
    past, update, *rest = inputs
    write = rest[0] if rest else np.zeros(past.shape[0], np.int64)
    expected = _tensor_scatter_by_pseudocode(
        past, update, write, attrs.get("axis", -2), attrs.get("mode") == "circular"
    )
    proto = one_node_model(op, inputs, attrs, opset, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs)}
    actual = next(iter(run_reference(load(proto, check=False), feeds).outputs.values()))
    np.testing.assert_array_equal(actual, expected)


def _run(op, inputs, attrs, opset):
    proto = one_node_model(op, inputs, attrs, opset, 1)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return next(iter(run_reference(load(proto, check=False), feeds).outputs.values()))


def test_gather_elements_rejects_an_index_past_the_axis():
    with pytest.raises(Sod2Error, match="out of range"):
        _run("GatherElements", [f32(3, 2), np.array([[3, 0]], np.int64)], {"axis": 0}, 13)


def test_pad_refuses_reflection_wider_than_the_dim():
    with pytest.raises(Sod2Error, match="reflect pads"):
        _run("Pad", [f32(2, 3), i64(0, 3, 0, 0)], {"mode": "reflect"}, 18)


def test_pad_fills_strings_with_the_empty_string():
    # onnxruntime has no string Pad; ONNX's default constant_value for strings is ''.
    words = np.array([["a"], ["b"]], dtype=object)
    padded = _run("Pad", [words, i64(1, 0, 0, 1)], {}, 18)
    assert padded.tolist() == [["", ""], ["a", ""], ["b", ""]]


def test_pad_refuses_a_crop_larger_than_the_dim():
    with pytest.raises(Sod2Error, match="crop more than"):
        _run("Pad", [f32(2, 3), i64(0, -2, 0, -2)], {}, 18)
