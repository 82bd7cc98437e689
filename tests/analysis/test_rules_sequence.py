"""RDP rules of sequences and optionals. A sequence's fact describes its elements (type, and the
shape every element provably has) and carries its length as its value; what comes out of a
sequence as a tensor (SequenceAt, ConcatFromSequence, SequenceLength) is checked against
execution at random shapes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ir.attributes import Attribute, AttrKind
from sod2.ir.types import OptionalType, SequenceType, TensorType
from sod2.testing.shape_check import check_model_shapes

N, C = symbol("N"), symbol("C")


def _model(graph: Graph, *outputs) -> Model:
    graph.set_outputs(list(outputs))
    return Model(graph, {"": 18})


def _assert_agrees(model: Model, feeds: dict, *, exact: bool) -> None:
    check = check_model_shapes(model, feeds)
    assert check.wrong == [] and check.unsupported == []
    if exact:
        assert check.resolved == check.dims


def _ints(graph: Graph, values) -> object:
    return graph.add_constant(np.array(values, dtype=np.int64))


def _floats(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _output(graph: Graph, op: str, inputs, **attrs) -> object:
    return graph.add_node(op, inputs, attrs=attrs).outputs[0]


@settings(max_examples=25)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.data())
def test_a_constructed_sequence_knows_its_length_and_element_shape(count, n, c, data):
    stacking = data.draw(st.booleans())
    axis = data.draw(st.integers(-2 - stacking, 1 + stacking))
    graph = Graph("construct")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, C]))
    sequence = _output(graph, "SequenceConstruct", [x] * count)
    length = _output(graph, "SequenceLength", [sequence])
    last = _output(graph, "SequenceAt", [sequence, _ints(graph, -1)])
    joined = _output(graph, "ConcatFromSequence", [sequence], axis=axis, new_axis=int(stacking))
    model = _model(graph, length, last, joined)
    result = propagate(model)
    assert result.fact(length).value == (count,)
    assert result.shape(last).dims == (N, C)
    _assert_agrees(model, {"x": _floats((n, c))}, exact=True)


def test_elements_of_different_shapes_have_no_common_shape():
    graph = Graph("construct")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, C]))
    y = graph.add_input("y", tensor_type(DType.FLOAT32, [C, N]))
    sequence = _output(graph, "SequenceConstruct", [x, y])
    element = _output(graph, "SequenceAt", [sequence, _ints(graph, 0)])
    model = _model(graph, element)
    assert propagate(model).shape(element).rank is None
    _assert_agrees(model, {"x": _floats((2, 3)), "y": _floats((3, 2))}, exact=False)


def test_insert_and_erase_count_the_elements():
    graph = Graph("edit")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N]))
    sequence = _output(graph, "SequenceEmpty", [], dtype=DType.FLOAT32.onnx)
    for _ in range(3):
        sequence = _output(graph, "SequenceInsert", [sequence, x])
    sequence = _output(graph, "SequenceErase", [sequence, _ints(graph, 0)])
    length = _output(graph, "SequenceLength", [sequence])
    joined = _output(graph, "ConcatFromSequence", [sequence], axis=0)
    model = _model(graph, length, joined)
    result = propagate(model)
    assert result.fact(length).value == (2,)
    assert result.shape(joined).dims == (2 * N,)
    _assert_agrees(model, {"x": _floats(5)}, exact=True)


@settings(max_examples=40)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.data())
def test_split_to_sequence_then_concat_gives_the_input_back(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    extent = shape[axis]
    how = data.draw(st.sampled_from(["none", "squeeze", "scalar", "sizes"]))
    graph = Graph("split")
    x = graph.add_input(
        "x", tensor_type(DType.FLOAT32, [symbol(f"x{i}") for i in range(len(shape))])
    )
    inputs, attrs = [x], {"axis": axis}
    if how == "squeeze":
        attrs["keepdims"] = 0
    elif how == "scalar":
        inputs.append(_ints(graph, data.draw(st.integers(1, extent))))
    elif how == "sizes":
        cuts = sorted(data.draw(st.lists(st.integers(0, extent), max_size=3)))
        inputs.append(_ints(graph, np.diff([0, *cuts, extent]).tolist()))
    sequence = _output(graph, "SplitToSequence", inputs, **attrs)
    length = _output(graph, "SequenceLength", [sequence])
    joined = _output(
        graph, "ConcatFromSequence", [sequence], axis=axis, new_axis=int(how == "squeeze")
    )
    model = _model(graph, length, joined)
    _assert_agrees(model, {"x": _floats(shape)}, exact=how in ("none", "squeeze"))


def _map_body(graph: Graph, op: str) -> Graph:
    body = graph.new_subgraph("body")
    element = body.add_input("element", None)
    body.set_outputs([body.add_node(op, [element]).outputs[0]])
    return body


def test_sequence_map_elements_have_the_body_output_shape():
    graph = Graph("map")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, C]))
    sequence = _output(graph, "SequenceConstruct", [x, x, x])
    mapped = _output(graph, "SequenceMap", [sequence], body=_map_body(graph, "Relu"))
    joined = _output(graph, "ConcatFromSequence", [mapped], axis=1)
    model = _model(graph, joined)
    assert propagate(model).shape(joined).dims == (N, 3 * C)
    _assert_agrees(model, {"x": _floats((2, 3))}, exact=True)


def test_sequence_map_extents_the_body_computes_afresh_differ_per_element():
    graph = Graph("map")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N]))
    y = graph.add_input("y", tensor_type(DType.FLOAT32, [N]))
    sequence = _output(graph, "SequenceConstruct", [x, y])
    mapped = _output(graph, "SequenceMap", [sequence], body=_map_body(graph, "NonZero"))
    element = _output(graph, "SequenceAt", [mapped, _ints(graph, 1)])
    model = _model(graph, element)
    assert propagate(model).shape(element).rank is None
    feeds = {"x": np.array([1, 0, 1], np.float32), "y": np.array([0, 0, 1], np.float32)}
    _assert_agrees(model, feeds, exact=False)


def test_a_loop_that_grows_a_sequence_does_not_keep_its_first_length():
    graph = Graph("loop")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N]))
    body = graph.new_subgraph("body")
    body.add_input("i", tensor_type(DType.INT64, []))
    condition = body.add_input("cond", tensor_type(DType.BOOL, []))
    carried = body.add_input("seq", None)
    grown = body.add_node("SequenceInsert", [carried, x]).outputs[0]
    body.set_outputs([body.add_node("Identity", [condition]).outputs[0], grown])
    start = _output(graph, "SequenceConstruct", [x])
    trips = _ints(graph, 3)
    loop = _output(graph, "Loop", [trips, graph.add_constant(np.array(True)), start], body=body)
    length = _output(graph, "SequenceLength", [loop])
    model = _model(graph, length)
    assert propagate(model).fact(length).value != (1,)
    _assert_agrees(model, {"x": _floats(4)}, exact=True)


def test_optionals_describe_their_contents():
    graph = Graph("optional")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, C]))
    full = _output(graph, "Optional", [x])
    contents = TensorType(DType.FLOAT32)
    empty = graph.add_node(
        "Optional",
        [],
        attrs={"type": Attribute(AttrKind.TYPE_PROTO, contents)},
        output_types=[OptionalType(contents)],
    ).outputs[0]
    held = _output(graph, "OptionalGetElement", [full])
    has_full = _output(graph, "OptionalHasElement", [full])
    has_empty = _output(graph, "OptionalHasElement", [empty])
    model = _model(graph, held, has_full, has_empty)
    result = propagate(model)
    assert result.shape(held).dims == (N, C)
    assert result.fact(has_full).value == (1,)
    assert result.fact(has_empty).value == (0,)
    _assert_agrees(model, {"x": _floats((2, 3))}, exact=True)


def test_a_sequence_graph_input_is_described_by_its_declared_element_type():
    graph = Graph("declared")
    sequence = graph.add_input("s", SequenceType(TensorType(DType.INT32, [4])))
    element = _output(graph, "SequenceAt", [sequence, _ints(graph, 0)])
    length = _output(graph, "SequenceLength", [sequence])
    model = _model(graph, element, length)
    result = propagate(model)
    assert result.shape(element).dims == (4,)
    assert result.fact(length).value is None
    feeds = {"s": [np.arange(4, dtype=np.int32), np.zeros(4, np.int32)]}
    _assert_agrees(model, feeds, exact=True)
