"""RDP rules of the data-dependent operators (TopK, NonZero, Unique, NonMaxSuppression): exact
extents where the deciding value is known, otherwise ONE EXECUTION symbol per data-dependent
extent, shared where ONNX makes extents equal and bounded by what the op implies; checked against
execution at random shapes."""

import numpy as np
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.facts import SymbolOrigin
from sod2.analysis.rdp import RDPResult, propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ops.registry import OpClass
from sod2.testing.shape_check import check_model_shapes

A, B = symbol("a"), symbol("b")
BATCH, CLASSES, BOXES = symbol("B"), symbol("C"), symbol("N")
dims = st.integers(1, 5)


def _model(graph: Graph, *outputs) -> Model:
    graph.set_outputs(list(outputs))
    return Model(graph, {"": 18})


def _assert_agrees(model: Model, feeds: dict, *, exact: bool) -> None:
    check = check_model_shapes(model, feeds)
    assert check.wrong == [] and check.unsupported == []
    if exact:
        assert check.resolved == check.dims


def _execution_symbol(result: RDPResult, dim) -> sympy.Symbol:
    assert isinstance(dim, sympy.Symbol), dim
    assert result.symbols[dim].origin is SymbolOrigin.EXECUTION
    return dim


def _ints(graph: Graph, values) -> object:
    return graph.add_constant(np.array(values, dtype=np.int64))


# -- TopK ---------------------------------------------------------------------------------------


def _paper_top_k() -> tuple[Model, object]:
    """The paper's example: x: [a, b]; k = min(Shape(x)); TopK(x, k) along the last axis."""
    graph = Graph("paper")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [A, B]))
    shape = graph.add_node("Shape", [x]).outputs[0]
    first = graph.add_node("Gather", [shape, _ints(graph, 0)]).outputs[0]
    second = graph.add_node("Gather", [shape, _ints(graph, 1)]).outputs[0]
    smallest = graph.add_node("Min", [first, second]).outputs[0]
    k = graph.add_node("Reshape", [smallest, _ints(graph, [1])]).outputs[0]
    top = graph.add_node("TopK", [x, k], outputs=2, name="topk")
    return _model(graph, *top.outputs), top


def test_top_k_of_the_min_of_the_shape_is_that_min():
    model, top = _paper_top_k()
    result = propagate(model)
    expected = (A, sympy.Min(A, B))
    assert result.shape(top.outputs[0]).dims == expected
    assert result.shape(top.outputs[1]).dims == expected
    assert result.classes[top] is OpClass.ISVDOS


@settings(max_examples=20)
@given(dims, dims)
def test_top_k_of_the_min_of_the_shape_agrees_with_execution(a, b):
    model, _ = _paper_top_k()
    feeds = {"x": np.random.default_rng(0).standard_normal((a, b)).astype(np.float32)}
    _assert_agrees(model, feeds, exact=True)


@settings(max_examples=25)
@given(st.lists(dims, min_size=1, max_size=3), st.data())
def test_top_k_of_a_constant_k_resolves(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[axis]))
    graph = Graph("topk")
    names = [symbol(f"x{i}") for i in range(len(shape))]
    x = graph.add_input("x", tensor_type(DType.FLOAT32, names))
    top = graph.add_node("TopK", [x, _ints(graph, [k])], outputs=2, attrs={"axis": axis})
    model = _model(graph, *top.outputs)
    feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    _assert_agrees(model, feeds, exact=True)


def test_top_k_of_an_unknown_k_is_one_execution_symbol_bounded_by_the_dim():
    graph = Graph("topk")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [A, B]))
    k = graph.add_input("k", tensor_type(DType.INT64, [1]))
    top = graph.add_node("TopK", [x, k], outputs=2, attrs={"axis": 0})
    model = _model(graph, *top.outputs)
    result = propagate(model)
    values, indices = (result.shape(t).dims for t in top.outputs)
    count = _execution_symbol(result, values[0])
    assert values == indices == (count, B)
    assert result.symbols[count].upper_bound == A
    assert result.classes[top] is OpClass.EDO
    feeds = {"x": np.ones((4, 3), np.float32), "k": np.array([2], np.int64)}
    _assert_agrees(model, feeds, exact=False)


# -- NonZero, Unique, NonMaxSuppression ----------------------------------------------------------


@settings(max_examples=25)
@given(st.lists(dims, min_size=0, max_size=3), st.integers(0, 2**16))
def test_non_zero_is_rank_by_an_execution_count_below_numel(shape, seed):
    graph = Graph("nonzero")
    x = graph.add_input(
        "x", tensor_type(DType.FLOAT32, [symbol(f"x{i}") for i in range(len(shape))])
    )
    node = graph.add_node("NonZero", [x])
    model = _model(graph, node.outputs[0])
    result = propagate(model)
    rank, count = result.shape(node.outputs[0]).dims
    assert rank == max(len(shape), 1)
    info = result.symbols[_execution_symbol(result, count)]
    assert (
        sympy.expand(info.upper_bound - sympy.Mul(*[symbol(f"x{i}") for i in range(len(shape))]))
        == 0
    )
    data = np.random.default_rng(seed).integers(0, 2, shape).astype(np.float32)
    _assert_agrees(model, {"x": data}, exact=False)


