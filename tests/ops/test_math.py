"""Differential tests of the math kernels (trigonometry, IsNaN/IsInf, BitShift, Det, windows,
MelWeightMatrix, DFT, STFT) against onnxruntime.

Each case is one node, run by onnxruntime and by the reference interpreter; several shapes per
operator stand in for the dynamic shapes a model sees at run time.
"""

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load
from sod2.testing.differential import check_op_against_onnxruntime, one_node_model

rng = np.random.default_rng(11)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def uniform(low, high, *shape, dtype=np.float32):
    return rng.uniform(low, high, shape).astype(dtype)


def i64(value):
    return np.array(value, dtype=np.int64)


def ints(low, high, *shape, dtype):
    return rng.integers(low, high, shape).astype(dtype)


SPECIALS = np.array([1.0, np.nan, np.inf, -np.inf, -2.5, 0.0], dtype=np.float32)

TRIGONOMETRY = [
    ("Sin", lambda *s: f32(*s, scale=3)),
    ("Cos", lambda *s: f32(*s, scale=3)),
    ("Tan", lambda *s: uniform(-1.5, 1.5, *s)),
    ("Asin", lambda *s: uniform(-0.99, 0.99, *s)),
    ("Acos", lambda *s: uniform(-0.99, 0.99, *s)),
    ("Atan", lambda *s: f32(*s, scale=4)),
    ("Sinh", lambda *s: f32(*s, scale=2)),
    ("Cosh", lambda *s: f32(*s, scale=2)),
    ("Asinh", lambda *s: f32(*s, scale=4)),
    ("Acosh", lambda *s: uniform(1.0, 9.0, *s)),
    ("Atanh", lambda *s: uniform(-0.99, 0.99, *s)),
]

GENERAL_CASES = [
    *[(op, [make(2, 3)], {}, 11, 1) for op, make in TRIGONOMETRY],
    *[(op, [make(4, 1, 5)], {}, 22, 1) for op, make in TRIGONOMETRY],
    *[(op, [make(0, 3)], {}, 22, 1) for op, make in TRIGONOMETRY[:2]],
    ("Sin", [f32(7).astype(np.float64)], {}, 22, 1),
    ("Cos", [f32(3, 2).astype(np.float16)], {}, 22, 1),
    ("IsNaN", [SPECIALS], {}, 9, 1),
    ("IsNaN", [SPECIALS.reshape(2, 3)], {}, 20, 1),
    ("IsNaN", [SPECIALS.astype(np.float16)], {}, 20, 1),
    ("IsInf", [SPECIALS], {}, 10, 1),
    ("IsInf", [SPECIALS.reshape(3, 2)], {"detect_negative": 0}, 20, 1),
    ("IsInf", [SPECIALS.astype(np.float64)], {"detect_positive": 0}, 20, 1),
    (
        "BitShift",
        [ints(0, 255, 6, dtype=np.uint8), ints(0, 8, 6, dtype=np.uint8)],
        {"direction": "LEFT"},
        11,
        1,
    ),
    (
        "BitShift",
        [ints(0, 2**31, 2, 3, dtype=np.uint32), ints(0, 32, 3, dtype=np.uint32)],
        {"direction": "RIGHT"},
        11,
        1,
    ),
    (
        "BitShift",
        [ints(0, 2**40, 4, dtype=np.uint64), ints(0, 64, 1, dtype=np.uint64)],
        {"direction": "LEFT"},
        18,
        1,
    ),
    (
        "BitShift",
        [ints(0, 2**16, 5, dtype=np.uint16), ints(0, 16, 5, dtype=np.uint16)],
        {"direction": "RIGHT"},
        18,
        1,
    ),
    # opset 28 defines signed shifts and shift amounts outside [0, bits)
    (
        "BitShift",
        [np.array([1, 2, -8, -128, 64, -1], np.int8), np.array([1, 9, -1, 2, 1, 7], np.int8)],
        {"direction": "RIGHT"},
        28,
        1,
    ),
    (
        "BitShift",
        [np.array([1, 2, -8, -128, 64, -1], np.int8), np.array([1, 9, -1, 2, 1, 7], np.int8)],
        {"direction": "LEFT"},
        28,
        1,
    ),
    (
        "BitShift",
        [ints(-(2**31), 2**31, 3, 4, dtype=np.int32), ints(-3, 35, 4, dtype=np.int32)],
        {"direction": "RIGHT"},
        28,
        1,
    ),
    (
        "BitShift",
        [ints(-(2**40), 2**40, 6, dtype=np.int64), ints(-3, 67, 6, dtype=np.int64)],
        {"direction": "LEFT"},
        28,
        1,
    ),
    (
        "BitShift",
        [np.array([200, 7], np.uint8), np.array([8, 200], np.uint8)],
        {"direction": "RIGHT"},
        28,
        1,
    ),
    ("Det", [f32(3, 3)], {}, 11, 1),
    ("Det", [f32(4, 2, 2)], {}, 22, 1),
    ("Det", [f32(2, 3, 5, 5)], {}, 22, 1),
    ("Det", [f32(0, 3, 3)], {}, 22, 1),
    ("HannWindow", [np.array(10, np.int32)], {}, 17, 1),
    ("HannWindow", [i64(7)], {"periodic": 0, "output_datatype": 11}, 17, 1),
    ("HammingWindow", [i64(16)], {}, 17, 1),
    ("HammingWindow", [np.array(5, np.int32)], {"periodic": 0}, 17, 1),
    ("BlackmanWindow", [i64(12)], {}, 17, 1),
    ("BlackmanWindow", [i64(9)], {"periodic": 0, "output_datatype": 11}, 17, 1),
    (
        "MelWeightMatrix",
        [i64(8), i64(64), i64(16000), np.array(100, np.float32), np.array(6000, np.float32)],
        {},
        17,
        1,
    ),
    (
        "MelWeightMatrix",
        [
            np.array(10, np.int32),
            np.array(128, np.int32),
            np.array(8000, np.int32),
            np.array(0, np.float32),
            np.array(4000, np.float32),
        ],
        {"output_datatype": 11},
        17,
        1,
    ),
]

