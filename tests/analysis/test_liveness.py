"""Liveness: roles, symbolic sizes, views, in-place, and reads inside subgraphs."""

import numpy as np
import sympy

from sod2.analysis.liveness import ALIGNMENT, Role, aligned, find_views, liveness, tensor_bytes
from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type

N = symbol("N")


def _model(build):
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 4]))
    graph.set_outputs([build(graph, x)])
    return Model(graph, {"": 18})


def _ints(graph, values):
    return graph.add_constant(np.array(values, dtype=np.int64))


def _storages(model):
    result = propagate(model)
    return liveness(model.graph, result.facts), result


def test_sizes_are_symbolic_bytes_rounded_to_the_alignment():
    model = _model(lambda g, x: g.add_node("Relu", [x], outputs=["y"]).outputs[0])
    result = propagate(model)
    x = model.graph.inputs[0]
    assert tensor_bytes(result.facts[x]) == 16 * N
    assert aligned(16 * N) == 64 * sympy.floor((N + 3) / 4)
    assert aligned(64 * N) == 64 * N
    assert aligned(65) == 2 * ALIGNMENT


def test_roles_and_lifetimes_of_a_chain(chain):
    graph, x, c, relu, neg = chain
    result = propagate(Model(graph, {"": 18}))
    lv = liveness(graph, result.facts, inplace=False)
    assert lv.storage_of[x].role is Role.INPUT
    assert lv.storage_of[c].role is Role.CONSTANT
    assert lv.storage_of[neg.outputs[0]].role is Role.OUTPUT
    middle = lv.storage_of[relu.outputs[0]]
    assert middle.role is Role.INTERMEDIATE and (middle.start, middle.end) == (0, 1)
    assert [s.name for s in lv.planned()] == [relu.outputs[0].name]


def test_reshape_and_flatten_are_views_of_one_storage():
    def build(g, x):
        r = g.add_node("Relu", [x], outputs=["r"]).outputs[0]
        flat = g.add_node("Reshape", [r, _ints(g, [-1])], outputs=["flat"]).outputs[0]
        back = g.add_node("Unsqueeze", [flat, _ints(g, [0])], outputs=["back"]).outputs[0]
        return g.add_node("Exp", [back], outputs=["y"]).outputs[0]

    model = _model(build)
    lv, _ = _storages(model)
    graph = model.graph
    storage = lv.storage_of[graph.tensor("r")]
    assert [t.name for t in storage.tensors] == ["r", "flat", "back"]
    assert storage.end == 3  # alive until Exp reads the last view
    assert all(offset == 0 for offset in storage.offsets.values())


def test_contiguous_slice_is_a_view_at_an_offset_and_a_strided_one_is_not():
    def build(g, x):
        r = g.add_node("Relu", [x], outputs=["r"]).outputs[0]
        rows = g.add_node(
            "Slice", [r, _ints(g, [1]), _ints(g, [3]), _ints(g, [0])], outputs=["rows"]
        )
        cols = g.add_node(
            "Slice", [r, _ints(g, [1]), _ints(g, [3]), _ints(g, [1])], outputs=["cols"]
        )
        return g.add_node(
            "Concat", [rows.outputs[0], cols.outputs[0]], outputs=["y"], attrs={"axis": 1}
        ).outputs[0]

    model = _model(build)
    views = find_views(model.graph, propagate(model).facts)
    rows = model.graph.tensor("rows")
    assert set(views) == {rows}
    assert views[rows].offset == 16 * sympy.Max(0, sympy.Min(1, N))


def test_elementwise_op_writes_over_an_input_that_dies_there():
    def build(g, x):
        a = g.add_node("Exp", [x], outputs=["a"]).outputs[0]
        b = g.add_node("Relu", [a], outputs=["b"]).outputs[0]
        c = g.add_node("Add", [b, b], outputs=["c"]).outputs[0]
        return g.add_node("Mul", [c, a], outputs=["y"]).outputs[0]  # a is read again here

    model = _model(build)
    lv, _ = _storages(model)
    graph = model.graph
    pairs = {(p.input.name, p.output.name) for p in lv.inplace}
    assert pairs == {("b", "c")}  # not (a, b): a is still read by Mul
    assert lv.storage_of[graph.tensor("c")] is lv.storage_of[graph.tensor("b")]
    off = liveness(graph, propagate(model).facts, inplace=False)
    assert not off.inplace


