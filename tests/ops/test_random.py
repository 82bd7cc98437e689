"""Tests of the random generators.

No two libraries draw the same random numbers, so the cases compared with onnxruntime are the
degenerate ones whose result is certain (a spread far below float32 resolution, probabilities 0
and 1, one class holding all the mass). The distributions themselves are checked by their
statistics on many draws, and seeding by repeatability.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.ops import catalogue
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(61)

# onnxruntime asserts scale > 0 and low < high; so small a spread vanishes in float32 rounding.
TINY = 1e-30
CERTAIN = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
ONE_CLASS = np.array([[0.0, -1000.0, -1000.0], [-1000.0, -1000.0, 5.0]], np.float32)

ORT_CASES = [
    ("RandomNormal", [], {"shape": [2, 3], "mean": 2.5, "scale": TINY}, 1, 1),
    ("RandomNormal", [], {"shape": [4], "mean": -1.0, "scale": TINY, "dtype": 11}, 21, 1),
    ("RandomUniform", [], {"shape": [3, 1], "low": 1.5, "high": 1.5}, 1, 1),
    ("RandomUniform", [], {"shape": [0, 2], "dtype": 11, "seed": 3.0}, 21, 1),
    ("RandomNormalLike", [rng.standard_normal((2, 4)).astype(np.float32)], {"scale": TINY}, 1, 1),
    (
        "RandomNormalLike",
        [np.zeros((3,), np.int32)],
        {"scale": TINY, "mean": 4.0, "dtype": 1},
        21,
        1,
    ),
    ("RandomUniformLike", [np.zeros((2, 2), np.float64)], {"low": -2.0, "high": -2.0 + TINY}, 1, 1),
    ("Multinomial", [ONE_CLASS], {"sample_size": 4}, 7, 1),
    ("Multinomial", [ONE_CLASS], {"sample_size": 3, "dtype": TensorProto.INT64}, 15, 1),
]

# onnxruntime's Bernoulli returns 1 where p = 0 and 0 where p = 1, the opposite of the ONNX
# specification (1 with probability p), so these certain cases are checked against the spec.
BERNOULLI_CASES = [
    ("Bernoulli", [CERTAIN], {}, 15, 1),
    ("Bernoulli", [CERTAIN.astype(np.float64)], {"dtype": TensorProto.INT32, "seed": 1.0}, 15, 1),
    ("Bernoulli", [CERTAIN.reshape(-1)], {"dtype": TensorProto.BOOL}, 22, 1),
]

CASES = ORT_CASES + BERNOULLI_CASES


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    return f"{op}-opset{opset}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", ORT_CASES, ids=[_case_id(c) for c in ORT_CASES])
def test_certain_outcomes_match_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


@pytest.mark.parametrize("case", BERNOULLI_CASES, ids=[_case_id(c) for c in BERNOULLI_CASES])
def test_certain_bernoulli_outcomes_follow_the_probabilities(case):
    op, (probabilities,), attrs, opset, _ = case
    values = _draw(op, [probabilities], attrs, opset)
    code = attrs.get("dtype")
    assert values.dtype == (
        probabilities.dtype if code is None else helper.tensor_dtype_to_np_dtype(code)
    )
    np.testing.assert_array_equal(values.astype(np.float32), probabilities.astype(np.float32))


def _draw(op, inputs, attrs, opset=22):
    proto = one_node_model(op, inputs, attrs, opset, 1)
    feeds = {f"in{i}": v for i, v in enumerate(inputs)}
    return next(iter(run_reference(load(proto, check=False), feeds).outputs.values()))


def test_random_ops_are_never_constant_folded():
    random_ops = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"}
    random_ops |= {"Bernoulli", "Multinomial"}
    entries = catalogue()
    assert all(not v.deterministic for op in random_ops for v in entries[("", op)])


def test_a_seed_repeats_its_draws_and_no_seed_does_not():
    attrs = {"shape": [64], "seed": 7.0}
    first, second = _draw("RandomNormal", [], attrs), _draw("RandomNormal", [], attrs)
    np.testing.assert_array_equal(first, second)
    other = _draw("RandomNormal", [], {"shape": [64], "seed": 8.0})
    assert not np.array_equal(first, other)
    unseeded = [_draw("RandomUniform", [], {"shape": [64]}) for _ in range(2)]
    assert not np.array_equal(*unseeded)


def test_normal_draws_have_the_requested_mean_and_scale():
    values = _draw(
        "RandomNormal", [], {"shape": [200, 100], "mean": 3.0, "scale": 2.0, "seed": 1.0}
    )
    assert values.dtype == np.float32 and values.shape == (200, 100)
    assert abs(values.mean() - 3.0) < 0.05 and abs(values.std() - 2.0) < 0.05


def test_uniform_draws_fill_the_interval():
    like = np.zeros((100, 200), np.float64)
    values = _draw("RandomUniformLike", [like], {"low": -1.0, "high": 3.0, "seed": 2.0})
    assert values.dtype == np.float64
    assert values.min() >= -1.0 and values.max() < 3.0 and abs(values.mean() - 1.0) < 0.05


def test_bernoulli_frequencies_follow_the_probabilities():
    probabilities = np.tile(np.array([0.1, 0.5, 0.9], np.float32), (20000, 1))
    values = _draw("Bernoulli", [probabilities], {"seed": 5.0})
    assert values.dtype == np.float32
    np.testing.assert_allclose(values.mean(axis=0), [0.1, 0.5, 0.9], atol=0.02)


def test_multinomial_frequencies_follow_the_softmax():
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.7, 0.1, 0.2]], np.float32))
    samples = _draw("Multinomial", [logits], {"sample_size": 20000, "seed": 9.0})
    assert samples.dtype == np.int32 and samples.shape == (2, 20000)
    frequencies = np.stack([np.bincount(row, minlength=3) / row.size for row in samples])
    np.testing.assert_allclose(frequencies, np.exp(logits), atol=0.02)
