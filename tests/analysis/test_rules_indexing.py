"""RDP rules of the indexing operators on one-node models with symbolic input dims: at random
shapes and attributes every inferred fact agrees with execution and every output dim is resolved
(Compress, data-dependent, gets a bounded EXECUTION symbol instead)."""

import numpy as np
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.facts import SymbolOrigin
from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ops.registry import OpClass
from sod2.testing.shape_check import check_model_shapes

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3)


def _symbolic(graph: Graph, name: str, dtype: DType, rank: int, static: dict | None = None):
    """An input whose dims are symbols `name0`, `name1` ... except those `static` fixes."""
    static = static or {}
    dims = [static.get(i, symbol(f"{name}{i}")) for i in range(rank)]
    return graph.add_input(name, tensor_type(dtype, dims))


def _ints(graph: Graph, values) -> object:
    return graph.add_constant(np.array(values, dtype=np.int64))


def _assert_exact(graph: Graph, outputs, feeds: dict) -> None:
    graph.set_outputs(list(outputs))
    check = check_model_shapes(Model(graph, {"": 18}), feeds)
    assert check.wrong == [] and check.unsupported == []
    assert check.resolved == check.dims


def _floats(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@settings(max_examples=25)
@given(shapes, st.data())
def test_gather_elements_has_the_indices_shape(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = [
        data.draw(st.integers(1, 4)) if i == axis % len(shape) else data.draw(st.integers(1, d))
        for i, d in enumerate(shape)
    ]
    extent = shape[axis]
    graph = Graph("gather_elements")
    x = _symbolic(graph, "x", DType.FLOAT32, len(shape))
    indices = _symbolic(graph, "i", DType.INT64, len(shape))
    node = graph.add_node("GatherElements", [x, indices], attrs={"axis": axis})
    rng = np.random.default_rng(0)
    feeds = {"x": _floats(shape), "i": rng.integers(-extent, extent, index_shape)}
    _assert_exact(graph, node.outputs, feeds)


@settings(max_examples=30)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.data())
def test_gather_nd_with_batch_dims(shape, data):
    batch = data.draw(st.integers(0, len(shape) - 1))
    depth = data.draw(st.integers(1, len(shape) - batch))
    middle = data.draw(st.lists(st.integers(1, 3), max_size=2))
    index_shape = [*shape[:batch], *middle, depth]
    graph = Graph("gather_nd")
    x = _symbolic(graph, "x", DType.FLOAT32, len(shape))
    indices = _symbolic(graph, "i", DType.INT64, len(index_shape), {len(index_shape) - 1: depth})
    node = graph.add_node("GatherND", [x, indices], attrs={"batch_dims": batch})
    rng = np.random.default_rng(0)
    limits = np.array(shape[batch : batch + depth])
    feeds = {"x": _floats(shape), "i": (rng.integers(0, 100, index_shape) % limits)}
    _assert_exact(graph, node.outputs, feeds)


@settings(max_examples=25)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.data())
def test_scatter_nd_keeps_the_data_shape(shape, data):
    depth = data.draw(st.integers(1, len(shape)))
    middle = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    graph = Graph("scatter_nd")
    x = _symbolic(graph, "x", DType.FLOAT32, len(shape))
    indices = _symbolic(graph, "i", DType.INT64, len(middle) + 1, {len(middle): depth})
    update_shape = [*middle, *shape[depth:]]
    updates = _symbolic(graph, "u", DType.FLOAT32, len(update_shape))
    node = graph.add_node("ScatterND", [x, indices, updates], attrs={"reduction": "add"})
    rng = np.random.default_rng(0)
    feeds = {
        "x": _floats(shape),
        "i": rng.integers(0, 100, [*middle, depth]) % np.array(shape[:depth]),
        "u": _floats(update_shape, 1),
    }
    _assert_exact(graph, node.outputs, feeds)


@settings(max_examples=40)
@given(shapes, st.data())
def test_pad_adds_begin_and_end_and_crops_with_negative_pads(shape, data):
    use_axes = data.draw(st.booleans())
    axes = sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    axes = axes if use_axes else list(range(len(shape)))
    begins, ends = [], []
    for axis in axes:
        begin = data.draw(st.integers(-shape[axis], 3))
        end = data.draw(st.integers(-(shape[axis] + min(begin, 0)), 3))
        begins.append(begin)
        ends.append(end)
    graph = Graph("pad")
    x = _symbolic(graph, "x", DType.FLOAT32, len(shape))
    inputs = [x, _ints(graph, begins + ends), graph.add_constant(np.array(1.5, np.float32))]
    if use_axes:
        inputs.append(_ints(graph, [a - len(shape) for a in axes]))
    node = graph.add_node("Pad", inputs)
    _assert_exact(graph, node.outputs, {"x": _floats(shape)})


@settings(max_examples=25)
@given(st.lists(st.integers(1, 4), max_size=3), st.integers(1, 5), st.data())
def test_one_hot_inserts_the_depth_at_the_axis(shape, depth, data):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    graph = Graph("one_hot")
    indices = _symbolic(graph, "i", DType.INT64, len(shape))
    values = graph.add_constant(np.array([0, 7], np.int32))
    node = graph.add_node("OneHot", [indices, _ints(graph, depth), values], attrs={"axis": axis})
    feeds = {"i": np.random.default_rng(0).integers(-depth, depth, shape)}
    _assert_exact(graph, node.outputs, feeds)


@settings(max_examples=25)
@given(shapes, st.data())
def test_compress_keeps_an_execution_count_bounded_by_the_axis(shape, data):
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    extent = int(np.prod(shape)) if axis is None else shape[axis]
    flags = data.draw(st.lists(st.booleans(), min_size=1, max_size=extent))
    graph = Graph("compress")
    x = _symbolic(graph, "x", DType.FLOAT32, len(shape))
    condition = graph.add_input("c", tensor_type(DType.BOOL, [symbol("L")]))
    node = graph.add_node("Compress", [x, condition], attrs={} if axis is None else {"axis": axis})
    graph.set_outputs(node.outputs)
    model = Model(graph, {"": 18})
    result = propagate(model)
    dims = result.shape(node.outputs[0]).dims
    count = dims[0 if axis is None else axis]
    info = result.symbols[count]
    assert info.origin is SymbolOrigin.EXECUTION
    names = [symbol(f"x{i}") for i in range(len(shape))]
    items = sympy.Mul(*names) if axis is None else names[axis]
    assert info.upper_bound == sympy.Min(items, symbol("L"))
    check = check_model_shapes(model, {"x": _floats(shape), "c": np.array(flags)})
    assert check.wrong == []


def test_compress_by_a_constant_condition_counts_its_flags():
    graph = Graph("compress")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [symbol("N"), 3]))
    node = graph.add_node("Compress", [x, graph.add_constant(np.array([1, 0, 1], bool))])
    node.set_attr("axis", 0)
    graph.set_outputs(node.outputs)
    result = propagate(Model(graph, {"": 18}))
    assert result.shape(node.outputs[0]).dims == (2, 3)
    assert result.classes[node] is OpClass.ISVDOS