def test_softmax_writes_over_an_input_that_dies_there():
    def build(g, x):
        a = g.add_node("Exp", [x], outputs=["a"]).outputs[0]
        b = g.add_node("Softmax", [a], outputs=["b"], attrs={"axis": -1}).outputs[0]
        c = g.add_node("Softmax", [b], outputs=["c"], attrs={"axis": -1}).outputs[0]
        return g.add_node("Mul", [c, b], outputs=["y"]).outputs[0]  # b is read again here

    model = _model(build)
    lv, _ = _storages(model)
    assert {(p.input.name, p.output.name) for p in lv.inplace} == {("a", "b")}


def test_tensors_read_inside_a_branch_live_across_the_if(if_model):
    graph = if_model.graph
    lv, _ = _storages(if_model)
    y = graph.tensor("y")
    step_of_if = [n.op_type for n in lv.order].index("If")
    assert lv.storage_of[y].end == step_of_if


def test_unknown_sizes_are_listed_as_unplanned():
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, None))
    graph.set_outputs(
        [
            graph.add_node(
                "Exp", [graph.add_node("Relu", [x], outputs=["r"]).outputs[0]], outputs=["y"]
            ).outputs[0]
        ]
    )
    model = Model(graph, {"": 18})
    lv, _ = _storages(model)
    assert [t.name for t in lv.unplanned] == ["r"]
    assert lv.planned() == []


def _dense_block(batch):
    """A dense block: each Concat appends a new feature map (Exp of the previous Concat) to it
    along axis 1; `batch` is the first axis of the input [batch, 2, N]."""
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [batch, 2, N]))
    first = graph.add_node("Relu", [x], outputs=["f0"]).outputs[0]
    features = graph.add_node("Neg", [x], outputs=["f1"]).outputs[0]
    total = graph.add_node("Concat", [first, features], outputs=["c1"], attrs={"axis": 1})
    for k in (2, 3):
        grown = graph.add_node("Exp", [total.outputs[0]], outputs=[f"f{k}"]).outputs[0]
        total = graph.add_node(
            "Concat", [total.outputs[0], grown], outputs=[f"c{k}"], attrs={"axis": 1}
        )
    graph.set_outputs([graph.add_node("Sigmoid", [total.outputs[0]], outputs=["y"]).outputs[0]])
    return Model(graph, {"": 18})


def test_a_dense_blocks_features_are_computed_in_the_last_concats_output():
    model = _dense_block(1)
    lv, _ = _storages(model)
    graph = model.graph
    root = lv.storage_of[graph.tensor("c3")]
    members = {t.name: root.offsets[t] for t in root.tensors}
    row = 4 * N  # bytes of one channel of [1, C, N] float32
    assert members == {
        "c3": 0, "f0": 0, "f1": 2 * row, "c1": 0, "f2": 4 * row, "c2": 0, "f3": 8 * row
    }  # fmt: skip
    assert root.size == aligned(16 * row) and root.start == 0  # from f0, the first made
    off = liveness(graph, propagate(model).facts, inplace=False)
    assert len({id(off.storage_of[graph.tensor(n)]) for n in ("f0", "f1", "c1", "c3")}) == 4


def test_concat_inputs_are_copied_where_they_would_not_be_contiguous():
    model = _dense_block(symbol("B"))  # a first axis that may exceed 1
    lv, _ = _storages(model)
    graph = model.graph
    assert lv.storage_of[graph.tensor("f1")] is not lv.storage_of[graph.tensor("c1")]
    assert all(len(s.tensors) == 1 for s in lv.planned())
