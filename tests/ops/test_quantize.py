"""Differential tests of QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear against
onnxruntime: per tensor, per axis and blocked; 8-, 16-, 4-bit integers and float8."""

import ml_dtypes
import numpy as np
import onnx
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def scalar(value, dtype=np.float32):
    return np.array(value, dtype=dtype)


def positive(*shape):
    return (rng.uniform(0.02, 0.2, shape)).astype(np.float32)


TIES = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300.0, -300.0], dtype=np.float32)
E4M3, INT4, UINT4 = ml_dtypes.float8_e4m3fn, ml_dtypes.int4, ml_dtypes.uint4

# (op, inputs, attrs, opset, outputs)
CASES = [
    # QuantizeLinear: rounding half to even and saturation, default uint8 output
    ("QuantizeLinear", [TIES, scalar(1.0)], {}, 10, 1),
    ("QuantizeLinear", [TIES, scalar(1.0), scalar(0, np.int8)], {}, 10, 1),
    ("QuantizeLinear", [f32(2, 3, 4, scale=5), scalar(0.1), scalar(128, np.uint8)], {}, 13, 1),
    (
        "QuantizeLinear",
        [f32(2, 3, 4, scale=5), positive(3), ints(-20, 20, 3, dtype=np.int8)],
        {"axis": 1},
        13,
        1,
    ),
    (
        "QuantizeLinear",
        [f32(2, 3, 4, scale=5), positive(4), ints(0, 255, 4, dtype=np.uint8)],
        {"axis": -1},
        19,
        1,
    ),
    (
        "QuantizeLinear",
        [f32(3, 4, scale=5).astype(np.float16), scalar(0.1, np.float16), scalar(5, np.int8)],
        {},
        19,
        1,
    ),
    ("QuantizeLinear", [f32(3, 4, scale=300), scalar(0.5), scalar(-7, np.int16)], {}, 21, 1),
    ("QuantizeLinear", [f32(3, 4, scale=300), scalar(0.5), scalar(1000, np.uint16)], {}, 21, 1),
    (
        "QuantizeLinear",
        [f32(3, 4, scale=300), scalar(0.5)],
        {"output_dtype": onnx.TensorProto.INT16},
        21,
        1,
    ),
    # blocked: block_size 2 along axis 1, with a partial last block
    (
        "QuantizeLinear",
        [f32(3, 5, scale=5), positive(3, 3), ints(-9, 9, 3, 3, dtype=np.int8)],
        {"axis": 1, "block_size": 2},
        21,
        1,
    ),
    (
        "QuantizeLinear",
        [f32(4, 3, scale=5), positive(2, 3), ints(0, 255, 2, 3, dtype=np.uint8)],
        {"axis": 0, "block_size": 2},
        21,
        1,
    ),
    ("QuantizeLinear", [f32(0, 4), scalar(0.5), scalar(3, np.uint8)], {}, 13, 1),
    ("QuantizeLinear", [scalar(3.3), scalar(0.5), scalar(1, np.int8)], {}, 13, 1),
    # DequantizeLinear
    ("DequantizeLinear", [scalar(7, np.uint8), scalar(0.5), scalar(1, np.uint8)], {}, 13, 1),
    (
        "DequantizeLinear",
        [ints(0, 255, 2, 3, dtype=np.uint8), scalar(0.1), scalar(128, np.uint8)],
        {},
        10,
        1,
    ),
    ("DequantizeLinear", [ints(-128, 127, 2, 3, dtype=np.int8), scalar(0.1)], {}, 10, 1),
    ("DequantizeLinear", [ints(-(2**20), 2**20, 5, dtype=np.int32), scalar(0.01)], {}, 13, 1),
    (
        "DequantizeLinear",
        [ints(-128, 127, 2, 3, 4, dtype=np.int8), positive(3), ints(-9, 9, 3, dtype=np.int8)],
        {"axis": 1},
        13,
        1,
    ),
    (
        "DequantizeLinear",
        [ints(0, 255, 2, 3, 4, dtype=np.uint8), positive(4), ints(0, 255, 4, dtype=np.uint8)],
        {"axis": -1},
        19,
        1,
    ),
    (
        "DequantizeLinear",
        [ints(0, 255, 3, 4, dtype=np.uint8), scalar(0.5, np.float16), scalar(3, np.uint8)],
        {},
        19,
        1,
    ),
    (
        "DequantizeLinear",
        [ints(-30000, 30000, 3, 4, dtype=np.int16), scalar(0.5), scalar(-3, np.int16)],
        {},
        21,
        1,
    ),
    (
        "DequantizeLinear",
        [ints(-128, 127, 3, 5, dtype=np.int8), positive(3, 3), ints(-9, 9, 3, 3, dtype=np.int8)],
        {"axis": 1, "block_size": 2},
        21,
        1,
    ),
    # DynamicQuantizeLinear: mixed signs, all positive, all negative, all zero
    ("DynamicQuantizeLinear", [f32(3, 4, scale=3)], {}, 11, 3),
    ("DynamicQuantizeLinear", [np.abs(f32(2, 5)) + 1], {}, 11, 3),
    ("DynamicQuantizeLinear", [-np.abs(f32(7)) - 0.5], {}, 11, 3),
    ("DynamicQuantizeLinear", [np.zeros((2, 3), np.float32)], {}, 11, 3),
    ("DynamicQuantizeLinear", [scalar(-2.5)], {}, 11, 3),
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else f"{v.dtype}{list(v.shape)}" for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""


# onnxruntime's Python API takes no ml_dtypes arrays (int4, float8), so the narrow types are
# checked against plain numpy formulas of the spec instead (and by the ONNX node cases).


def run_sod2(op, inputs, attrs, opset, outputs=1):
    proto = one_node_model(op, inputs, attrs, opset, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return list(run_reference(load(proto, check=False), feeds).outputs.values())


X_WIDE = f32(3, 4, scale=200)


@pytest.mark.parametrize(
    ("zero_point", "low", "high"), [(scalar(1, INT4), -8, 7), (scalar(8, UINT4), 0, 15)]
)
def test_quantize_to_4_bits_saturates(zero_point, low, high):
    (result,) = run_sod2("QuantizeLinear", [X_WIDE, scalar(20.0), zero_point], {}, 21)
    offset = int(zero_point.astype(np.int64))
    expected = np.clip(np.rint(X_WIDE / np.float32(20.0)) + offset, low, high)
    assert result.dtype == zero_point.dtype
    np.testing.assert_array_equal(result.astype(np.int64), expected.astype(np.int64))


@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_to_float8_e4m3fn(saturate):
    (result,) = run_sod2(
        "QuantizeLinear", [X_WIDE, scalar(0.5), scalar(0, E4M3)], {"saturate": saturate}, 19
    )
    scaled = X_WIDE / np.float32(0.5)
    # e4m3fn has no infinity: without saturation, overflow becomes NaN
    expected = (np.clip(scaled, -448, 448) if saturate else scaled).astype(E4M3)
    assert result.dtype == E4M3
    np.testing.assert_array_equal(result.astype(np.float32), expected.astype(np.float32))


def test_quantize_to_float8_e5m2_saturates_to_the_largest_finite():
    scaled_large = np.array([1e6, -1e6, 3.0], dtype=np.float32)
    zero = scalar(0, ml_dtypes.float8_e5m2)
    (result,) = run_sod2("QuantizeLinear", [scaled_large, scalar(1.0), zero], {}, 19)
    np.testing.assert_array_equal(result.astype(np.float32), [57344.0, -57344.0, 3.0])


def test_dequantize_int4_and_float8():
    codes = ints(-8, 8, 3, 4).astype(INT4)
    (result,) = run_sod2("DequantizeLinear", [codes, scalar(0.5), scalar(1, INT4)], {}, 21)
    np.testing.assert_array_equal(result, (codes.astype(np.float32) - 1) * np.float32(0.5))
    floats = f32(3, 4, scale=50).astype(E4M3)
    (result,) = run_sod2("DequantizeLinear", [floats, scalar(0.25)], {}, 19)
    np.testing.assert_array_equal(result, floats.astype(np.float32) * np.float32(0.25))
