"""Property: RDP's rules for the math and activation families agree with execution and resolve
every output dim, for random shapes whose dims are all distinct symbols: elementwise functions
and activations keep the shape, Det drops the matrix dims, and DFT, STFT, the windows and
MelWeightMatrix take extents from the values of their integer inputs."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.testing.shape_check import check_model_shapes

extents = st.integers(1, 4)
shapes = st.lists(extents, min_size=1, max_size=4)


def _model(op, arrays, attrs=None, outputs=1, opset=18, constants=()):
    """One `op` node over `arrays`: each a symbolic input (dims `<name>_d<axis>`), a constant
    when its name is in `constants`, or omitted when None."""
    graph = Graph("main")
    tensors, feeds = [], {}
    for name, array in arrays.items():
        if array is None:
            tensors.append(None)
        elif name in constants:
            tensors.append(graph.add_constant(array, name))
        else:
            tensors.append(_symbolic_input(graph, name, array))
            feeds[name] = array
    node = graph.add_node(op, tensors, attrs=attrs or {}, outputs=outputs)
    graph.set_outputs([t for t in node.outputs if t is not None])
    return Model(graph, {"": opset}), feeds


def _symbolic_input(graph, name, array):
    dims = [symbol(f"{name}_d{axis}") for axis in range(array.ndim)]
    return graph.add_input(name, tensor_type(DType.from_numpy(array.dtype), dims))


def _assert_exact(model, feeds):
    check = check_model_shapes(model, feeds)
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"


def _zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


ACTIVATIONS = [
    "Sin",
    "Cos",
    "Atan",
    "Sinh",
    "Asinh",
    "IsNaN",
    "IsInf",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Mish",
    "ThresholdedRelu",
    "Swish",
    "Gelu",
    "Shrink",
]


@settings(max_examples=40)
@given(st.sampled_from(ACTIVATIONS), shapes)
def test_elementwise_functions_keep_the_shape(op, shape):
    model, feeds = _model(op, {"x": _random(shape)}, opset=24)
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]), shapes, st.data())
def test_softmax_family_keeps_the_shape_in_both_opset_forms(op, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    opset = data.draw(st.sampled_from([11, 13]))
    model, feeds = _model(op, {"x": _random(shape)}, {"axis": axis}, opset=opset)
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(shapes, st.data())
def test_prelu_slope_broadcasts_to_x(shape, data):
    kept = shape[len(shape) - data.draw(st.integers(0, len(shape))) :]
    slope = [1 if data.draw(st.booleans()) else d for d in kept]
    model, feeds = _model("PRelu", {"x": _random(shape), "slope": _random(slope)})
    _assert_exact(model, feeds)


@settings(max_examples=30)
@given(shapes, st.data(), st.sampled_from(["LEFT", "RIGHT"]))
def test_bitshift_broadcasts(shape, data, direction):
    kept = shape[len(shape) - data.draw(st.integers(0, len(shape))) :]
    amounts = [1 if data.draw(st.booleans()) else d for d in kept]
    arrays = {"x": np.ones(shape, np.uint8), "y": np.ones(amounts, np.uint8)}
    model, feeds = _model("BitShift", arrays, {"direction": direction}, opset=11)
    _assert_exact(model, feeds)


@settings(max_examples=30)
@given(st.lists(extents, max_size=2), extents)
def test_det_drops_the_matrix_dims(batch, m):
    x = np.tile(np.eye(m, dtype=np.float32), (*batch, 1, 1))
    model, feeds = _model("Det", {"x": x}, opset=11)
    _assert_exact(model, feeds)


@st.composite
def dft_cases(draw):
    """A DFT node's signal, attributes, dft_length and axis, valid for the reference kernel."""
    dims = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    onesided, inverse = draw(st.booleans()), draw(st.booleans())
    kind = 1 if onesided and not inverse else 2 if onesided else draw(st.sampled_from([1, 2]))
    axis = draw(st.integers(-len(dims) - 1, len(dims) - 1))
    axis = -2 if axis == -1 else axis  # the trailing real/imaginary dim is no signal axis
    normal = axis + len(dims) + 1 if axis < 0 else axis
    extent = dims[normal]
    if onesided and inverse:
        dims[normal] = extent = max(extent, 2)
        length = draw(st.sampled_from([None, 2 * extent - 2, 2 * extent - 1]))
    else:
        length = draw(st.one_of(st.none(), st.integers(1, 6)))
    attrs = {"onesided": int(onesided), "inverse": int(inverse)}
    return _random([*dims, kind]), attrs, length, axis


@settings(max_examples=60)
@given(dft_cases(), st.sampled_from([17, 20]))
def test_dft_transforms_the_signal_axis(case, opset):
    signal, attrs, length, axis = case
    arrays = {"signal": signal, "length": None if length is None else np.array(length)}
    if opset == 17:
        attrs = {**attrs, "axis": axis}
    else:
        arrays["axis"] = np.array(axis)
    model, feeds = _model("DFT", arrays, attrs, opset=opset, constants=("length", "axis"))
    _assert_exact(model, feeds)


@settings(max_examples=50)
@given(extents, st.integers(1, 12), st.data())
def test_stft_counts_frames_and_bins(batch, length, data):
    frame_length = data.draw(st.integers(1, length))
    step = data.draw(st.integers(1, 4))
    onesided = data.draw(st.booleans())
    kind = 1 if onesided else data.draw(st.sampled_from([1, 2]))
    window, given_length = data.draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    arrays = {
        "signal": _random([batch, length, kind]),
        "step": np.array(step),
        "window": _random([frame_length]) if window else None,
        "frame_length": np.array(frame_length) if given_length else None,
    }
    attrs = {"onesided": int(onesided)}
    model, feeds = _model("STFT", arrays, attrs, opset=17, constants=("step", "frame_length"))
    _assert_exact(model, feeds)


def _extent_of(graph, x, axis):
    """Gather(Shape(x), axis): a scalar int64 holding x's dim `axis`."""
    shape = graph.add_node("Shape", [x]).outputs[0]
    index = graph.add_constant(np.array(axis, dtype=np.int64))
    return graph.add_node("Gather", [shape, index]).outputs[0]


@settings(max_examples=20)
@given(st.sampled_from(["HannWindow", "HammingWindow", "BlackmanWindow"]), extents, st.booleans())
def test_windows_follow_a_size_read_off_a_shape(op, size, periodic):
    graph = Graph("main")
    x = _symbolic_input(graph, "x", _zeros([size]))
    window = graph.add_node(op, [_extent_of(graph, x, 0)], attrs={"periodic": int(periodic)})
    graph.set_outputs(list(window.outputs))
    _assert_exact(Model(graph, {"": 17}), {"x": _zeros([size])})


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(2, 16))
def test_mel_weight_matrix_follows_its_sizes(mel_bins, dft_length):
    graph = Graph("main")
    x = _symbolic_input(graph, "x", _zeros([mel_bins, dft_length]))
    inputs = [
        _extent_of(graph, x, 0),
        _extent_of(graph, x, 1),
        graph.add_constant(np.array(8000, dtype=np.int64)),
        graph.add_constant(np.array(0.0, dtype=np.float32)),
        graph.add_constant(np.array(4000.0, dtype=np.float32)),
    ]
    matrix = graph.add_node("MelWeightMatrix", inputs)
    graph.set_outputs(list(matrix.outputs))
    _assert_exact(Model(graph, {"": 17}), {"x": _zeros([mel_bins, dft_length])})
