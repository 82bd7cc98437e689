"""Property: RDP's rules for the reductions agree with execution, for random shapes whose dims
are all distinct symbols. With known axes (attribute, or a constant input) every output dim is
resolved; with axes only execution knows, the facts are still never wrong. Over a shape tensor
ReduceProd / ReduceSum / ReduceMax / ReduceMin, ArgMax and CumSum compute the value, so a
Reshape to their result resolves too."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ops.reduction import REDUCERS
from sod2.testing.shape_check import check_model_shapes

extents = st.integers(1, 4)
shapes = st.lists(extents, min_size=1, max_size=4)


def _input(graph, name, array):
    """A graph input of `array`'s type whose dims are symbols `<name>_d<axis>`."""
    dims = [symbol(f"{name}_d{axis}") for axis in range(array.ndim)]
    return graph.add_input(name, tensor_type(DType.from_numpy(array.dtype), dims))


def _check(graph, feeds, opset=18):
    return check_model_shapes(Model(graph, {"": opset}), feeds)


def _assert_exact(check):
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"


def _random(shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@st.composite
def reductions(draw):
    """An op, a data shape, axes (None: omitted) and the keepdims / noop attributes."""
    op = draw(st.sampled_from(sorted(REDUCERS)))
    shape = draw(shapes)
    rank = len(shape)
    chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    axes = [a - rank if draw(st.booleans()) else a for a in chosen]
    attrs = {"keepdims": draw(st.integers(0, 1))}
    if draw(st.booleans()):
        attrs["noop_with_empty_axes"] = 1
    return op, shape, axes if axes or draw(st.booleans()) else None, attrs


@settings(max_examples=80)
@given(reductions(), st.booleans())
def test_reduction_with_known_axes_resolves_every_dim(case, axes_as_input):
    op, shape, axes, attrs = case
    graph = Graph("main")
    inputs = [_input(graph, "x", _random(shape))]
    opset = 18 if axes_as_input else 12
    if axes_as_input and axes is not None:
        inputs.append(graph.add_constant(np.array(axes, dtype=np.int64)))
    elif axes:
        attrs = {**attrs, "axes": axes}
    if not axes_as_input:
        attrs.pop("noop_with_empty_axes", None)
    node = graph.add_node(op, inputs, attrs=attrs)
    graph.set_outputs(list(node.outputs))
    _assert_exact(_check(graph, {"x": _random(shape)}, opset))


@settings(max_examples=60)
@given(reductions())
def test_reduction_with_axes_known_only_at_run_time_is_never_wrong(case):
    op, shape, axes, attrs = case
    graph = Graph("main")
    x = _input(graph, "x", _random(shape))
    axes_value = np.array(axes or [], dtype=np.int64)
    axes_tensor = graph.add_input("axes", tensor_type(DType.INT64, [len(axes_value)]))
    node = graph.add_node(op, [x, axes_tensor], attrs=attrs)
    graph.set_outputs(list(node.outputs))
    check = _check(graph, {"x": _random(shape), "axes": axes_value})
    assert check.wrong == [], "\n".join(check.wrong)
    output_rank = len(shape) if attrs["keepdims"] else None
    if output_rank is not None or len(axes_value) == 0:  # the rank is known
        assert check.dims - check.resolved <= len(shape)


@settings(max_examples=60)
@given(st.sampled_from(["ArgMax", "ArgMin"]), shapes, st.data())
def test_arg_extremes_give_int64_indices(op, shape, data):
    attrs = {
        "axis": data.draw(st.integers(-len(shape), len(shape) - 1)),
        "keepdims": data.draw(st.integers(0, 1)),
        "select_last_index": data.draw(st.integers(0, 1)),
    }
    graph = Graph("main")
    node = graph.add_node(op, [_input(graph, "x", _random(shape))], attrs=attrs)
    graph.set_outputs(list(node.outputs))
    _assert_exact(_check(graph, {"x": _random(shape)}, opset=13))


@settings(max_examples=40)
@given(st.sampled_from(["CumSum", "CumProd"]), shapes, st.data())
def test_cumulative_ops_keep_the_shape(op, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    attrs = {"exclusive": data.draw(st.integers(0, 1)), "reverse": data.draw(st.integers(0, 1))}
    graph = Graph("main")
    axis_tensor = graph.add_constant(np.array(axis, dtype=np.int64))
    node = graph.add_node(op, [_input(graph, "x", _random(shape)), axis_tensor], attrs=attrs)
    graph.set_outputs(list(node.outputs))
    _assert_exact(_check(graph, {"x": _random(shape)}, opset=26))


SHAPE_FOLDS = ["ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "CumSum"]


@settings(max_examples=60)
@given(st.sampled_from(SHAPE_FOLDS), shapes, st.data())
def test_folds_of_a_shape_tensor_compute_its_value(op, shape, data):
    """x -> Shape -> fold -> (Reshape of a ones tensor to the fold's value): the value, and so
    the reshaped dims, are expressions over x's dims."""
    attrs = {"keepdims": 1} if op != "CumSum" else {}
    if op == "CumSum":
        attrs = {"exclusive": data.draw(st.integers(0, 1)), "reverse": data.draw(st.integers(0, 1))}
    graph = Graph("main")
    x = _input(graph, "x", _random(shape))
    dims = graph.add_node("Shape", [x]).outputs[0]
    inputs = [dims]
    if op == "CumSum":
        inputs.append(graph.add_constant(np.array(0, dtype=np.int64)))
    folded = graph.add_node(op, inputs, attrs=attrs).outputs[0]
    ones = graph.add_node("ConstantOfShape", [folded]).outputs[0]
    graph.set_outputs([ones])
    _assert_exact(_check(graph, {"x": _random(shape)}))


@settings(max_examples=40)
@given(st.sampled_from(["ArgMax", "ArgMin"]), st.lists(st.integers(1, 3), min_size=1), st.data())
def test_arg_extremes_of_a_known_shape_tensor_give_the_index(op, values, data):
    attrs = {
        "keepdims": data.draw(st.integers(0, 1)),
        "select_last_index": data.draw(st.integers(0, 1)),
    }
    graph = Graph("main")
    known = graph.add_constant(np.array(values, dtype=np.int64))
    index = graph.add_node(op, [known], attrs=attrs).outputs[0]
    graph.set_outputs([index])
    model = Model(graph, {"": 13})
    _assert_exact(check_model_shapes(model, {}))
    assert propagate(model).facts[index].value is not None
