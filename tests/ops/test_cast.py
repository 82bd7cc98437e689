"""Differential tests of Cast and CastLike against onnxruntime, and checks of the narrow types.

- Every ordered pair of the standard numeric types and bool is cast on values that every type
  holds (negative ones only into signed types), plus wrap-around and truncation cases.
- onnxruntime's Python API cannot feed or return bfloat16, float8 or 4-/2-bit arrays, so those
  casts run as chains `x -> narrow type -> float32` (or int32) inside one model, compared as wide
  values. onnxruntime differs from the ONNX specification (and from the ONNX node cases) in
  places, which these chains avoid: it rounds floats to int4 to nearest (ONNX and ml_dtypes
  truncate), and makes float8e5m2 values between 61440 and 65536 NaN with saturate=0 (the spec
  says infinity).
- Strings: onnxruntime prints floats with `%.8g`; sod2 prints the shortest round-trip form, so the
  values compared with onnxruntime are those on which both agree, and the shortest form itself is
  checked on its own.
- Rounding from float64 to bfloat16 and float8 is checked against a brute-force nearest-even
  search over every value of the narrow type (ml_dtypes alone rounds twice through float32).
"""

import itertools

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sod2.backend.reference import run_reference
from sod2.errors import Sod2Error, UnsupportedOpError
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime

rng = np.random.default_rng(51)

STANDARD_TYPES = [
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_,
]  # fmt: skip
HELD_BY_ALL = np.array([0, 1, 3.75, 100.5, 127, 0.25], np.float64)
SIGNED_ONLY = np.array([-1, -3.75, -100.5, -128, 0.5], np.float64)


def code(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _pair_cases():
    cases = []
    for source, target in itertools.product(STANDARD_TYPES, STANDARD_TYPES):
        if source is target:
            continue
        values = HELD_BY_ALL
        if np.dtype(source).kind in "fi" and np.dtype(target).kind in "fi":
            values = np.concatenate([HELD_BY_ALL, SIGNED_ONLY])
        data = values.astype(source).reshape(-1, 1) if len(values) % 2 else values.astype(source)
        cases.append(("Cast", [data], {"to": code(target)}, 21, 1))
    return cases


PAIR_CASES = _pair_cases()

EDGE_CASES = [
    ("Cast", [np.array([200, -129, 70000, -1], np.int64)], {"to": TensorProto.INT8}, 13, 1),
    ("Cast", [np.array([-1, 300, 65536], np.int32)], {"to": TensorProto.UINT16}, 13, 1),
    ("Cast", [np.array([2**63, 2**64 - 1, 5], np.uint64)], {"to": TensorProto.INT64}, 13, 1),
    ("Cast", [np.array([1.9, -1.9, 300.5, -2.5], np.float32)], {"to": TensorProto.INT8}, 13, 1),
    ("Cast", [np.array([1.9, -2.5, 1e19, 3e9], np.float64)], {"to": TensorProto.UINT64}, 13, 1),
    (
        "Cast",
        [np.array([0.0, -0.0, np.nan, np.inf, 1e-30], np.float32)],
        {"to": TensorProto.BOOL},
        13,
        1,
    ),
    (
        "Cast",
        [np.array([70000, -1e6, 1e-8, np.nan], np.float32)],
        {"to": TensorProto.FLOAT16},
        13,
        1,
    ),
    ("Cast", [np.array([2**62 + 1, -(2**60) - 3], np.int64)], {"to": TensorProto.FLOAT}, 13, 1),
    ("Cast", [np.array([1e300, -1e-300, 0.1], np.float64)], {"to": TensorProto.FLOAT16}, 13, 1),
    ("Cast", [np.zeros((0, 3), np.float32)], {"to": TensorProto.INT64}, 19, 1),
    ("Cast", [np.array(2.5, np.float32)], {"to": TensorProto.INT32}, 6, 1),
    # moved from the core kernel tests
    ("Cast", [rng.standard_normal(6).astype(np.float32) * 4], {"to": TensorProto.INT32}, 18, 1),
    ("Cast", [rng.integers(-3, 3, 4)], {"to": TensorProto.FLOAT}, 18, 1),
    ("Cast", [rng.standard_normal(4).astype(np.float32)], {"to": TensorProto.BOOL}, 18, 1),
    ("CastLike", [rng.integers(-3, 3, 4), rng.standard_normal(1).astype(np.float32)], {}, 18, 1),
    ("CastLike", [np.array([1.5, -7.25], np.float64), np.zeros(0, np.int16)], {}, 15, 1),
    ("CastLike", [np.array([True, False]), np.zeros((2, 2), np.float16)], {}, 21, 1),
]

STRING_CASES = [
    (
        "Cast",
        [np.array([0.5, 1, -2.25, 1e10, 3.1415927, 0.1, 1e20], np.float32)],
        {"to": TensorProto.STRING},
        13,
        1,
    ),
    (
        "Cast",
        [np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)],
        {"to": TensorProto.STRING},
        13,
        1,
    ),
    ("Cast", [np.array([[-5, 0], [2**40, 7]], np.int64)], {"to": TensorProto.STRING}, 13, 1),
    ("Cast", [np.array([255, 0], np.uint8)], {"to": TensorProto.STRING}, 13, 1),
    (
        "Cast",
        [np.array(["3.14", "1000", "1e-5", "1E8", "+INF", "inf", "-INF", "NaN", " 7"], object)],
        {"to": TensorProto.FLOAT},
        13,
        1,
    ),
    ("Cast", [np.array(["0.1", "-2.5e-300", "1e300"], object)], {"to": TensorProto.DOUBLE}, 13, 1),
    (
        "Cast",
        [np.array(["12", "-3", "+40", "2147483647"], object)],
        {"to": TensorProto.INT32},
        13,
        1,
    ),
    ("Cast", [np.array(["0", "1", "2", "0.0"], object)], {"to": TensorProto.BOOL}, 13, 1),
    ("Cast", [np.array(["a", "b"], object)], {"to": TensorProto.STRING}, 13, 1),
    ("CastLike", [np.array([1, 2], np.int32), np.array(["x"], object)], {}, 15, 1),
]

