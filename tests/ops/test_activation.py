"""Differential tests of the activation and softmax kernels against onnxruntime.

Attribute variants, opsets on both sides of a signature change (the softmax family's opset-13
switch from 2-D coercion to a single axis), several shapes per operator, narrow and wide floats.
"""

import math

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(7)


def f32(*shape, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def ints(low, high, *shape, dtype):
    return rng.integers(low, high, shape).astype(dtype)


WIDE_RANGE = np.array([-100.0, -20.0, -5.0, -0.5, 0.0, 0.25, 3.0, 30.0, 100.0], np.float32)

POINTWISE = [
    ("LeakyRelu", {}, 6),
    ("LeakyRelu", {"alpha": 0.2}, 16),
    ("Elu", {}, 6),
    ("Elu", {"alpha": 0.5}, 22),
    ("Selu", {}, 6),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, 22),
    ("Celu", {}, 12),
    ("Celu", {"alpha": 2.0}, 12),
    ("HardSigmoid", {}, 6),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.3}, 22),
    ("HardSwish", {}, 14),
    ("Softplus", {}, 1),
    ("Softsign", {}, 22),
    ("Mish", {}, 18),
    ("ThresholdedRelu", {}, 10),
    ("ThresholdedRelu", {"alpha": 0.5}, 22),
    ("Swish", {}, 24),
    ("Swish", {"alpha": 0.5}, 24),
    ("Gelu", {}, 20),
    ("Gelu", {"approximate": "tanh"}, 20),
    ("Shrink", {}, 9),
    ("Shrink", {"lambd": 1.5, "bias": 0.5}, 9),
]

SOFTMAX_FAMILY = ("Softmax", "LogSoftmax", "Hardmax")

CASES = [
    *[(op, [f32(3, 4)], attrs, opset, 1) for op, attrs, opset in POINTWISE],
    *[(op, [f32(2, 1, 5)], attrs, opset, 1) for op, attrs, opset in POINTWISE],
    *[(op, [WIDE_RANGE], attrs, opset, 1) for op, attrs, opset in POINTWISE],
    *[(op, [f32(0, 3)], attrs, opset, 1) for op, attrs, opset in POINTWISE[::4]],
    ("LeakyRelu", [f32(6).astype(np.float16)], {"alpha": 0.1}, 16, 1),
    ("Elu", [f32(6, 1, 2)], {"alpha": 2.0}, 22, 1),
    ("Softplus", [f32(2, 3, 2)], {}, 22, 1),
    ("HardSwish", [f32(5).astype(np.float16)], {}, 22, 1),
    ("Gelu", [f32(8).astype(np.float16)], {"approximate": "tanh"}, 20, 1),
    ("Gelu", [np.linspace(-12, 12, 97, dtype=np.float32)], {}, 20, 1),
    ("Shrink", [ints(-6, 6, 8, dtype=np.int8)], {"lambd": 0.5, "bias": 1.5}, 9, 1),
    ("Shrink", [ints(0, 9, 8, dtype=np.uint8)], {"lambd": 2.0, "bias": 1.0}, 9, 1),
    ("Shrink", [f32(3, 2).astype(np.float64)], {"lambd": 0.3, "bias": 0.1}, 9, 1),
    ("PRelu", [f32(2, 3, 4, 4), f32(3, 1, 1)], {}, 9, 1),
    ("PRelu", [f32(2, 3), f32(1)], {}, 9, 1),
    ("PRelu", [f32(2, 3), f32(2, 3)], {}, 16, 1),
    ("PRelu", [f32(5, 4), f32(4)], {}, 16, 1),
    ("PRelu", [ints(-9, 9, 4, 3, dtype=np.int32), ints(1, 4, 3, dtype=np.int32)], {}, 16, 1),
    ("PRelu", [f32(1, 2, 3).astype(np.float64), f32(2, 1).astype(np.float64)], {}, 16, 1),
    # opset 1-12: the input is flattened to 2-D at `axis` (default 1)
    *[(op, [f32(2, 3, 4)], {}, 11, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(2, 3, 4)], {"axis": 0}, 11, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(3, 2, 2, 3)], {"axis": -2}, 11, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(5, 7)], {}, 1, 1) for op in SOFTMAX_FAMILY],
    # opset 13: one axis (default -1)
    *[(op, [f32(2, 3, 4)], {}, 13, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(2, 3, 4)], {"axis": 1}, 13, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(4, 1, 6)], {"axis": -3}, 13, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(9)], {}, 13, 1) for op in SOFTMAX_FAMILY],
    *[(op, [f32(2, 0, 3)], {"axis": 1}, 13, 1) for op in SOFTMAX_FAMILY],
    ("Softmax", [f32(2, 5, scale=400.0)], {}, 13, 1),
    ("LogSoftmax", [f32(2, 5, scale=400.0)], {}, 13, 1),
    ("Softmax", [f32(3, 4).astype(np.float64)], {"axis": 0}, 13, 1),
    ("LogSoftmax", [f32(3, 4).astype(np.float16)], {}, 13, 1),
    ("Hardmax", [np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)], {}, 13, 1),
    ("Hardmax", [np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)], {}, 11, 1),
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join(f"{v.dtype}{list(v.shape)}" for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


def _gelu_exact(x):
    """x/2 * (1 + erf(x / sqrt(2))) written with erfc, which keeps digits for negative x."""
    return np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(float).ravel()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_matches_math_erf(dtype):
    # onnxruntime has no float64 Gelu; math.erf is the independent formulation.
    x = np.concatenate([np.linspace(-30, 30, 601), rng.standard_normal(200) * 4]).astype(dtype)
    proto = one_node_model("Gelu", [x], {}, 20, 1)
    actual = run_reference(load(proto, check=False), {"in0": x}).outputs["out0"]
    assert actual.dtype == dtype
    rtol = 1e-13 if dtype == np.float64 else 4e-7
    expected = _gelu_exact(x).astype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=np.finfo(dtype).smallest_normal)
