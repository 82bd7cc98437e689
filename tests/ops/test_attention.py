"""Differential tests of Attention and RotaryEmbedding against onnxruntime: 3-D and 4-D inputs,
masks (boolean, float, broadcast), causal masking with a past cache, grouped-query heads, scale,
softcap, the qk_matmul_output modes, and rotary embeddings with and without position ids."""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


B, HQ, HKV, S, L, D = 2, 4, 2, 3, 5, 8
Q4, K4, V4 = f32(B, HQ, S, D), f32(B, HQ, L, D), f32(B, HQ, L, 6)
BOOL_MASK = rng.random((S, L)) > 0.3
FLOAT_MASK = f32(B, 1, S, L)

# (op, inputs, attrs, opset, outputs)
CASES = [
    ("Attention", [Q4, K4, V4], {}, 23, 1),
    ("Attention", [Q4, K4, V4, BOOL_MASK], {}, 23, 1),
    ("Attention", [Q4, K4, V4, FLOAT_MASK], {"scale": 0.2}, 23, 1),
    ("Attention", [Q4, f32(B, HQ, S, D), f32(B, HQ, S, D)], {"is_causal": 1}, 23, 1),
    ("Attention", [Q4, f32(B, HKV, L, D), f32(B, HKV, L, 6)], {"softcap": 2.0}, 23, 1),
    (
        "Attention",
        [f32(B, S, HQ * D), f32(B, L, HKV * D), f32(B, L, HKV * 6)],
        {"q_num_heads": HQ, "kv_num_heads": HKV},
        23,
        1,
    ),
    (
        "Attention",
        [Q4, f32(B, HQ, 2, D), f32(B, HQ, 2, 6), None, f32(B, HQ, 4, D), f32(B, HQ, 4, 6)],
        {"is_causal": 1},
        23,
        3,
    ),
    ("Attention", [Q4, K4, V4, FLOAT_MASK], {"qk_matmul_output_mode": 2}, 23, 4),
    ("Attention", [Q4, K4, V4, BOOL_MASK], {"qk_matmul_output_mode": 3}, 23, 4),
    (
        "Attention",
        [Q4, K4, V4, None, None, None, np.array([4, 2], np.int64)],
        {"is_causal": 1},
        24,
        1,
    ),
    ("Attention", [Q4, K4, V4, BOOL_MASK], {"left_window_size": 1, "right_window_size": 2}, 25, 1),
    # RotaryEmbedding
    (
        "RotaryEmbedding",
        [f32(2, 3, 4, 8), f32(4, 4), f32(4, 4), np.array([[0, 1, 2, 3], [1, 3, 2, 0]], np.int64)],
        {},
        23,
        1,
    ),
    (
        "RotaryEmbedding",
        [f32(2, 3, 4, 8), f32(4, 4), f32(4, 4), np.array([[0, 1, 2, 3], [1, 3, 2, 0]], np.int64)],
        {"interleaved": 1},
        23,
        1,
    ),
    (
        "RotaryEmbedding",
        [f32(2, 4, 12), f32(2, 4, 2), f32(2, 4, 2)],
        {"num_heads": 2, "rotary_embedding_dim": 4},
        23,
        1,
    ),
    (
        "RotaryEmbedding",
        [f32(2, 4, 12), f32(2, 4, 3), f32(2, 4, 3)],
        {"num_heads": 2, "interleaved": 1},
        23,
        1,
    ),
]


def _case_id(case):
    op, inputs, attrs, opset, outputs, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(sorted(attrs))}-outputs{outputs}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""
