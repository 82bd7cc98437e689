"""Matrix products on Numba's threads (`sod2.backend.blas`): the same results as `np.matmul`
for every layout the gemm reads in place, `np.matmul` itself for the rest, and OpenBLAS's
thread count as it was."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.backend import blas

pytestmark = pytest.mark.skipif(blas.GEMM is None, reason="numpy has no OpenBLAS with the calls")


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def assert_product(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None = None
) -> None:
    blas.matmul_into(a, b, out, bias)
    tolerance = 1e-4 if out.dtype == np.float32 else 1e-10
    expected = reference(a, b)
    if bias is not None:
        expected += bias[..., None]
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * scale)


def laid_out(x: np.ndarray, transposed: bool, pad: int) -> np.ndarray:
    """`x`'s values, stored transposed (by columns) and/or with `pad` elements after each row."""
    if transposed:
        return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
    wide = np.zeros((*x.shape[:-1], x.shape[-1] + pad), dtype=x.dtype)
    wide[..., : x.shape[-1]] = x
    return wide[..., : x.shape[-1]]


@settings(max_examples=80, deadline=None)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    k=st.integers(1, 40),
    layers=st.sampled_from([(), (3,), (2, 2)]),
    shared_b=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    pads=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    split=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_matmul_on_every_layout(
    m, n, k, layers, shared_b, dtype, trans_a, trans_b, pads, split, with_bias, seed
):
    rng = np.random.default_rng(seed)
    a = laid_out(rng.standard_normal((*layers, m, k)).astype(dtype), trans_a, pads[0])
    b_shape = (k, n) if shared_b else (*layers, k, n)
    b = laid_out(rng.standard_normal(b_shape).astype(dtype), trans_b, pads[1])
    out = laid_out(np.full((*layers, m, n), np.nan, dtype=dtype), False, pads[2])
    bias = rng.standard_normal((*layers, m)).astype(dtype) if with_bias else None
    with pytest.MonkeyPatch.context() as patch:
        if split:  # even the smallest product goes over every thread, in blocks
            patch.setattr(blas, "PARALLEL_MIN", 0)
        assert_product(a, b, out, bias)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(300, 70, 5), (5, 70, 300), (64, 256, 64)])
def test_blocks_of_rows_and_of_columns(shape, with_bias, monkeypatch):
    m, k, n = shape
    monkeypatch.setattr(blas, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    assert_product(a, b, np.full((m, n), np.nan, np.float32), bias)


def test_an_empty_product_with_a_bias_is_the_bias():
    bias = np.arange(3, dtype=np.float32)
    out = np.full((3, 4), np.nan, np.float32)
    blas.matmul_into(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), out, bias)
    np.testing.assert_array_equal(out, np.broadcast_to(bias[:, None], (3, 4)))


def test_a_bias_of_the_wrong_shape_is_an_error():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"a bias of shape \[4\] for an output of shape \[3, 5\]"):
        blas.matmul_into(a, np.ones((4, 5), np.float32), np.empty((3, 5), np.float32), a[0])


def test_a_bias_inside_the_output_and_a_strided_stack():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((3, 6)).astype(np.float32)
    out = np.zeros((4, 6), np.float32)
    out[:, 0] = bias = np.arange(4, dtype=np.float32)
    expected = a @ b + bias[:, None]
    blas.matmul_into(a, b, out, out[:, 0])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    stack = np.zeros((2, 2, 4, 8), np.float32)[..., :6]  # rank 4, not C-contiguous
    layers = rng.standard_normal((2, 2, 4)).astype(np.float32)
    assert_product(np.broadcast_to(a, (2, 2, 4, 3)).copy(), b, stack, layers)


def test_an_output_over_an_operand_is_left_to_numpy():
    rng = np.random.default_rng(2)
    square = rng.standard_normal((6, 6)).astype(np.float32)
    expected = reference(square, square)
    blas.matmul_into(square, square, square)  # numpy copies what it reads first
    np.testing.assert_allclose(square, expected, rtol=1e-5, atol=1e-5)


def test_unevenly_spaced_stacks_and_other_types_are_left_to_numpy():
    rng = np.random.default_rng(3)
    stack = rng.standard_normal((2, 3, 4, 5)).astype(np.float32).transpose(1, 0, 2, 3)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    assert_product(stack, b, np.empty((3, 2, 4, 6), np.float32))
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    out = np.empty((3, 3), np.int64)
    blas.matmul_into(ints, ints.T, out)
    np.testing.assert_array_equal(out, ints @ ints.T)
    columns = np.empty((4, 6), np.float32, order="F")  # an output by columns
    assert_product(rng.standard_normal((4, 5)).astype(np.float32), b, columns)


@pytest.mark.parametrize("with_bias", [False, True])
def test_stacks_repeated_along_the_first_axis(with_bias, monkeypatch):
    """A stack of one (keys) against a batch of stacks (queries), or the other way round: a
    product per layer of the first axis, each on the gemm (never numpy's loop)."""
    monkeypatch.setattr(blas, "_numpy", None)  # a call would fail the test
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    keys = rng.standard_normal((1, 4, 6, 7)).astype(np.float32)
    bias = rng.standard_normal((3, 4, 5)).astype(np.float32) if with_bias else None
    assert_product(queries, keys, np.empty((3, 4, 5, 7), np.float32), bias)
    rows = rng.standard_normal((1, 4, 7, 5)).astype(np.float32)
    bias = rng.standard_normal((3, 4, 7)).astype(np.float32) if with_bias else None
    assert_product(rows, queries, np.empty((3, 4, 7, 6), np.float32), bias)


def test_empty_products():
    out = np.full((3, 4), np.nan, np.float32)
    blas.matmul_into(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), out)
    np.testing.assert_array_equal(out, np.zeros((3, 4), np.float32))


def test_openblas_keeps_its_thread_count(monkeypatch):
    library = blas.openblas_library()
    assert library is not None
    count = library.openblas_set_num_threads_local
    count.restype, count.argtypes = ctypes.c_int, [ctypes.c_int]
    before = count(2)
    try:
        monkeypatch.setattr(blas, "PARALLEL_MIN", 0)
        a = np.ones((64, 64), np.float32)
        blas.matmul_into(a, a, np.empty_like(a))
        assert count(2) == 2
    finally:
        count(before)


def test_sod2_matmul_numpy_hands_every_product_to_numpy():
    code = "from sod2.backend import blas; print(blas.GEMM is None)"
    env = {**os.environ, "SOD2_MATMUL": "numpy"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
