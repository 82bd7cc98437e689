"""Property: RDP's Conv, ConvTranspose and pooling rules agree with execution and resolve every
output dim, for random geometry (kernel, strides, dilations, pads, auto_pad, ceil_mode, group)
over inputs whose dims are all symbols."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.testing.shape_check import check_model_shapes

AUTO_PADS = ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]
SPATIAL = ["H", "W"]


def _model(op, inputs, attrs, outputs=1, opset=19):
    """One `op` node; `inputs` are (name, dims) float inputs or numpy constants."""
    graph = Graph("main")
    tensors = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            tensors.append(graph.add_constant(item))
        else:
            name, dims = item
            dims = [symbol(d) if isinstance(d, str) else d for d in dims]
            tensors.append(graph.add_input(name, tensor_type(DType.FLOAT32, dims)))
    node = graph.add_node(op, tensors, attrs=attrs, outputs=outputs)
    graph.set_outputs(list(node.outputs))
    return Model(graph, {"": opset})


def _assert_exact(model, feeds):
    check = check_model_shapes(model, feeds)
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"


def _random(shape, rng):
    return rng.standard_normal(shape).astype(np.float32)


@st.composite
def window_attrs(draw, rank, *, pool):
    """Kernel, strides, dilations and padding for `rank` spatial axes, and input extents the
    kernel fits in."""
    kernel = [draw(st.integers(1, 4)) for _ in range(rank)]
    attrs = {
        "strides": [draw(st.integers(1, 3)) for _ in range(rank)],
        "dilations": [draw(st.integers(1, 2)) for _ in range(rank)],
        "auto_pad": draw(st.sampled_from(AUTO_PADS)),
    }
    pads = [draw(st.integers(0, 5 if pool else 3)) for _ in range(2 * rank)]
    if attrs["auto_pad"] == "NOTSET":
        attrs["pads"] = pads
    else:
        pads = [0] * (2 * rank)
    if pool:
        attrs["kernel_shape"] = kernel
        attrs["ceil_mode"] = draw(st.integers(0, 1))
    spatial = []
    for axis, k in enumerate(kernel):
        extent = attrs["dilations"][axis] * (k - 1) + 1
        fits = extent - pads[axis] - pads[rank + axis]
        if attrs["auto_pad"].startswith("SAME"):
            fits = 1
        spatial.append(draw(st.integers(max(1, fits), max(1, fits) + 9)))
    return kernel, attrs, spatial


@settings(max_examples=60)
@given(st.data())
def test_conv_output_dims_are_exact(data):
    rank = data.draw(st.integers(1, 2))
    kernel, attrs, spatial = data.draw(window_attrs(rank, pool=False))
    group = data.draw(st.sampled_from([1, 2]))
    per_group = data.draw(st.integers(1, 2))
    out_channels = group * data.draw(st.integers(1, 2))
    attrs["group"] = group
    symbolic_weights = data.draw(st.booleans())
    rng = np.random.default_rng(0)
    w = _random([out_channels, per_group, *kernel], rng)
    x_dims = ["N", "C", *SPATIAL[:rank]]
    weights = ("w", ["M", "CG", *(f"K{i}" for i in range(rank))]) if symbolic_weights else w
    model = _model("Conv", [("x", x_dims), weights], attrs)
    feeds = {"x": _random([2, per_group * group, *spatial], rng)}
    if symbolic_weights:
        feeds["w"] = w
    _assert_exact(model, feeds)


@settings(max_examples=80)
@given(st.data())
def test_pooling_output_dims_are_exact_with_ceil_mode(data):
    rank = data.draw(st.integers(1, 2))
    _, attrs, spatial = data.draw(window_attrs(rank, pool=True))
    op = data.draw(st.sampled_from(["MaxPool", "AveragePool", "LpPool"]))
    outputs = 2 if op == "MaxPool" else 1
    model = _model(op, [("x", ["N", "C", *SPATIAL[:rank]])], attrs, outputs=outputs)
    _assert_exact(model, {"x": _random([1, 2, *spatial], np.random.default_rng(1))})


@st.composite
def transposed_axis(draw):
    """(kernel, stride, dilation, output_padding, input extent, full output extent) of one axis."""
    kernel, stride, dilation = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 2)),
    )
    extra, size = draw(st.integers(0, stride - 1)), draw(st.integers(1, 6))
    return kernel, stride, dilation, extra, size, stride * (size - 1) + dilation * (kernel - 1) + 1


@settings(max_examples=60)
@given(st.data())
def test_conv_transpose_output_dims_are_exact(data):
    axes = data.draw(st.lists(transposed_axis(), min_size=1, max_size=2))
    kernel, strides, dilations, extra, spatial, full = (list(v) for v in zip(*axes, strict=True))
    rank = len(axes)
    attrs = {"strides": strides, "dilations": dilations, "output_padding": extra}
    how = data.draw(st.sampled_from(["pads", "output_shape", *AUTO_PADS[1:]]))
    longest = [f + e for f, e in zip(full, extra, strict=True)]
    if how == "pads":
        attrs["pads"] = data.draw(st.lists(st.integers(0, 2), min_size=2 * rank, max_size=2 * rank))
        assume(
            all(
                n >= b + e
                for n, b, e in zip(longest, attrs["pads"][:rank], attrs["pads"][rank:], strict=True)
            )
        )
    elif how == "output_shape":  # up to stride - 1 past the full output
        limits = [n + s - 1 for n, s in zip(longest, strides, strict=True)]
        attrs["output_shape"] = [data.draw(st.integers(1, limit)) for limit in limits]
    else:
        attrs["auto_pad"] = how
        assume(all(n >= x * s for n, x, s in zip(longest, spatial, strides, strict=True)))
    group = data.draw(st.sampled_from([1, 2]))
    attrs["group"] = group
    rng = np.random.default_rng(2)
    w = _random([2 * group, 1, *kernel], rng)
    model = _model("ConvTranspose", [("x", ["N", "C", *SPATIAL[:rank]]), w], attrs)
    _assert_exact(model, {"x": _random([1, 2 * group, *spatial], rng)})


def test_ceil_mode_drops_a_last_window_that_starts_in_the_padding():
    # k=2, s=3, no padding: a window starting at 3 for H=3 lies outside the input
    model = _model(
        "MaxPool", [("x", ["N", "C", "H"])], {"kernel_shape": [2], "strides": [3], "ceil_mode": 1}
    )
    for height in (2, 3, 4, 5, 6, 7):
        _assert_exact(model, {"x": np.zeros((1, 1, height), np.float32)})


def test_global_pooling_keeps_batch_and_channels():
    model = _model("GlobalAveragePool", [("x", ["N", "C", "H", "W"])], {})
    _assert_exact(model, {"x": np.zeros((2, 3, 5, 4), np.float32)})