CASES = PAIR_CASES + EDGE_CASES + STRING_CASES


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    kinds = "x".join(f"{v.dtype}{list(v.shape)}" for v in inputs)
    target = onnx.TensorProto.DataType.Name(attrs["to"]) if "to" in attrs else ""
    return f"{op}-opset{opset}-{kinds}-{target}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


# -- narrow types: chains through the narrow type ----------------------------------------------


def chain_model(data, middle, back, attrs, opset):
    """x -> Cast(to=middle, **attrs) -> Cast(to=back): a narrow type seen through a wide one."""
    nodes = [
        helper.make_node("Cast", ["x"], ["narrow"], to=middle, **attrs),
        helper.make_node("Cast", ["narrow"], ["y"], to=back),
    ]
    x_info = helper.make_tensor_value_info("x", code(data.dtype), list(data.shape))
    y_info = helper.make_tensor_value_info("y", back, list(data.shape))
    graph = helper.make_graph(nodes, "chain", [x_info], [y_info])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


FLOAT8 = ["FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"]
NARROW_VALUES = np.array(
    [0.1, 1e6, -1e6, 1e-7, np.nan, np.inf, -np.inf, 0.47, 448, 470, 500, 57344, 60000,
     -0.0, 2.5, 3.5, -9, 15.5, 0.0009765625, 7.9, -0.013671875, 239, 241],
    np.float32,
)  # fmt: skip
HALF_VALUES = NARROW_VALUES[~(np.abs(NARROW_VALUES) >= 65504)].astype(np.float16)
POSITIVE = np.array(
    [0.1, 0.75, 0.74, 1.5, 3, 1e-40, 2.0**-127, 1.4 * 2.0**-127, 1.6 * 2.0**-127, 2.0**127,
     1.6 * 2.0**127, 1e6, np.nan, np.inf, 1e-7],
    np.float32,
)  # fmt: skip
FLOAT = TensorProto.FLOAT

