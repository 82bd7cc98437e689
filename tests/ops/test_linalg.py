"""Differential tests of the linear-algebra kernels (MatMul, Gemm, Einsum and the integer and
quantized matmuls) against onnxruntime."""

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def f64(*shape):
    return rng.standard_normal(shape)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def scalar(value, dtype=np.float32):
    return np.array(value, dtype=dtype)


# (op, inputs, attrs, opset, outputs)
CASES = [
    # MatMul: 2-D, batched with broadcasting, 1-D operands, empty dims, integer and narrow types
    ("MatMul", [f32(3, 4), f32(4, 5)], {}, 13, 1),
    ("MatMul", [f32(2, 1, 3, 4), f32(5, 4, 6)], {}, 13, 1),
    ("MatMul", [f32(4), f32(4)], {}, 13, 1),
    ("MatMul", [f32(4), f32(2, 4, 3)], {}, 13, 1),
    ("MatMul", [f32(2, 3, 4), f32(4)], {}, 13, 1),
    ("MatMul", [f32(0, 4), f32(4, 3)], {}, 13, 1),
    ("MatMul", [f32(2, 0), f32(0, 3)], {}, 13, 1),
    ("MatMul", [f32(7, 33), f32(33, 9)], {}, 9, 1),
    ("MatMul", [f64(3, 5), f64(5, 2)], {}, 13, 1),
    ("MatMul", [f32(3, 8).astype(np.float16), f32(8, 2).astype(np.float16)], {}, 13, 1),
    ("MatMul", [ints(-9, 9, 3, 4, dtype=np.int32), ints(-9, 9, 4, 2, dtype=np.int32)], {}, 13, 1),
    ("MatMul", [ints(-9, 9, 2, 3, 4), ints(-9, 9, 4, 2)], {}, 13, 1),
    # Gemm: transposes, alpha/beta, C absent, scalar, row, column and full C
    ("Gemm", [f32(3, 4), f32(4, 5), f32(3, 5)], {}, 13, 1),
    ("Gemm", [f32(4, 3), f32(5, 4), f32(5)], {"transA": 1, "transB": 1}, 13, 1),
    ("Gemm", [f32(3, 4), f32(5, 4)], {"transB": 1, "alpha": 0.5}, 13, 1),
    ("Gemm", [f32(3, 4), f32(4, 5), f32(3, 1)], {"alpha": 2.0, "beta": -1.5}, 13, 1),
    ("Gemm", [f32(3, 4), f32(4, 5), scalar(2.0)], {"beta": 0.25}, 11, 1),
    ("Gemm", [f32(3, 4), f32(4, 5), f32(1, 5)], {"beta": 0.0}, 11, 1),
    ("Gemm", [f32(6, 2), f32(6, 7), f32(2, 7)], {"transA": 1}, 9, 1),
    ("Gemm", [f64(2, 3), f64(3, 2), f64(2)], {}, 13, 1),
    ("Gemm", [f32(0, 4), f32(4, 5), f32(5)], {}, 13, 1),
    # Einsum: contractions, transposes, diagonals, ellipsis, implicit output, spaces, upper case
    ("Einsum", [f32(3, 4), f32(4, 5)], {"equation": "ij,jk->ik"}, 12, 1),
    ("Einsum", [f32(2, 3, 4), f32(2, 4, 5)], {"equation": "bij, bjk -> bik"}, 12, 1),
    ("Einsum", [f32(3, 4)], {"equation": "ij->ji"}, 12, 1),
    ("Einsum", [f32(3, 4)], {"equation": "ij"}, 12, 1),
    ("Einsum", [f32(4, 4)], {"equation": "ii->i"}, 12, 1),
    ("Einsum", [f32(4, 4)], {"equation": "ii"}, 12, 1),
    ("Einsum", [f32(2, 3, 3)], {"equation": "bii->bi"}, 12, 1),
    ("Einsum", [f32(2, 5, 3, 4), f32(2, 5, 4, 6)], {"equation": "...ij,...jk->...ik"}, 12, 1),
    ("Einsum", [f32(2, 3, 4)], {"equation": "...i->..."}, 12, 1),
    ("Einsum", [f32(5), f32(5)], {"equation": "i,i"}, 12, 1),
    ("Einsum", [f32(3), f32(4)], {"equation": "i,j->ij"}, 12, 1),
    ("Einsum", [f32(2, 3), f32(3, 4), f32(4, 5)], {"equation": "ab,bc,cd->ad"}, 12, 1),
    ("Einsum", [f32(2, 3), f32(3, 4)], {"equation": "aB,Bc"}, 12, 1),
    ("Einsum", [f32(3, 4)], {"equation": "ij->"}, 12, 1),
    ("Einsum", [f32(0, 4), f32(4, 2)], {"equation": "ij,jk->ik"}, 12, 1),
    ("Einsum", [f64(3, 4), f64(4)], {"equation": "ij,j->i"}, 12, 1),
    (
        "Einsum",
        [ints(-5, 5, 3, 4, dtype=np.int32), ints(-5, 5, 4, dtype=np.int32)],
        {"equation": "ij,j->i"},
        12,
        1,
    ),
    # MatMulInteger: zero points per tensor, per row of A, per column of B
    (
        "MatMulInteger",
        [ints(0, 255, 3, 4, dtype=np.uint8), ints(0, 255, 4, 5, dtype=np.uint8)],
        {},
        10,
        1,
    ),
    (
        "MatMulInteger",
        [
            ints(0, 255, 3, 4, dtype=np.uint8),
            ints(0, 255, 4, 5, dtype=np.uint8),
            scalar(12, np.uint8),
            scalar(200, np.uint8),
        ],
        {},
        10,
        1,
    ),
    (
        "MatMulInteger",
        [
            ints(0, 255, 3, 4, dtype=np.uint8),
            ints(0, 255, 4, 5, dtype=np.uint8),
            scalar(3, np.uint8),
            ints(0, 255, 5, dtype=np.uint8),
        ],
        {},
        10,
        1,
    ),
    (
        "MatMulInteger",
        [
            ints(-128, 127, 3, 4, dtype=np.int8),
            ints(-128, 127, 4, 5, dtype=np.int8),
            scalar(-3, np.int8),
            ints(-128, 127, 5, dtype=np.int8),
        ],
        {},
        10,
        1,
    ),
    (
        "MatMulInteger",
        [
            ints(0, 255, 2, 3, 4, dtype=np.uint8),
            ints(0, 255, 4, 6, dtype=np.uint8),
            scalar(7, np.uint8),
        ],
        {},
        10,
        1,
    ),
    # QLinearMatMul: uint8 and int8, per-tensor scales, 1-D, 2-D and batched, opsets 10 and 21
    (
        "QLinearMatMul",
        [
            ints(0, 255, 4, dtype=np.uint8),
            scalar(0.05),
            scalar(120, np.uint8),
            ints(0, 255, 4, dtype=np.uint8),
            scalar(0.02),
            scalar(130, np.uint8),
            scalar(0.3),
            scalar(128, np.uint8),
        ],
        {},
        10,
        1,
    ),
    (
        "QLinearMatMul",
        [
            ints(0, 255, 3, 4, dtype=np.uint8),
            scalar(0.05),
            scalar(120, np.uint8),
            ints(0, 255, 4, 5, dtype=np.uint8),
            scalar(0.02),
            scalar(130, np.uint8),
            scalar(0.3),
            scalar(128, np.uint8),
        ],
        {},
        10,
        1,
    ),
    (
        "QLinearMatMul",
        [
            ints(-128, 127, 2, 3, 4, dtype=np.int8),
            scalar(0.05),
            scalar(-3, np.int8),
            ints(-128, 127, 4, 5, dtype=np.int8),
            scalar(0.04),
            scalar(2, np.int8),
            scalar(0.5),
            scalar(-10, np.int8),
        ],
        {},
        21,
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


def run_sod2(op, inputs, attrs, opset, outputs=1):
    proto = one_node_model(op, inputs, attrs, opset, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return list(run_reference(load(proto, check=False), feeds).outputs.values())


def test_matmul_integer_zero_point_per_row_of_a():
    # onnxruntime accepts only a scalar zero point for A (and its uint8 x int8 path saturates
    # 16-bit partial sums on some CPUs); the expected value is plain numpy
    a, b = ints(0, 255, 3, 4, dtype=np.uint8), ints(-128, 127, 4, 5, dtype=np.int8)
    a_zero, b_zero = ints(0, 255, 3, dtype=np.uint8), ints(-128, 127, 5, dtype=np.int8)
    (result,) = run_sod2("MatMulInteger", [a, b, a_zero, b_zero], {}, 10)
    expected = (a.astype(np.int32) - a_zero[:, None]) @ (b.astype(np.int32) - b_zero)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, expected)
