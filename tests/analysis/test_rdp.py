import numpy as np
import onnx
import pytest
import sympy

from sod2.analysis.facts import SymbolOrigin
from sod2.analysis.rdp import RDP, propagate
from sod2.analysis.shape_context import ShapeError
from sod2.analysis.symbolic import floor_div
from sod2.ir import DType, Graph, Model, load, symbol, tensor_type, to_onnx, verify
from sod2.ops import OpClass
from sod2.passes import PassContext, PassManager
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime
from sod2.testing.shape_check import check_model_shapes

N, H, W = symbol("N"), symbol("H"), symbol("W")


def ints(graph, values):
    return graph.add_constant(np.array(values, dtype=np.int64))


def test_shape_arithmetic_flows_into_reshape():
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, H, W]))
    shape = graph.add_node("Shape", [x]).outputs[0]
    first = graph.add_node("Gather", [shape, ints(graph, [0])], attrs={"axis": 0}).outputs[0]
    height = graph.add_node("Gather", [shape, ints(graph, [1])], attrs={"axis": 0}).outputs[0]
    half = graph.add_node("Div", [height, ints(graph, [2])]).outputs[0]
    target = graph.add_node("Concat", [first, half, ints(graph, [-1])], attrs={"axis": 0}).outputs[
        0
    ]
    y = graph.add_node("Reshape", [x, target]).outputs[0]
    graph.set_outputs([y])
    model = Model(graph, {"": 18})
    result = propagate(model)
    assert result.fact(half).value == (floor_div(H, 2),)
    # -1 takes what is left: N*H*W / (N * floor(H/2)), not expressible as a polynomial
    assert result.shape(y).dims[:2] == (N, floor_div(H, 2))
    assert result.classes[y.producer] is OpClass.ISVDOS
    assert result.classes[shape.producer] is OpClass.ISDO


def test_an_unnamed_input_dim_is_learned_from_its_use():
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, symbol("unk__0")]))
    y = graph.add_input("y", tensor_type(DType.FLOAT32, [N, 8]))
    z = graph.add_node("Concat", [x, y], attrs={"axis": 0}).outputs[0]
    graph.set_outputs([z])
    result = propagate(Model(graph, {"": 18}))
    assert result.learned == {symbol("unk__0"): 8}
    assert result.shape(z).dims == (2 * N, 8)
    assert result.shape(x).dims == (N, 8)


def test_broadcast_of_unrelated_symbols_is_exact_under_a_recorded_assumption():
    graph = Graph("main")
    a = graph.add_input("a", tensor_type(DType.FLOAT32, [H]))
    b = graph.add_input("b", tensor_type(DType.FLOAT32, [W]))
    c = graph.add_node("Add", [a, b]).outputs[0]
    graph.set_outputs([c])
    result = propagate(Model(graph, {"": 18}))
    assert result.shape(c).dims == (sympy.Max(H, W),)
    (assumption,) = result.assumptions
    assert assumption.holds.subs({H: 3, W: 1}) and not assumption.holds.subs({H: 3, W: 2})


def test_contradictory_constants_are_a_shape_error_naming_the_node():
    graph = Graph("main")
    a = graph.add_input("a", tensor_type(DType.FLOAT32, [3]))
    b = graph.add_input("b", tensor_type(DType.FLOAT32, [4]))
    graph.set_outputs([graph.add_node("Add", [a, b], name="bad_add").outputs[0]])
    with pytest.raises(ShapeError, match="bad_add"):
        propagate(Model(graph, {"": 18}))


def _if_model(then_len: int, else_len: int) -> tuple[Model, object]:
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 8]))
    cond = graph.add_input("c", tensor_type(DType.BOOL, []))
    branches = {}
    for key, length in (("then_branch", then_len), ("else_branch", else_len)):
        branch = graph.new_subgraph(key)
        sliced = branch.add_node(
            "Slice", [x, ints(graph, [0]), ints(graph, [length]), ints(graph, [1])]
        ).outputs[0]
        branch.set_outputs([sliced])
        branches[key] = branch
    out = graph.add_node("If", [cond], attrs=branches).outputs[0]
    graph.set_outputs([out])
    return Model(graph, {"": 18}), out


def test_if_with_differing_branches_gets_a_branch_symbol_and_is_edo():
    model, out = _if_model(3, 5)
    result = propagate(model)
    n, extent = result.shape(out).dims
    assert n == N
    info = result.symbols[extent]
    assert info.origin is SymbolOrigin.BRANCH and set(info.possible_values) == {3, 5}
    assert result.classes[out.producer] is OpClass.EDO
    for cond in (True, False):
        feeds = {"x": np.ones((2, 8), np.float32), "c": np.array(cond)}
        assert check_model_shapes(model, feeds).wrong == []


def test_if_whose_branches_agree_is_isdos():
    model, out = _if_model(4, 4)
    result = propagate(model)
    assert result.shape(out).dims == (N, 4)
    assert result.classes[out.producer] is OpClass.ISDOS


def test_loop_growth_is_expressed_in_the_trip_count():
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 2]))
    body = graph.new_subgraph("body")
    body.add_input("i", tensor_type(DType.INT64, []))
    cond_in = body.add_input("cond", tensor_type(DType.BOOL, []))
    acc = body.add_input("acc", tensor_type(DType.FLOAT32, None))
    grown = body.add_node("Concat", [acc, x], attrs={"axis": 0}).outputs[0]
    cond_out = body.add_node("Identity", [cond_in]).outputs[0]
    body.set_outputs([cond_out, grown])
    trips = ints(graph, 3)
    loop = graph.add_node("Loop", [trips, None, x], attrs={"body": body}).outputs[0]
    graph.set_outputs([loop])
    model = Model(graph, {"": 18})
    result = propagate(model)
    assert result.shape(loop).dims == (4 * N, 2)
    assert check_model_shapes(model, {"x": np.ones((3, 2), np.float32)}).wrong == []


def test_rdp_is_a_cached_analysis_and_infer_shapes_writes_it_onto_the_ir(tmp_path):
    model, out = _if_model(3, 3)
    context = PassContext()
    first = context.analyses.get(RDP, model)
    assert context.analyses.get(RDP, model) is first
    PassManager.parse("infer-shapes").run(model, context)
    assert out.type == tensor_type(DType.FLOAT32, [N, 3])
    verify(model)
    proto = to_onnx(model)
    onnx.checker.check_model(proto)
    feeds = {"x": np.ones((2, 8), np.float32), "c": np.array(True)}
    assert outputs_mismatch(run_onnxruntime(proto, feeds), [np.ones((2, 3), np.float32)]) == ""
    assert load(proto).graph.outputs[0].type == out.type