def test_non_zero_of_a_known_vector_is_exact():
    graph = Graph("nonzero")
    node = graph.add_node("NonZero", [_ints(graph, [0, 3, 0, 5])])
    result = propagate(_model(graph, node.outputs[0]))
    assert result.fact(node.outputs[0]).shape.dims == (1, 2)
    assert result.fact(node.outputs[0]).value == (1, 3)


@settings(max_examples=25)
@given(st.lists(dims, min_size=1, max_size=3), st.data())
def test_unique_outputs_share_one_execution_symbol(shape, data):
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    graph = Graph("unique")
    names = [symbol(f"x{i}") for i in range(len(shape))]
    x = graph.add_input("x", tensor_type(DType.INT64, names))
    attrs = {} if axis is None else {"axis": axis}
    node = graph.add_node("Unique", [x], outputs=4, attrs=attrs)
    model = _model(graph, *node.outputs)
    result = propagate(model)
    values, first, inverse, counts = (result.shape(t).dims for t in node.outputs)
    items = sympy.Mul(*names) if axis is None else names[axis]
    count = _execution_symbol(result, first[0])
    assert first == counts == (count,)
    assert inverse == (items,)
    assert result.symbols[count].upper_bound == items
    if axis is None:
        assert values == (count,)
    else:
        assert values[axis] == count
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    _assert_agrees(model, {"x": rng.integers(0, 3, shape)}, exact=False)


@settings(max_examples=20)
@given(dims, dims, dims, st.integers(0, 4), st.integers(0, 2**16))
def test_non_max_suppression_is_an_execution_count_by_three(batch, classes, boxes, limit, seed):
    graph = Graph("nms")
    box_input = graph.add_input("boxes", tensor_type(DType.FLOAT32, [BATCH, BOXES, 4]))
    scores = graph.add_input("scores", tensor_type(DType.FLOAT32, [BATCH, CLASSES, BOXES]))
    node = graph.add_node("NonMaxSuppression", [box_input, scores, _ints(graph, [limit])])
    model = _model(graph, node.outputs[0])
    result = propagate(model)
    count, width = result.shape(node.outputs[0]).dims
    assert width == 3
    if limit == 0:
        assert count == 0
    else:
        bound = result.symbols[_execution_symbol(result, count)].upper_bound
        assert bound == BATCH * CLASSES * sympy.Min(BOXES, limit)
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 10, (batch, boxes, 2)).astype(np.float32)
    feeds = {
        "boxes": np.concatenate(
            [corners, corners + rng.uniform(1, 5, (batch, boxes, 2))], -1
        ).astype(np.float32),
        "scores": rng.uniform(0, 1, (batch, classes, boxes)).astype(np.float32),
    }
    _assert_agrees(model, feeds, exact=limit == 0)


# -- detection post-processing --------------------------------------------------------------------


def _detections() -> tuple[Model, dict[str, object]]:
    """YOLO's tail: k = min(100, A); top scores; keep those above a threshold (NonZero);
    gather the kept boxes and scores (GatherND)."""
    graph = Graph("detect")
    scores = graph.add_input("scores", tensor_type(DType.FLOAT32, [A]))
    boxes = graph.add_input("boxes", tensor_type(DType.FLOAT32, [A, 4]))
    anchors = graph.add_node("Shape", [scores]).outputs[0]
    k = graph.add_node("Min", [anchors, _ints(graph, [100])]).outputs[0]
    top = graph.add_node("TopK", [scores, k], outputs=2, name="topk")
    threshold = graph.add_constant(np.array(0.5, np.float32))
    keep = graph.add_node("Greater", [top.outputs[0], threshold]).outputs[0]
    nonzero = graph.add_node("NonZero", [keep], name="nonzero")
    positions = graph.add_node("Transpose", [nonzero.outputs[0]]).outputs[0]
    kept_scores = graph.add_node("GatherND", [top.outputs[0], positions]).outputs[0]
    chosen = graph.add_node("GatherND", [top.outputs[1], positions]).outputs[0]
    chosen = graph.add_node("Unsqueeze", [chosen, _ints(graph, [1])]).outputs[0]
    kept_boxes = graph.add_node("GatherND", [boxes, chosen]).outputs[0]
    model = _model(graph, kept_boxes, kept_scores)
    return model, {"top": top, "nonzero": nonzero, "boxes": kept_boxes, "scores": kept_scores}


def test_detections_are_one_execution_count_bounded_by_k():
    model, parts = _detections()
    result = propagate(model)
    k = sympy.Min(A, 100)
    assert result.shape(parts["top"].outputs[0]).dims == (k,)
    count = _execution_symbol(result, result.shape(parts["nonzero"].outputs[0]).dims[1])
    assert result.symbols[count].upper_bound == k
    assert result.shape(parts["boxes"]).dims == (count, 4)
    assert result.shape(parts["scores"]).dims == (count,)
    assert result.classes[parts["nonzero"].outputs[0].producer] is OpClass.EDO


@settings(max_examples=15)
@given(st.integers(1, 150), st.integers(0, 2**16))
def test_detections_agree_with_execution(anchors, seed):
    model, _ = _detections()
    rng = np.random.default_rng(seed)
    feeds = {
        "scores": rng.uniform(0, 1, anchors).astype(np.float32),
        "boxes": rng.uniform(0, 1, (anchors, 4)).astype(np.float32),
    }
    _assert_agrees(model, feeds, exact=False)