# onnxruntime computes DFT and STFT in float32 with drift of about 1e-6 * length; numpy's FFT
# stays within 1e-7 of the float64 transform, so these compare with a looser tolerance and
# `test_dft_matches_definition` checks the kernel tightly against the defining sum.
SPECTRAL_CASES = [
    ("DFT", [f32(2, 6, 1)], {"axis": 1}, 17, 1),
    ("DFT", [f32(1, 4, 5, 2)], {"axis": 2}, 17, 1),
    ("DFT", [f32(1, 4, 5, 2)], {"axis": -3, "inverse": 1}, 17, 1),
    ("DFT", [f32(3, 8, 1), i64(10)], {"onesided": 1}, 17, 1),
    ("DFT", [f32(2, 6, 1)], {}, 20, 1),
    ("DFT", [f32(3, 7, 2), i64(9)], {}, 20, 1),
    ("DFT", [f32(3, 7, 2), i64(4)], {"inverse": 1}, 20, 1),
    ("DFT", [f32(2, 5, 3, 1), None, i64(1)], {"onesided": 1}, 20, 1),
    ("DFT", [f32(4, 6, 2), None, i64(0)], {}, 20, 1),
    ("DFT", [f32(2, 9, 1), i64(6), i64(-2)], {"onesided": 1}, 20, 1),
    ("DFT", [f32(2, 4, 2)], {"onesided": 1, "inverse": 1}, 20, 1),
    ("DFT", [f32(3, 4, 2), i64(7)], {"onesided": 1, "inverse": 1}, 20, 1),
    ("STFT", [f32(2, 32, 1), i64(4), None, i64(8)], {}, 17, 1),
    ("STFT", [f32(1, 40, 1), i64(5), uniform(0, 1, 16)], {}, 17, 1),
    ("STFT", [f32(2, 20, 1), i64(3), uniform(0, 1, 6), i64(6)], {"onesided": 0}, 17, 1),
]


CASES = GENERAL_CASES + SPECTRAL_CASES


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else f"{v.dtype}{list(v.shape)}" for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", GENERAL_CASES, ids=[_case_id(c) for c in GENERAL_CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case) == ""


@pytest.mark.parametrize("case", SPECTRAL_CASES, ids=[_case_id(c) for c in SPECTRAL_CASES])
def test_spectral_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-4, atol=2e-5) == ""


def _run_sod2(op, inputs, attrs, opset):
    proto = one_node_model(op, inputs, attrs, opset, 1)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    return next(iter(run_reference(load(proto, check=False), feeds).outputs.values()))


def _dft_by_definition(signal, axis, inverse=False):
    """y[k] = sum_n x[n] e^(-+2 pi j k n / N) (/ N when inverse), in float64."""
    values = signal[..., 0] + (1j * signal[..., 1] if signal.shape[-1] == 2 else 0)
    values = np.moveaxis(values, axis, -1)
    n = values.shape[-1]
    sign = 1 if inverse else -1
    basis = np.exp(sign * 2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n)
    result = np.moveaxis(values.astype(np.complex128) @ basis / (n if inverse else 1), -1, axis)
    return np.stack([result.real, result.imag], axis=-1)


@pytest.mark.parametrize("shape", [(2, 6, 1), (1, 5, 4, 2), (3, 16, 2)])
@pytest.mark.parametrize("inverse", [0, 1])
def test_dft_matches_definition(shape, inverse):
    signal = f32(*shape)
    actual = _run_sod2("DFT", [signal, None, i64(1)], {"inverse": inverse}, 20)
    np.testing.assert_allclose(actual, _dft_by_definition(signal, 1, inverse), atol=2e-6)


def test_stft_of_complex_signal_matches_definition():
    # onnxruntime rejects complex STFT signals; each frame is checked against the defining sum.
    signal, window = f32(2, 20, 2), uniform(0, 1, 6)
    actual = _run_sod2("STFT", [signal, i64(3), window], {"onesided": 0}, 17)
    frames = np.stack([signal[:, start : start + 6] for start in range(0, 15, 3)], axis=1)
    expected = _dft_by_definition(frames * window[:, None], 2)
    np.testing.assert_allclose(actual, expected, atol=5e-6)


def test_stft_without_frame_length_uses_the_whole_signal():
    # onnxruntime predates this default (frame_length = signal_length when there is no window).
    signal = f32(1, 12, 1)
    actual = _run_sod2("STFT", [signal, i64(12)], {"onesided": 0}, 17)
    np.testing.assert_allclose(actual, _dft_by_definition(signal[:, None], 2), atol=5e-6)
