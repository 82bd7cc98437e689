"""Differential tests of RNN, GRU and LSTM against onnxruntime: directions, sequence lengths,
initial states, peepholes, clipping, custom activations, layout 1 and both GRU reset orders."""

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model
from sod2.testing.roundtrip import run_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def lengths(*values):
    return np.array(values, dtype=np.int32)


T, B, IN, H = 5, 3, 4, 6


def layer(
    op, gates, directions=1, bias=True, seq=None, h0=False, c0=False, peep=False, batch_first=False
):
    """The inputs of one recurrent node; absent optional inputs are None."""
    x = f32(T, B, IN)
    state = (directions, B, H)
    inputs = [
        x,
        f32(directions, gates * H, IN),
        f32(directions, gates * H, H),
        f32(directions, 2 * gates * H) if bias else None,
        seq,
        f32(*state) if h0 else None,
    ]
    if op == "LSTM":
        inputs += [f32(*state) if c0 else None, f32(directions, 3 * H) if peep else None]
    while inputs[-1] is None:
        inputs.pop()
    return inputs


SEQ = lengths(5, 2, 4)
BI = {"direction": "bidirectional"}

# (op, inputs, attrs, opset, outputs)
CASES = [
    # RNN
    ("RNN", layer("RNN", 1), {"hidden_size": H}, 14, 2),
    ("RNN", layer("RNN", 1, 2, seq=SEQ, h0=True), {"hidden_size": H, **BI}, 14, 2),
    ("RNN", layer("RNN", 1, bias=False), {"hidden_size": H, "direction": "reverse"}, 7, 1),
    ("RNN", layer("RNN", 1, seq=SEQ), {"hidden_size": H, "direction": "reverse"}, 14, 2),
    ("RNN", layer("RNN", 1), {"hidden_size": H, "activations": ["Relu"]}, 14, 2),
    (
        "RNN",
        layer("RNN", 1, 2),
        {
            "hidden_size": H,
            **BI,
            "activations": ["LeakyRelu", "HardSigmoid"],
            "activation_alpha": [0.1, 0.3],
            "activation_beta": [0.4],
        },
        14,
        2,
    ),
    # GRU
    ("GRU", layer("GRU", 3), {"hidden_size": H}, 14, 2),
    ("GRU", layer("GRU", 3, h0=True), {"hidden_size": H, "linear_before_reset": 1}, 14, 2),
    ("GRU", layer("GRU", 3, 2, seq=SEQ, h0=True), {"hidden_size": H, **BI}, 14, 2),
    (
        "GRU",
        layer("GRU", 3, seq=SEQ),
        {"hidden_size": H, "direction": "reverse", "clip": 0.3},
        7,
        2,
    ),
    ("GRU", layer("GRU", 3), {"hidden_size": H, "activations": ["HardSigmoid", "Softsign"]}, 14, 1),
    # LSTM
    ("LSTM", layer("LSTM", 4), {"hidden_size": H}, 14, 3),
    ("LSTM", layer("LSTM", 4, h0=True, c0=True, peep=True), {"hidden_size": H}, 14, 3),
    ("LSTM", layer("LSTM", 4, 2, seq=SEQ, h0=True, c0=True), {"hidden_size": H, **BI}, 14, 3),
    (
        "LSTM",
        layer("LSTM", 4, seq=SEQ, peep=True),
        {"hidden_size": H, "direction": "reverse"},
        7,
        3,
    ),
    ("LSTM", layer("LSTM", 4), {"hidden_size": H, "input_forget": 1}, 14, 2),
    ("LSTM", layer("LSTM", 4), {"hidden_size": H, "clip": 0.2}, 14, 3),
    (
        "LSTM",
        layer("LSTM", 4),
        {
            "hidden_size": H,
            "activations": ["HardSigmoid", "Elu", "ScaledTanh"],
            "activation_alpha": [0.3, 0.9, 1.5],
            "activation_beta": [0.4, 0.7],
        },
        14,
        3,
    ),
]


def _case_id(case):
    op, inputs, attrs, opset, outputs, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(sorted(attrs))}-outputs{outputs}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""


def _run_both(op, inputs, attrs, outputs):
    proto = one_node_model(op, inputs, attrs, 14, outputs)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return proto, feeds


@pytest.mark.parametrize(
    ("op", "inputs", "states"),
    [
        ("RNN", layer("RNN", 1, h0=True), 1),
        ("GRU", layer("GRU", 3, 2, seq=SEQ, h0=True), 1),
        ("LSTM", layer("LSTM", 4, 2, h0=True, c0=True), 2),
    ],
    ids=["RNN", "GRU", "LSTM"],
)
def test_batch_first_layout_transposes_the_time_major_result(op, inputs, states):
    # onnxruntime has no layout=1 kernels: compare with its layout=0 result, transposed
    attrs = {
        "hidden_size": H,
        "direction": "bidirectional" if inputs[1].shape[0] == 2 else "forward",
    }
    proto, feeds = _run_both(op, inputs, attrs, 1 + states)
    expected = run_onnxruntime(proto, feeds)
    batch_first = [
        None if v is None else v.swapaxes(0, 1) if i in (0, 5, 6) else v
        for i, v in enumerate(inputs)
    ]
    proto, feeds = _run_both(op, batch_first, {**attrs, "layout": 1}, 1 + states)
    actual = list(run_reference(load(proto, check=False), feeds).outputs.values())
    np.testing.assert_allclose(actual[0], expected[0].transpose(2, 0, 1, 3), rtol=1e-5, atol=1e-6)
    for got, want in zip(actual[1:], expected[1:], strict=True):
        np.testing.assert_allclose(got, want.swapaxes(0, 1), rtol=1e-5, atol=1e-6)
