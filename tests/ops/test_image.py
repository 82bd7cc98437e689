"""Differential tests of the image kernels against onnxruntime: Resize in every mode and
coordinate mapping, Upsample, DepthToSpace / SpaceToDepth, GridSample, RoiAlign, AffineGrid,
Col2Im and CenterCropPad."""

import numpy as np
import pytest

from sod2.testing.differential import check_op_against_onnxruntime

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape).astype(dtype)


def floats(*values):
    return np.array(values, dtype=np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


NO_ROI = np.array([], dtype=np.float32)
IMAGE = f32(1, 2, 4, 5)
UP = floats(1, 1, 2, 3)
DOWN = floats(1, 1, 0.6, 0.8)


def resize(x, scales=None, sizes=None, opset=19, roi=None, **attrs):
    roi = NO_ROI if roi is None else roi
    inputs = [x, roi, scales] if sizes is None else [x, roi, None, sizes]
    if opset == 11 and scales is None:
        inputs[2] = NO_ROI
    return ("Resize", inputs, attrs, opset, 1)


# (op, inputs, attrs, opset, outputs)
CASES = [
    # Resize nearest: the four rounding rules with several coordinate mappings
    resize(IMAGE, UP),
    resize(IMAGE, DOWN),
    resize(IMAGE, sizes=i64(1, 2, 7, 3), nearest_mode="round_prefer_ceil"),
    resize(
        IMAGE,
        sizes=i64(1, 2, 9, 11),
        nearest_mode="floor",
        coordinate_transformation_mode="align_corners",
    ),
    resize(
        IMAGE,
        sizes=i64(1, 2, 9, 11),
        nearest_mode="ceil",
        coordinate_transformation_mode="asymmetric",
    ),
    resize(IMAGE, UP, coordinate_transformation_mode="pytorch_half_pixel"),
    resize(IMAGE, UP, opset=11, coordinate_transformation_mode="tf_half_pixel_for_nn"),
    resize(ints(0, 255, 1, 1, 3, 4, dtype=np.uint8), floats(1, 1, 2, 2)),
    # Resize linear
    resize(IMAGE, UP, mode="linear"),
    resize(IMAGE, DOWN, mode="linear"),
    resize(
        IMAGE, sizes=i64(1, 2, 7, 3), mode="linear", coordinate_transformation_mode="align_corners"
    ),
    resize(
        IMAGE, sizes=i64(1, 2, 8, 10), mode="linear", coordinate_transformation_mode="asymmetric"
    ),
    resize(
        IMAGE,
        sizes=i64(1, 2, 7, 1),
        mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel",
    ),
    resize(
        IMAGE,
        floats(1, 1, 1.7, 0.7),
        mode="linear",
        coordinate_transformation_mode="half_pixel_symmetric",
    ),
    resize(IMAGE, sizes=i64(1, 2, 2, 3), mode="linear", antialias=1),
    resize(f32(1, 1, 9, 8), floats(1, 1, 0.4, 0.5), mode="linear", antialias=1),
    resize(f32(2, 3, 6), floats(1, 1, 2.5), mode="linear"),
    resize(f32(1, 2, 3, 4, 5), floats(1, 1, 2, 0.5, 1.5), mode="linear"),
    # Resize cubic
    resize(IMAGE, UP, mode="cubic"),
    resize(IMAGE, DOWN, mode="cubic"),
    resize(IMAGE, UP, mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1),
    resize(
        IMAGE, sizes=i64(1, 2, 9, 7), mode="cubic", coordinate_transformation_mode="align_corners"
    ),
    resize(IMAGE, sizes=i64(1, 2, 9, 7), mode="cubic", coordinate_transformation_mode="asymmetric"),
    resize(f32(1, 1, 9, 8), floats(1, 1, 0.4, 0.5), mode="cubic", antialias=1),
    resize(f32(1, 1, 9, 8), sizes=i64(1, 1, 3, 5), mode="cubic", antialias=1, exclude_outside=1),
    # Resize: tf_crop_and_resize with extrapolation, axes, keep_aspect_ratio_policy, opsets 11/13/18
    resize(
        IMAGE,
        sizes=i64(1, 2, 3, 3),
        roi=floats(0, 0, 0.4, 0.6, 1, 1, 1.2, 0.9),
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=10.0,
    ),
    resize(
        IMAGE,
        sizes=i64(3, 3),
        roi=floats(0.35, -0.2, 0.65, 0.9),
        mode="nearest",
        axes=[2, 3],
        coordinate_transformation_mode="tf_crop_and_resize",
    ),
    resize(IMAGE, floats(2, 3), axes=[-2, 3], mode="linear"),
    resize(IMAGE, sizes=i64(6, 6), axes=[3, 2]),
    resize(
        IMAGE, sizes=i64(7, 7), axes=[2, 3], keep_aspect_ratio_policy="not_larger", mode="linear"
    ),
    resize(IMAGE, sizes=i64(7, 7), axes=[2, 3], keep_aspect_ratio_policy="not_smaller"),
    resize(IMAGE, UP, opset=11, mode="linear"),
    resize(IMAGE, sizes=i64(1, 2, 6, 6), opset=11, mode="cubic"),
    resize(IMAGE, UP, opset=13, mode="linear", coordinate_transformation_mode="align_corners"),
    resize(IMAGE, sizes=i64(1, 2, 6, 7), opset=18, mode="linear", antialias=1),
    resize(f32(0, 2, 4, 5), UP, mode="linear"),
    # Resize-10 and Upsample: asymmetric coordinates, legacy nearest rule
    ("Resize", [IMAGE, floats(1, 1, 2, 3)], {}, 10, 1),
    ("Resize", [IMAGE, floats(1, 1, 0.5, 0.6)], {}, 10, 1),
    ("Resize", [IMAGE, floats(1, 1, 2, 1.5)], {"mode": "linear"}, 10, 1),
    ("Upsample", [IMAGE, floats(1, 1, 2, 3)], {}, 9, 1),
    ("Upsample", [IMAGE, floats(1, 1, 1.5, 2.5)], {"mode": "linear"}, 9, 1),
    ("Upsample", [IMAGE], {"scales": [1.0, 1.0, 3.0, 2.0]}, 7, 1),
    # DepthToSpace, SpaceToDepth
    ("DepthToSpace", [f32(2, 8, 3, 2)], {"blocksize": 2}, 13, 1),
    ("DepthToSpace", [f32(2, 8, 3, 2)], {"blocksize": 2, "mode": "CRD"}, 13, 1),
    ("DepthToSpace", [f32(1, 9, 2, 2)], {"blocksize": 3}, 11, 1),
    ("DepthToSpace", [f32(1, 4, 2, 3)], {"blocksize": 2, "mode": "CRD"}, 11, 1),
    ("SpaceToDepth", [f32(2, 3, 4, 6)], {"blocksize": 2}, 13, 1),
    ("SpaceToDepth", [f32(1, 2, 6, 3)], {"blocksize": 3}, 13, 1),
    # GridSample: modes x padding modes x align_corners, 2-D and 3-D
    ("GridSample", [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.2], {}, 16, 1),
    (
        "GridSample",
        [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.2],
        {"mode": "nearest", "padding_mode": "border"},
        16,
        1,
    ),
    (
        "GridSample",
        [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.2],
        {"mode": "bicubic", "padding_mode": "reflection"},
        16,
        1,
    ),
    (
        "GridSample",
        [f32(2, 2, 4, 5), f32(2, 3, 4, 2) * 1.5],
        {"align_corners": 1, "padding_mode": "reflection"},
        16,
        1,
    ),
    (
        "GridSample",
        [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.5],
        {"mode": "cubic", "align_corners": 1, "padding_mode": "reflection"},
        20,
        1,
    ),
    ("GridSample", [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.5], {"mode": "cubic"}, 20, 1),
    (
        "GridSample",
        [f32(1, 2, 4, 5), f32(1, 3, 4, 2) * 1.5],
        {"mode": "nearest", "align_corners": 1},
        20,
        1,
    ),
    ("GridSample", [f32(1, 2, 3, 4, 5), f32(1, 2, 3, 4, 3) * 1.2], {"mode": "linear"}, 20, 1),
    (
        "GridSample",
        [f32(1, 2, 3, 4, 5), f32(1, 2, 3, 4, 3) * 1.2],
        {"mode": "nearest", "padding_mode": "border"},
        20,
        1,
    ),
    # RoiAlign: avg and max, both coordinate modes, adaptive and fixed sampling
    (
        "RoiAlign",
        [
            f32(2, 3, 8, 9),
            floats(0, 0, 5, 6, 1.5, 2.5, 7.2, 8.3, -1, 2, 3, 20).reshape(3, 4),
            i64(0, 1, 0),
        ],
        {"output_height": 3, "output_width": 2},
        16,
        1,
    ),
    (
        "RoiAlign",
        [f32(2, 3, 8, 9), floats(0, 0, 5, 6, 1.5, 2.5, 7.2, 8.3).reshape(2, 4), i64(1, 0)],
        {
            "output_height": 2,
            "output_width": 3,
            "sampling_ratio": 2,
            "spatial_scale": 0.5,
            "coordinate_transformation_mode": "output_half_pixel",
        },
        16,
        1,
    ),
    (
        "RoiAlign",
        [f32(1, 2, 8, 9), floats(0.5, 0.5, 5, 6, 1.5, 2.5, 7.2, 8.3).reshape(2, 4), i64(0, 0)],
        {"mode": "max", "output_height": 2, "output_width": 2, "sampling_ratio": 2},
        16,
        1,
    ),
    (
        "RoiAlign",
        [f32(1, 2, 8, 9), floats(0.5, 0.5, 5, 6).reshape(1, 4), i64(0)],
        {"output_height": 2, "output_width": 2},
        10,
        1,
    ),
    # AffineGrid, Col2Im, CenterCropPad
    ("AffineGrid", [f32(2, 2, 3), i64(2, 3, 4, 5)], {}, 20, 1),
    ("AffineGrid", [f32(2, 2, 3), i64(2, 3, 4, 5)], {"align_corners": 1}, 20, 1),
    ("AffineGrid", [f32(1, 3, 4), i64(1, 1, 2, 3, 4)], {"align_corners": 0}, 20, 1),
    ("Col2Im", [f32(1, 6, 16), i64(4, 5), i64(1, 2)], {}, 18, 1),
    ("Col2Im", [f32(1, 8, 36), i64(3, 4, 3), i64(2, 2, 2)], {"pads": [0, 1, 0, 1, 0, 1]}, 18, 1),
    (
        "Col2Im",
        [f32(2, 8, 9), i64(5, 5), i64(2, 2)],
        {"strides": [2, 2], "pads": [1, 0, 1, 1]},
        18,
        1,
    ),
    (
        "Col2Im",
        [f32(1, 4, 4), i64(6, 6), i64(2, 2)],
        {"dilations": [2, 2], "strides": [2, 2]},
        18,
        1,
    ),
    ("CenterCropPad", [f32(5, 6, 3), i64(3, 8, 3)], {}, 18, 1),
    ("CenterCropPad", [f32(2, 5, 6), i64(4, 3)], {"axes": [-2, 2]}, 18, 1),
]


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    shapes = "x".join("-" if v is None else str(list(v.shape)) for v in inputs)
    return f"{op}-opset{opset}-{shapes}-{'-'.join(f'{k}={v}' for k, v in sorted(attrs.items()))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_op_against_onnxruntime(*case, rtol=1e-5, atol=1e-6) == ""
