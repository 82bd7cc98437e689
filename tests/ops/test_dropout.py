"""Differential tests of Dropout against onnxruntime in inference mode (opsets 7 to 22, with and
without the mask output and the ratio / training_mode inputs); training mode is random in
onnxruntime, so its seeded result is checked against numpy instead."""

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.errors import UnsupportedOpError
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


RATIO = np.array(0.3, np.float32)
OFF, ON = np.array(False), np.array(True)

# (op, inputs, attrs, opset, outputs)
CASES = [
    ("Dropout", [f32(3, 4)], {}, 7, 1),
    ("Dropout", [f32(3, 4)], {"ratio": 0.2}, 7, 1),
    ("Dropout", [f32(2, 3, 4)], {"ratio": 0.2}, 10, 1),
    ("Dropout", [f32(3, 4)], {}, 12, 1),
    ("Dropout", [f32(3, 4), RATIO], {}, 12, 2),
    ("Dropout", [f32(3, 4), RATIO, OFF], {}, 13, 2),
    ("Dropout", [f32(3, 4).astype(np.float64), RATIO, OFF], {}, 13, 2),
    ("Dropout", [f32(5), np.array(0.0, np.float32), ON], {}, 13, 2),
    ("Dropout", [f32(0, 4), RATIO], {}, 22, 2),
    ("Dropout", [np.array(1.5, np.float32), RATIO], {}, 22, 2),
]


def _case_id(case):
    op, inputs, attrs, opset, outputs, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-outputs{outputs}-{'-'.join(sorted(attrs))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""


def run_sod2(inputs, attrs, opset, outputs):
    proto = one_node_model("Dropout", inputs, attrs, opset, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return list(run_reference(load(proto, check=False), feeds).outputs.values())


def test_seeded_training_mode_draws_from_random_state():
    x = f32(4, 5)
    output, mask = run_sod2([x, RATIO, ON], {"seed": 3}, 13, 2)
    expected_mask = np.random.RandomState(3).uniform(0.0, 1.0, x.shape) >= 0.3
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(output, expected_mask * x / np.float32(0.7), rtol=1e-6)


def test_unseeded_training_mode_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="seed"):
        run_sod2([f32(4, 5), RATIO, ON], {}, 13, 1)


@pytest.mark.parametrize(("opset", "mask_type"), [(7, np.float32), (10, np.bool_)])
def test_inference_mask_before_opset_12_keeps_everything(opset, mask_type):
    # the mask of an inference-mode Dropout is unspecified before opset 12; sod2 follows the
    # onnx reference (all kept), onnxruntime returns all zeros
    x = f32(2, 3)
    output, mask = run_sod2([x], {"ratio": 0.2}, opset, 2)
    np.testing.assert_array_equal(output, x)
    assert mask.dtype == mask_type
    assert mask.shape == x.shape and np.all(mask == 1)
