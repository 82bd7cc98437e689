"""Property: RDP's image rules (Resize, Upsample, DepthToSpace, SpaceToDepth, CenterCropPad,
Col2Im, GridSample) agree with execution over inputs whose dims are all symbols, and resolve
every output dim that the constants determine exactly."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.testing.shape_check import check_model_shapes

EXACT_SCALES = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
INEXACT_SCALES = [0.6, 1.3, 1 / 3]


def _model(op, x, constants=(), attrs=None, opset=19, extra_inputs=()):
    """One `op` node reading a symbolic input x (dims x_d<axis>) then `constants` (None: an
    omitted input) and further symbolic inputs `extra_inputs` (name, array)."""
    graph = Graph("main")
    tensors = [graph.add_input("x", tensor_type(DType.FLOAT32, _symbols("x", x.ndim)))]
    feeds = {"x": x}
    for value in constants:
        tensors.append(None if value is None else graph.add_constant(value))
    for name, array in extra_inputs:
        dims = _symbols(name, array.ndim)
        tensors.append(graph.add_input(name, tensor_type(DType.FLOAT32, dims)))
        feeds[name] = array
    node = graph.add_node(op, tensors, attrs=attrs or {})
    graph.set_outputs(list(node.outputs))
    return Model(graph, {"": opset}), feeds


def _symbols(name, rank):
    return [symbol(f"{name}_d{axis}") for axis in range(rank)]


def _check(model, feeds, *, exact=True):
    check = check_model_shapes(model, feeds)
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    if exact:
        assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"
    return check


def _zeros(*shape):
    return np.zeros(shape, dtype=np.float32)


image_extents = st.integers(1, 9)


@settings(max_examples=60)
@given(
    st.lists(st.sampled_from(EXACT_SCALES + INEXACT_SCALES), min_size=2, max_size=2),
    image_extents,
    image_extents,
    st.booleans(),
)
def test_resize_by_constant_scales_is_exact_for_small_ratios(scales, height, width, with_axes):
    x = _zeros(1, 2, height, width)
    if with_axes:
        attrs, given_scales = {"axes": [2, 3]}, scales
    else:
        attrs, given_scales = {}, [1.0, 1.0, *scales]
    scales_value = np.array(given_scales, np.float32)
    model, feeds = _model("Resize", x, [None, scales_value], attrs)
    _check(model, feeds, exact=all(s in EXACT_SCALES for s in scales))


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0, 0.75])
def test_resize_scale_extents_hold_for_large_inputs(scale):
    model, feeds = _model(
        "Resize", _zeros(1, 1, 1001, 3), [None, np.array([1, 1, scale, 1], np.float32)]
    )
    _check(model, feeds)


@settings(max_examples=60)
@given(
    st.lists(st.integers(1, 9), min_size=2, max_size=2),
    image_extents,
    image_extents,
    st.sampled_from(["stretch", "not_larger", "not_smaller"]),
)
def test_resize_by_constant_sizes(sizes, height, width, policy):
    x = _zeros(1, 2, height, width)
    attrs = {"axes": [2, 3], "keep_aspect_ratio_policy": policy}
    sizes_value = np.array(sizes, np.int64)
    model, feeds = _model("Resize", x, [None, None, sizes_value], attrs)
    # with one scale for two axes, which axis sets it depends on the extents: not resolved
    _check(model, feeds, exact=policy == "stretch")


def test_upsample_by_constant_scales():
    scales = np.array([1.0, 1.0, 2.0, 3.0], np.float32)
    model, feeds = _model("Upsample", _zeros(1, 2, 3, 4), [scales], opset=9)
    _check(model, feeds)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(1, 3), image_extents, image_extents, st.booleans())
def test_depth_to_space_and_back(block, depth, height, width, crd):
    mode = {"mode": "CRD" if crd else "DCR"}
    x = _zeros(2, depth * block * block, height, width)
    model, feeds = _model("DepthToSpace", x, attrs={"blocksize": block, **mode})
    _check(model, feeds)
    x = _zeros(2, depth, height * block, width * block)
    model, feeds = _model("SpaceToDepth", x, attrs={"blocksize": block})
    _check(model, feeds)


@settings(max_examples=40)
@given(
    st.lists(st.integers(1, 6), min_size=3, max_size=3),
    st.lists(st.integers(1, 6), min_size=2, max_size=2),
)
def test_center_crop_pad_takes_the_requested_extents(shape, targets):
    model, feeds = _model(
        "CenterCropPad", _zeros(*shape), [np.array(targets, np.int64)], {"axes": [0, 2]}
    )
    _check(model, feeds)


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2)), min_size=1, max_size=2
    ),
    st.integers(1, 2),
    st.data(),
)
def test_col2im_image_and_channels(axes, channels, data):
    kernel = [k for k, _, _ in axes]
    strides = [s for _, s, _ in axes]
    pads = [p for _, _, p in axes] * 2
    image = [data.draw(st.integers(max(1, k - 2 * p), 8)) for k, _, p in axes]
    blocks = [(size + 2 * p - k) // s + 1 for size, (k, s, p) in zip(image, axes, strict=True)]
    x = _zeros(1, channels * math.prod(kernel), math.prod(blocks))
    constants = [np.array(image, np.int64), np.array(kernel, np.int64)]
    attrs = {"strides": strides, "pads": pads}
    model, feeds = _model("Col2Im", x, constants, attrs)
    _check(model, feeds)


@settings(max_examples=30)
@given(
    st.integers(1, 2),
    st.lists(image_extents, min_size=2, max_size=2),
    st.lists(image_extents, min_size=2, max_size=2),
)
def test_grid_sample_takes_the_grid_extents(batch, spatial, out):
    grid = np.zeros((batch, *out, 2), np.float32)
    model, feeds = _model("GridSample", _zeros(batch, 3, *spatial), extra_inputs=[("grid", grid)])
    _check(model, feeds)