CHAIN_CASES = [
    *[
        (NARROW_VALUES, getattr(TensorProto, name), FLOAT, {"saturate": saturate}, 19)
        for name in FLOAT8
        for saturate in (1, 0)
    ],
    (NARROW_VALUES, TensorProto.BFLOAT16, FLOAT, {}, 13),
    (HALF_VALUES, TensorProto.FLOAT8E4M3FN, FLOAT, {}, 21),
    (HALF_VALUES, TensorProto.FLOAT8E5M2, TensorProto.FLOAT16, {}, 21),
    (rng.standard_normal(40).astype(np.float32) * 50, TensorProto.FLOAT8E4M3FN, FLOAT, {}, 21),
    (rng.standard_normal(40).astype(np.float32) * 1e4, TensorProto.FLOAT8E5M2, FLOAT, {}, 21),
    (rng.standard_normal(40) * 1e3, TensorProto.BFLOAT16, TensorProto.DOUBLE, {}, 21),
    (np.arange(-8, 8, dtype=np.int8), TensorProto.INT4, TensorProto.INT32, {}, 21),
    (np.arange(0, 16, dtype=np.uint8), TensorProto.UINT4, FLOAT, {}, 21),
    (np.arange(-8, 8).astype(np.float32), TensorProto.INT4, FLOAT, {}, 21),
    (np.arange(-2, 2).astype(np.float32), TensorProto.INT2, FLOAT, {}, 25),
    (np.arange(0, 4, dtype=np.int64), TensorProto.UINT2, TensorProto.INT64, {}, 25),
    (np.array([-7, 100, 3], np.int32), TensorProto.BFLOAT16, TensorProto.INT32, {}, 21),
    *[
        (POSITIVE, TensorProto.FLOAT8E8M0, FLOAT, {"round_mode": mode, "saturate": saturate}, 25)
        for mode in ("up", "down", "nearest")
        for saturate in (1, 0)
    ],
]


def _chain_id(case):
    data, middle, back, attrs, opset = case
    names = [onnx.TensorProto.DataType.Name(t) for t in (middle, back)]
    options = "-".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return f"{data.dtype}[{data.size}]-{names[0]}-{names[1]}-{options}"


@pytest.mark.parametrize("case", CHAIN_CASES, ids=[_chain_id(c) for c in CHAIN_CASES])
def test_cast_through_a_narrow_type_matches_onnxruntime(case):
    data, middle, back, attrs, opset = case
    model = chain_model(data, middle, back, attrs, opset)
    expected = run_onnxruntime(model, {"x": data})
    actual = list(run_reference(load(model, check=False), {"x": data}).outputs.values())
    assert outputs_mismatch(expected, actual, rtol=0, atol=0) == ""


# -- narrow types: exact rounding from float64 -------------------------------------------------


def _run_cast(data, to, opset=21, **attrs):
    proto = one_node_model("Cast", [data], {"to": to, **attrs}, opset, 1)
    return next(iter(run_reference(load(proto, check=False), {"in0": data}).outputs.values()))


def _nearest_even(values, dtype):
    """Round each float64 to `dtype` by searching all its finite values (ties: even code)."""
    width = np.uint8 if np.dtype(dtype).itemsize == 1 else np.uint16
    codes = np.arange(np.iinfo(width).max + 1, dtype=np.uint64).astype(width)
    with np.errstate(invalid="ignore"):
        table = codes.view(dtype).astype(np.float64)
    finite = np.isfinite(table)
    codes, table = codes[finite], table[finite]
    distance = np.abs(table[None, :] - values[:, None])
    best = distance == distance.min(axis=1, keepdims=True)
    chosen = np.where(best & (codes[None, :] % 2 == 0), codes[None, :], 0).max(axis=1)
    single = best.sum(axis=1) == 1
    return np.where(single, codes[best.argmax(axis=1)], chosen).astype(width).view(dtype)


