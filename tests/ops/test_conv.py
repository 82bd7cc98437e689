"""Differential tests of the convolution kernels against onnxruntime: Conv in 1-D, 2-D and 3-D
with groups, dilations, strides, pads and every auto_pad; ConvTranspose; the integer and
quantized convolutions; DeformConv."""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def scalar(value, dtype=np.float32):
    return np.array(value, dtype=dtype)


def positive(*shape):
    return rng.uniform(0.01, 0.1, shape).astype(np.float32)


# (op, inputs, attrs, opset, outputs)
CASES = [
    # Conv 2-D: pads, strides, dilations, bias, groups, depthwise, every auto_pad
    ("Conv", [f32(1, 3, 7, 7), f32(4, 3, 3, 3)], {}, 11, 1),
    ("Conv", [f32(2, 3, 8, 9), f32(5, 3, 3, 3), f32(5)], {"pads": [1, 1, 1, 1]}, 11, 1),
    ("Conv", [f32(1, 2, 9, 8), f32(3, 2, 3, 2)], {"strides": [2, 3], "pads": [1, 0, 2, 1]}, 22, 1),
    (
        "Conv",
        [f32(1, 2, 10, 10), f32(3, 2, 3, 3)],
        {"dilations": [2, 3], "pads": [2, 2, 2, 2]},
        11,
        1,
    ),
    ("Conv", [f32(2, 6, 7, 7), f32(4, 3, 3, 3), f32(4)], {"group": 2, "pads": [1, 1, 1, 1]}, 11, 1),
    ("Conv", [f32(1, 4, 6, 6), f32(4, 1, 3, 3)], {"group": 4, "strides": [2, 2]}, 11, 1),
    ("Conv", [f32(1, 4, 6, 6), f32(8, 1, 3, 3)], {"group": 4, "pads": [1, 1, 1, 1]}, 11, 1),
    (
        "Conv",
        [f32(1, 3, 7, 8), f32(2, 3, 3, 3)],
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        11,
        1,
    ),
    (
        "Conv",
        [f32(1, 3, 7, 8), f32(2, 3, 4, 4)],
        {"auto_pad": "SAME_LOWER", "strides": [2, 3]},
        11,
        1,
    ),
    ("Conv", [f32(1, 3, 7, 8), f32(2, 3, 4, 2)], {"auto_pad": "SAME_UPPER"}, 11, 1),
    ("Conv", [f32(1, 3, 7, 8), f32(2, 3, 3, 3)], {"auto_pad": "VALID", "strides": [2, 2]}, 11, 1),
    ("Conv", [f32(1, 3, 5, 5), f32(2, 3, 3, 3)], {"kernel_shape": [3, 3]}, 11, 1),
    ("Conv", [f32(2, 8, 5, 5), f32(16, 8, 1, 1), f32(16)], {}, 11, 1),
    ("Conv", [f32(0, 3, 5, 5), f32(2, 3, 3, 3)], {}, 11, 1),
    # Conv 1-D and 3-D
    ("Conv", [f32(2, 3, 11), f32(4, 3, 3), f32(4)], {"pads": [1, 2], "strides": [2]}, 11, 1),
    ("Conv", [f32(1, 2, 9), f32(2, 1, 3)], {"group": 2, "dilations": [3]}, 11, 1),
    ("Conv", [f32(1, 2, 5, 6, 7), f32(3, 2, 3, 3, 3)], {"pads": [1, 0, 1, 1, 0, 1]}, 11, 1),
    (
        "Conv",
        [f32(1, 2, 6, 6, 6), f32(2, 2, 2, 2, 2)],
        {"auto_pad": "SAME_LOWER", "strides": [2, 2, 2]},
        11,
        1,
    ),
    # ConvTranspose: pads, strides, output_padding, output_shape, groups, dilations, auto_pad
    ("ConvTranspose", [f32(1, 2, 3, 3), f32(2, 3, 3, 3)], {}, 11, 1),
    (
        "ConvTranspose",
        [f32(2, 2, 4, 3), f32(2, 3, 3, 3), f32(3)],
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 2, 4, 4), f32(2, 2, 3, 2)],
        {"strides": [3, 2], "output_padding": [1, 1]},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 2, 4, 4), f32(2, 2, 3, 3)],
        {"strides": [2, 2], "output_shape": [10, 9]},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 2, 4, 4), f32(2, 2, 3, 3)],
        {"strides": [2, 2], "output_shape": [9, 8], "auto_pad": "SAME_UPPER"},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 4, 3, 3), f32(4, 2, 3, 3), f32(4)],
        {"group": 2, "strides": [2, 2]},
        11,
        1,
    ),
    ("ConvTranspose", [f32(1, 3, 3, 3), f32(3, 1, 3, 3)], {"group": 3}, 22, 1),
    (
        "ConvTranspose",
        [f32(1, 2, 4, 4), f32(2, 2, 2, 2)],
        {"dilations": [2, 2], "pads": [1, 0, 0, 1]},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 2, 3, 4), f32(2, 2, 3, 3)],
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        11,
        1,
    ),
    (
        "ConvTranspose",
        [f32(1, 2, 3, 4), f32(2, 2, 3, 3)],
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        11,
        1,
    ),
    ("ConvTranspose", [f32(1, 2, 3, 3), f32(2, 2, 3, 3)], {"auto_pad": "VALID"}, 11, 1),
    (
        "ConvTranspose",
        [f32(2, 3, 5), f32(3, 2, 4), f32(2)],
        {"strides": [3], "pads": [1, 2]},
        11,
        1,
    ),
    ("ConvTranspose", [f32(1, 2, 2, 3, 2), f32(2, 2, 2, 2, 2)], {"strides": [2, 1, 2]}, 11, 1),
    ("ConvTranspose", [f32(0, 2, 3, 3), f32(2, 3, 3, 3)], {}, 11, 1),
    # ConvInteger and QLinearConv
    (
        "ConvInteger",
        [ints(0, 255, 1, 2, 5, 5, dtype=np.uint8), ints(0, 255, 3, 2, 3, 3, dtype=np.uint8)],
        {},
        10,
        1,
    ),
    (
        "ConvInteger",
        [
            ints(0, 255, 1, 2, 5, 5, dtype=np.uint8),
            ints(0, 255, 3, 2, 3, 3, dtype=np.uint8),
            scalar(100, np.uint8),
            scalar(120, np.uint8),
        ],
        {"pads": [1, 1, 1, 1], "strides": [2, 2]},
        10,
        1,
    ),
    (
        "ConvInteger",
        [
            ints(0, 255, 1, 4, 5, 5, dtype=np.uint8),
            ints(0, 255, 2, 2, 3, 3, dtype=np.uint8),
            scalar(10, np.uint8),
        ],
        {"group": 2, "auto_pad": "SAME_UPPER"},
        10,
        1,
    ),
    (
        "QLinearConv",
        [
            ints(0, 255, 1, 2, 6, 6, dtype=np.uint8),
            scalar(0.05),
            scalar(128, np.uint8),
            ints(0, 255, 3, 2, 3, 3, dtype=np.uint8),
            scalar(0.01),
            scalar(127, np.uint8),
            scalar(0.2),
            scalar(120, np.uint8),
        ],
        {"pads": [1, 1, 1, 1]},
        10,
        1,
    ),
    (
        "QLinearConv",
        [
            ints(-128, 127, 1, 4, 6, 6, dtype=np.int8),
            scalar(0.05),
            scalar(3, np.int8),
            ints(-128, 127, 4, 2, 3, 3, dtype=np.int8),
            positive(4),
            np.zeros(4, np.int8),
            scalar(0.5),
            scalar(-5, np.int8),
            ints(-500, 500, 4, dtype=np.int32),
        ],
        {"group": 2, "strides": [2, 2]},
        10,
        1,
    ),
    # DeformConv: zero offsets equal Conv; real offsets, mask, bias, offset groups
    (
        "DeformConv",
        [f32(1, 2, 5, 5), f32(3, 2, 3, 3), np.zeros((1, 18, 3, 3), np.float32)],
        {},
        19,
        1,
    ),
    (
        "DeformConv",
        [
            f32(2, 2, 5, 6),
            f32(3, 2, 3, 3),
            f32(2, 18, 5, 6),
            f32(3),
            rng.uniform(0, 1, (2, 9, 5, 6)).astype(np.float32),
        ],
        {"pads": [1, 1, 1, 1]},
        19,
        1,
    ),
    (
        "DeformConv",
        [f32(1, 4, 6, 6), f32(4, 2, 2, 2), f32(1, 16, 3, 3) * 2],
        {"group": 2, "offset_group": 2, "strides": [2, 2], "dilations": [1, 1]},
        22,
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
