"""Property: RDP's rules for the normalizations agree with execution and resolve every output
dim, statistics outputs included (BatchNormalization's running mean and variance, LayerNorm's
Mean and InvStdDev), for random shapes whose dims are all distinct symbols. Per-channel
parameters are constants, so RDP must also learn X's channel symbol from them."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.testing.shape_check import check_model_shapes

extents = st.integers(1, 4)


def _model(op, x, params, attrs=None, outputs=1, opset=18):
    """One `op` node over a symbolic input `x` (dims `x_d<axis>`) and constant `params`
    (None: omitted)."""
    graph = Graph("main")
    dims = [symbol(f"x_d{axis}") for axis in range(x.ndim)]
    tensors = [graph.add_input("x", tensor_type(DType.from_numpy(x.dtype), dims))]
    tensors += [None if p is None else graph.add_constant(p) for p in params]
    node = graph.add_node(op, tensors, attrs=attrs or {}, outputs=outputs)
    graph.set_outputs([t for t in node.outputs if t is not None])
    return Model(graph, {"": opset}), {"x": x}


def _assert_exact(model, feeds):
    check = check_model_shapes(model, feeds)
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"


def _random(shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


batch_shapes = st.lists(extents, min_size=2, max_size=4)


@settings(max_examples=40)
@given(batch_shapes, st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_batch_normalization_outputs_and_running_statistics(shape, training, stats_dtype):
    channels = shape[1]
    params = [_ones([channels]), _ones([channels]), _ones([channels], stats_dtype)]
    params.append(_ones([channels], stats_dtype))
    attrs = {"training_mode": int(training)}
    model, feeds = _model(
        "BatchNormalization", _random(shape), params, attrs, outputs=3 if training else 1, opset=15
    )
    _assert_exact(model, feeds)


@settings(max_examples=30)
@given(batch_shapes)
def test_instance_normalization_keeps_the_shape(shape):
    params = [_ones([shape[1]]), _ones([shape[1]])]
    model, feeds = _model("InstanceNormalization", _random(shape), params)
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(1, 2), st.lists(extents, max_size=2), extents, st.data())
def test_group_normalization_per_group_and_per_channel(groups, per_group, spatial, batch, data):
    channels = groups * per_group
    opset = data.draw(st.sampled_from([18, 21]))
    extent = groups if opset == 18 else channels
    x = _random([batch, channels, *spatial])
    params = [_ones([extent]), _ones([extent])]
    model, feeds = _model("GroupNormalization", x, params, {"num_groups": groups}, opset=opset)
    _assert_exact(model, feeds)


@st.composite
def layer_cases(draw):
    """X's shape, the normalized axis and a Scale shape that broadcasts one way to X's."""
    shape = draw(st.lists(extents, min_size=1, max_size=4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    kept = shape[len(shape) - draw(st.integers(0, len(shape))) :]
    scale = [1 if draw(st.booleans()) else d for d in kept]
    return shape, axis, scale


@settings(max_examples=60)
@given(layer_cases(), st.integers(1, 3), st.booleans(), st.sampled_from([1, 11]))
def test_layer_normalization_statistics_keep_the_leading_dims(case, outputs, bias, stash):
    shape, axis, scale = case
    params = [_ones(scale), _ones(scale) if bias else None]
    attrs = {"axis": axis, "stash_type": stash}
    model, feeds = _model("LayerNormalization", _random(shape), params, attrs, outputs, opset=17)
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(layer_cases(), st.sampled_from([np.float32, np.float16]))
def test_rms_normalization_takes_the_type_of_scale(case, scale_dtype):
    shape, axis, scale = case
    params = [_ones(scale, scale_dtype)]
    model, feeds = _model("RMSNormalization", _random(shape), params, {"axis": axis}, opset=23)
    _assert_exact(model, feeds)


@settings(max_examples=30)
@given(st.sampled_from(["LRN", "LpNormalization", "MeanVarianceNormalization"]), st.data())
def test_other_normalizations_keep_the_shape(op, data):
    shape = data.draw(st.lists(extents, min_size=4 if op == "MeanVarianceNormalization" else 2))
    attrs = {"size": 3} if op == "LRN" else {}
    model, feeds = _model(op, _random(shape[:5]), [], attrs)
    _assert_exact(model, feeds)