@pytest.mark.parametrize(
    "dtype", [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]
)
def test_float64_rounds_once_to_narrow_floats(dtype):
    table = np.arange(256 if np.dtype(dtype).itemsize == 1 else 65536, dtype=np.uint64)
    width = np.uint8 if np.dtype(dtype).itemsize == 1 else np.uint16
    with np.errstate(invalid="ignore"):
        values = np.sort(table.astype(width).view(dtype).astype(np.float64))
    values = values[np.isfinite(values) & (values > 0)]
    midpoints = (values[:-1] + values[1:]) / 2
    picked = rng.choice(midpoints, 200)
    near_ties = np.concatenate([picked * (1 + 2.0**-45), picked * (1 - 2.0**-45), picked])
    actual = _run_cast(near_ties, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    expected = _nearest_even(near_ties, dtype)
    np.testing.assert_array_equal(actual.view(width), expected.view(width))


def test_float64_rounds_once_to_float16():
    # onnxruntime rounds through float32 here and gets 1.0
    actual = _run_cast(np.array([1 + 2.0**-11 + 2.0**-40]), TensorProto.FLOAT16)
    np.testing.assert_array_equal(actual, np.float16([1 + 2.0**-10]))


def test_wide_integers_round_once_to_bfloat16():
    values = np.array([2**60 + 2**52 + 1, -(2**40) - 2**32 - 1, 2**63 - 1], np.int64)
    actual = _run_cast(values, TensorProto.BFLOAT16).astype(np.float64)
    np.testing.assert_array_equal(actual, [2**60 + 2**53, -(2**40) - 2**33, 2.0**63])


# -- strings -----------------------------------------------------------------------------------


def test_floats_print_in_their_shortest_round_trip_form():
    values = np.array([1e-5, 1e15, 123456789.0, 0.1, 1.0, np.nan], np.float32)
    texts = _run_cast(values, TensorProto.STRING)
    assert texts.tolist() == ["1e-05", "1e+15", "1.2345679e+08", "0.1", "1", "NaN"]
    doubles = _run_cast(np.array([0.1, 1 / 3]), TensorProto.STRING)
    assert doubles.tolist() == ["0.1", "0.3333333333333333"]
    assert _run_cast(np.array([0.1], np.float16), TensorProto.STRING).tolist() == ["0.1"]


def test_strings_parse_to_the_correctly_rounded_float32():
    # 1 + 2^-24 is the midpoint between 1 and the next float32; a literal just above it must
    # round up although the nearest float64 to it is the midpoint itself.
    texts = np.array(["1.00000005960464478", "1.000000059604644775390625", "1.0000000596046447"])
    parsed = _run_cast(texts.astype(object), TensorProto.FLOAT)
    np.testing.assert_array_equal(parsed, np.float32([1 + 2.0**-23, 1, 1]))


def test_non_numeric_strings_are_refused():
    with pytest.raises(Sod2Error, match="is not a number"):
        _run_cast(np.array(["hello"], object), TensorProto.FLOAT)
    with pytest.raises(UnsupportedOpError, match="not an integer"):
        _run_cast(np.array(["2.718"], object), TensorProto.INT32)


def test_negative_values_to_float8e8m0_are_refused():
    with pytest.raises(UnsupportedOpError, match="negative values"):
        _run_cast(np.array([1.0, -2.0], np.float32), TensorProto.FLOAT8E8M0, opset=25)


def test_float4_saturates_like_the_onnx_reference():
    values = np.array([0.25, 0.75, 5.0, 7.0, 1e6, -np.inf, -0.0], np.float32)
    actual = _run_cast(values, TensorProto.FLOAT4E2M1, opset=23).astype(np.float32)
    np.testing.assert_array_equal(actual, np.float32([0, 1, 4, 6, 6, -6, -0.0]))
