"""Differential tests of the normalization kernels against onnxruntime.

BatchNormalization in inference (opsets 9 and 15) and training mode (opset 15: batch statistics and
updated running statistics), Instance/Group/Layer/RMS normalization over several ranks and axes,
both GroupNormalization signatures (per-group scale at opset 18, per-channel at 21), LayerNorm's
optional Mean / InvStdDev outputs, LpNormalization, MeanVarianceNormalization and LRN.
"""

import math

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(5)


def f32(*shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def positive(*shape):
    return rng.uniform(0.2, 2.0, shape).astype(np.float32)


def batch_norm_inputs(shape, dtype=np.float32):
    channels = shape[1]
    values = [f32(*shape), f32(channels), f32(channels), f32(channels), positive(channels)]
    return [v.astype(dtype) for v in values]


def layer_params(x, axis):
    normalized = x.shape[axis:]
    return f32(*normalized).astype(x.dtype), f32(*normalized).astype(x.dtype)


def per_activation_inputs(shape):
    """BatchNormalization spatial=0 (opset 7-8): parameters per activation, X's shape after N."""
    params = [f32(*shape[1:]), f32(*shape[1:]), f32(*shape[1:]), positive(*shape[1:])]
    return [f32(*shape), *params]


BATCH_NORM_CASES = [
    ("BatchNormalization", batch_norm_inputs((2, 3, 4)), {}, 7, 1),
    ("BatchNormalization", per_activation_inputs((2, 3, 4)), {"spatial": 0}, 7, 1),
    ("BatchNormalization", batch_norm_inputs((2, 3)), {}, 9, 1),
    ("BatchNormalization", batch_norm_inputs((2, 3, 5)), {"epsilon": 1e-2}, 9, 1),
    ("BatchNormalization", batch_norm_inputs((2, 3, 4, 5)), {}, 15, 1),
    ("BatchNormalization", batch_norm_inputs((1, 4, 2, 2, 2), np.float64), {}, 15, 1),
    ("BatchNormalization", batch_norm_inputs((2, 3, 4, 5)), {"training_mode": 1}, 15, 3),
    (
        "BatchNormalization",
        batch_norm_inputs((4, 2, 3)),
        {"training_mode": 1, "momentum": 0.7, "epsilon": 1e-3},
        14,
        3,
    ),
    ("BatchNormalization", batch_norm_inputs((5, 3)), {"training_mode": 1}, 15, 3),
]

GROUP_NORM_CASES = [
    ("GroupNormalization", [f32(2, 4, 3, 3), f32(2), f32(2)], {"num_groups": 2}, 18, 1),
    ("GroupNormalization", [f32(3, 6, 5), f32(3), f32(3)], {"num_groups": 3}, 18, 1),
    ("GroupNormalization", [f32(2, 4, 3, 3), f32(4), f32(4)], {"num_groups": 2}, 21, 1),
    ("GroupNormalization", [f32(3, 6, 5), f32(6), f32(6)], {"num_groups": 6}, 21, 1),
    (
        "GroupNormalization",
        [f32(1, 8, 2, 2), f32(8), f32(8)],
        {"num_groups": 1, "epsilon": 1e-2},
        21,
        1,
    ),
]

LAYER_NORM_CASES = [
    ("LayerNormalization", [x, *layer_params(x, axis)], attrs, 17, outputs)
    for x, axis, attrs, outputs in (
        (f32(2, 3, 8), -1, {}, 1),
        (f32(2, 3, 8), 1, {"axis": 1}, 3),
        (f32(4, 5), 0, {"axis": 0, "epsilon": 1e-3}, 3),
        (f32(3, 2, 2, 6, shift=1.0), -2, {"axis": -2}, 3),
        (f32(2, 7).astype(np.float16), -1, {}, 3),
        (f32(2, 3, 5).astype(np.float64), -1, {}, 3),
    )
] + [
    ("LayerNormalization", [f32(2, 4, 6), f32(6)], {}, 17, 1),
    ("LayerNormalization", [f32(2, 4, 6), f32(4, 6), f32(6)], {"axis": 1}, 17, 1),
    ("LayerNormalization", [f32(3, 0, 4), f32(4), f32(4)], {}, 17, 3),
]

RMS_NORM_CASES = [
    ("RMSNormalization", [x, f32(*x.shape[axis:])], attrs, 23, 1)
    for x, axis, attrs in (
        (f32(2, 3, 8), -1, {}),
        (f32(2, 3, 8), 1, {"axis": 1}),
        (f32(4, 5), 0, {"axis": 0, "epsilon": 1e-3}),
        (f32(2, 2, 3, 3), -3, {"axis": -3}),
    )
] + [("RMSNormalization", [f32(3, 6), f32(1)], {}, 23, 1)]

CASES = [
    *BATCH_NORM_CASES,
    ("InstanceNormalization", [f32(2, 3, 6), f32(3), f32(3)], {}, 6, 1),
    ("InstanceNormalization", [f32(1, 2, 4, 4), f32(2), f32(2)], {"epsilon": 1e-2}, 22, 1),
    ("InstanceNormalization", [f32(3, 4, 2, 2, 3, scale=3.0), f32(4), f32(4)], {}, 22, 1),
    *GROUP_NORM_CASES,
    *LAYER_NORM_CASES,
    *RMS_NORM_CASES,
    ("LpNormalization", [f32(3, 4)], {}, 1, 1),
    ("LpNormalization", [f32(3, 4, 2)], {"p": 1, "axis": 1}, 22, 1),
    ("LpNormalization", [f32(2, 5)], {"p": 2, "axis": 0}, 22, 1),
    ("LpNormalization", [np.array([[0, 0, 0], [3, 4, 0]], np.float32)], {"p": 2}, 22, 1),
    ("MeanVarianceNormalization", [f32(3, 3, 3, 1)], {}, 9, 1),
    ("MeanVarianceNormalization", [f32(2, 4, 5, shift=1.0)], {"axes": [1, 2]}, 13, 1),
    ("MeanVarianceNormalization", [f32(2, 3, 4, 2)], {"axes": [0, -1]}, 13, 1),
    ("LRN", [f32(2, 5, 4, 4)], {"size": 3}, 13, 1),
    ("LRN", [f32(1, 7, 3, 2)], {"size": 5, "alpha": 1e-2, "beta": 0.5, "bias": 2.0}, 13, 1),
    ("LRN", [f32(2, 6, 2, 2)], {"size": 1}, 1, 1),
    ("LRN", [f32(2, 3, 5, 1)], {"size": 9, "alpha": 0.1}, 13, 1),
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join(f"{v.dtype}{list(v.shape)}" for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


def _run_sod2(op, inputs, attrs, opset):
    proto = one_node_model(op, inputs, attrs, opset, 1)
    feeds = {f"in{i}": v for i, v in enumerate(inputs)}
    return next(iter(run_reference(load(proto, check=False), feeds).outputs.values()))


def _lrn_by_definition(x, size, alpha, beta, bias):
    """The ONNX formula, one channel window at a time, in float64."""
    squares = x.astype(np.float64) ** 2
    square_sum = np.zeros_like(squares)
    for c in range(x.shape[1]):
        low, high = max(0, c - (size - 1) // 2), min(x.shape[1], c + math.ceil((size - 1) / 2) + 1)
        square_sum[:, c] = squares[:, low:high].sum(axis=1)
    return x / (bias + alpha / size * square_sum) ** beta


@pytest.mark.parametrize("shape", [(1, 7, 3), (2, 6, 2, 2, 2), (3, 4)])
@pytest.mark.parametrize("size", [2, 4, 5])
def test_lrn_matches_definition(shape, size):
    # onnxruntime's LRN takes only 4-D inputs and odd sizes; the ONNX formula has neither limit.
    x = f32(*shape, scale=3.0)
    actual = _run_sod2("LRN", [x], {"size": size, "alpha": 0.05, "beta": 0.6, "bias": 1.5}, 13)
    expected = _lrn_by_definition(x, size, 0.05, 0.6, 1.5)
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("shift", [10.0, 100.0])
def test_layer_normalization_of_offset_data_stays_near_float64(shift):
    # A large common offset costs float32 statistics digits (onnxruntime loses as many), so this
    # compares with the float64 result at the precision float32 statistics can hold.
    x = f32(4, 64, shift=shift)
    scale, bias = np.ones(64, np.float32), np.zeros(64, np.float32)
    actual = _run_sod2("LayerNormalization", [x, scale, bias], {}, 17)
    wide = x.astype(np.float64)
    centered = wide - wide.mean(axis=-1, keepdims=True)
    expected = centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(actual, expected, atol=2e-7 * shift)
