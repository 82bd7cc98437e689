"""Fusion: which groups form, and that the fused model computes what the original did."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.rdp import propagate
from sod2.backend.reference import run_reference
from sod2.ir import verify
from sod2.ir.dims import symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph
from sod2.ir.model import Model
from sod2.ir.onnx_export import to_onnx
from sod2.ir.onnx_import import from_onnx
from sod2.ir.types import Shape, TensorType
from sod2.ops.fused import is_fused
from sod2.opt.fusion import find_groups, fuse, group_table
from sod2.testing.strategies import dynamic_graphs
from sod2.zoo import get, names


def everything(node, opset):
    """A code generator that accepts every node (fusion's structure alone is under test)."""
    return None


def f32(*dims) -> TensorType:
    return TensorType(DType.FLOAT32, Shape([symbol(d) if isinstance(d, str) else d for d in dims]))


def model_of(graph: Graph) -> Model:
    return Model(graph, opset_imports={"": 21})


def groups_of(model: Model) -> list[list[str]]:
    found = find_groups(model, propagate(model), supports=everything)
    return [[n.op_type for n in group] for group in found.get(model.graph, [])]


def copy(model: Model) -> Model:
    return from_onnx(to_onnx(model))


def test_figure_4_broadcast_fuses_when_rdp_proves_the_dims_of_one():
    graph = Graph()
    a = graph.add_input("A", f32("I", 1, 1))
    b = graph.add_input("B", f32("I", "J", "K"))
    sig = graph.add_node("Sigmoid", [a]).outputs[0]
    graph.set_outputs([graph.add_node("Add", [sig, b]).outputs[0]])
    model = model_of(graph)
    assert groups_of(model) == [["Sigmoid", "Add"]]
    groups = fuse(model, supports=everything)
    assert len(groups) == 1 and groups[0].kind == "elementwise"
    assert [str(d) for d in groups[0].shape] == ["I", "J", "K"]
    assert "Sigmoid -> Add" in group_table(groups)


def test_unprovable_broadcast_does_not_fuse():
    graph = Graph()
    x = graph.add_input("X", f32("N"))
    y = graph.add_input("Y", f32("M"))
    relu = graph.add_node("Relu", [x]).outputs[0]
    graph.set_outputs([graph.add_node("Add", [relu, y]).outputs[0]])
    assert groups_of(model_of(graph)) == [["Relu"], ["Add"]]


def test_a_smaller_tensor_read_outside_the_group_stays_out():
    graph = Graph()
    a = graph.add_input("A", f32("I", 1, 1))
    b = graph.add_input("B", f32("I", "J", "K"))
    sig = graph.add_node("Sigmoid", [a]).outputs[0]
    add = graph.add_node("Add", [sig, b]).outputs[0]
    graph.set_outputs([add, sig])
    assert groups_of(model_of(graph)) == [["Sigmoid"], ["Add"]]


def test_groups_stay_convex():
    # relu feeds add directly and through a conv: relu+add together would need the conv inside
    graph = Graph()
    x = graph.add_input("X", f32("N", 4, "H", "W"))
    w = graph.add_constant(np.ones((4, 4, 1, 1), np.float32), "w")
    relu = graph.add_node("Relu", [x]).outputs[0]
    conv = graph.add_node("Conv", [relu, w]).outputs[0]
    other = graph.add_node("MaxPool", [conv], attrs={"kernel_shape": [1, 1]}).outputs[0]
    graph.set_outputs([graph.add_node("Add", [relu, other]).outputs[0]])
    assert groups_of(model_of(graph)) == [["Relu"], ["Add"]]


def test_epilogue_joins_a_matmul_read_only_by_the_group():
    graph = Graph()
    x = graph.add_input("X", f32("N", "L", 8))
    w = graph.add_constant(np.ones((8, 16), np.float32), "w")
    bias = graph.add_constant(np.ones(16, np.float32), "bias")
    mm = graph.add_node("MatMul", [x, w]).outputs[0]
    add = graph.add_node("Add", [mm, bias]).outputs[0]
    graph.set_outputs([graph.add_node("Relu", [add]).outputs[0]])
    model = model_of(graph)
    assert groups_of(model) == [["MatMul", "Add", "Relu"]]
    (group,) = fuse(model, supports=everything)
    assert group.kind == "epilogue"


def test_a_heavy_op_read_twice_is_no_epilogue():
    graph = Graph()
    x = graph.add_input("X", f32("N", 8))
    w = graph.add_constant(np.ones((8, 8), np.float32), "w")
    mm = graph.add_node("MatMul", [x, w]).outputs[0]
    relu = graph.add_node("Relu", [mm]).outputs[0]
    graph.set_outputs([relu, mm])
    assert groups_of(model_of(graph)) == [["Relu"]]


def test_edo_outputs_are_read_but_never_computed_in_a_group():
    graph = Graph()
    x = graph.add_input("X", f32("N"))
    nz = graph.add_node("NonZero", [x]).outputs[0]
    cast = graph.add_node("Cast", [nz], attrs={"to": int(DType.FLOAT32.value)}).outputs[0]
    graph.set_outputs([graph.add_node("Relu", [cast]).outputs[0]])
    # the NonZero count is only known by running: nothing downstream of it fuses
    assert groups_of(model_of(graph)) == []


def test_codegen_refusal_keeps_a_node_out():
    graph = Graph()
    x = graph.add_input("X", f32("N"))
    relu = graph.add_node("Relu", [x]).outputs[0]
    graph.set_outputs([graph.add_node("Exp", [relu]).outputs[0]])
    model = model_of(graph)
    found = find_groups(
        model, propagate(model), supports=lambda n, o: "no" if n.op_type == "Exp" else None
    )
    assert [[n.op_type for n in g] for g in found[model.graph]] == [["Relu"]]


@pytest.mark.parametrize("name", names())
def test_fused_zoo_models_compute_what_the_originals_do(name):
    entry = get(name)
    original = entry.path()
    from sod2.ir import load

    model = load(original)
    fused = copy(model)
    groups = fuse(fused, supports=everything)
    verify(fused)
    assert groups, f"{name}: nothing fused"
    for group in groups:
        assert len({n.graph for n in group.nodes}) == 1
    inner = [n for n in fused.graph.walk() if is_fused(n)]
    assert len(inner) == len(groups)
    point, feeds = entry.sweep_inputs()[0]
    want = run_reference(model, feeds).outputs
    got = run_reference(fused, feeds).outputs
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


@settings(max_examples=25, deadline=None)
@given(dynamic_graphs(), st.data())
def test_fusion_keeps_random_graphs_equal(case, data):
    binding = data.draw(case.bindings())
    feeds = case.inputs(binding)
    fused = copy(case.model)
    fuse(fused, supports=everything)
    verify(fused)
    want = run_reference(case.model, feeds).outputs
    got = run_reference(fused, feeds).outputs
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_one_element_constants_move_into_elementwise_bodies():
    graph = Graph()
    x = graph.add_input("x", f32("N", 4))
    two = graph.add_constant(np.array(2.0, np.float32), "two")
    row = graph.add_constant(np.arange(4, dtype=np.float32), "row")
    squared = graph.add_node("Pow", [x, two]).outputs[0]
    graph.set_outputs([graph.add_node("Add", [squared, row]).outputs[0]])
    model = model_of(graph)
    original = copy(model)
    (group,) = fuse(model, supports=everything)
    (node,) = [n for n in model.graph.nodes if is_fused(n)]
    body = node.attr("body")
    assert [t.name for t in node.inputs] == ["x", "row"]  # the scalar is no input
    assert [float(t.const_value) for t in body.constants] == [2.0]
    verify(model)
    feeds = {"x": np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)}
    np.testing.assert_array_equal(
        next(iter(run_reference(model, feeds).outputs.values())),
        next(iter(run_reference(original, feeds).outputs.values())),
    )


def test_an_epilogue_keeps_its_constants_as_inputs():
    graph = Graph()
    a = graph.add_input("a", f32("M", 4))
    w = graph.add_constant(np.ones((4, 4), np.float32), "w")
    half = graph.add_constant(np.array(0.5, np.float32), "half")
    product = graph.add_node("MatMul", [a, w]).outputs[0]
    graph.set_outputs([graph.add_node("Mul", [product, half]).outputs[0]])
    model = model_of(graph)
    (group,) = fuse(model, supports=everything)
    assert group.kind == "epilogue"
    assert {t.name for t in group.inputs} == {"a", "w", "half"}


def conv_model(stages: list[str], *, height="H", channels: int = 4) -> Model:
    """X[N, C, H, W] through `stages` in turn: "conv" (3x3, padded), "relu", "resize" (x2),
    "scale" (a Mul by a per-channel constant), "residual" (an Add of X itself)."""
    graph = Graph()
    x = graph.add_input("X", f32("N", channels, height, "W"))
    value = x
    for k, stage in enumerate(stages):
        if stage == "conv":
            w = graph.add_constant(np.full((channels, channels, 3, 3), 0.1, np.float32), f"w{k}")
            value = graph.add_node("Conv", [value, w], attrs={"pads": [1, 1, 1, 1]}).outputs[0]
        elif stage == "relu":
            value = graph.add_node("Relu", [value]).outputs[0]
        elif stage == "resize":
            scales = graph.add_constant(np.array([1, 1, 2, 2], np.float32), f"scales{k}")
            value = graph.add_node("Resize", [value, None, scales]).outputs[0]
        elif stage == "scale":
            c = graph.add_constant(np.ones((channels, 1, 1), np.float32), f"c{k}")
            value = graph.add_node("Mul", [value, c]).outputs[0]
        elif stage == "residual":
            value = graph.add_node("Add", [value, x]).outputs[0]
    graph.set_outputs([value])
    return model_of(graph)


def kinds_of(groups) -> list[tuple[str, list[str]]]:
    return [(g.kind, [n.op_type for n in g.nodes]) for g in groups]


def test_convolutions_reading_each_other_form_chains_of_up_to_three_stages():
    model = conv_model(["conv", "relu", "conv", "conv", "scale", "relu", "conv", "resize", "conv"])
    groups = fuse(model, supports=everything)
    assert kinds_of(groups) == [
        ("chain", ["Conv", "Relu", "Conv", "Conv", "Mul", "Relu"]),
        ("chain", ["Conv", "Resize", "Conv"]),
    ]
    unchained = conv_model(["conv", "relu", "conv", "conv", "scale", "relu"])
    assert kinds_of(fuse(unchained, supports=everything, chains=False)) == [
        ("epilogue", ["Conv", "Relu"]),
        ("epilogue", ["Conv", "Mul", "Relu"]),
    ]
    assert "[chain]" in group_table(groups)


@pytest.mark.parametrize(
    "stages, height",
    [
        (["conv", "residual", "conv"], "H"),  # the epilogue reads X, which varies along H
        (["conv", "relu", "resize"], "H"),  # a Resize ends the run: nothing to save
        (["conv", "conv"], 8),  # a small static tensor between them
    ],
)
def test_what_does_not_chain(stages, height):
    model = conv_model(stages, height=height)
    if height == 8:
        model.graph.inputs[0].type = f32(1, 4, 8, 8)
    assert all(g.kind != "chain" for g in fuse(model, supports=everything))


def test_a_result_read_twice_does_not_chain():
    model = conv_model(["conv", "relu", "conv"])
    relu = next(n for n in model.graph.nodes if n.op_type == "Relu")
    model.graph.set_outputs([*model.graph.outputs, relu.outputs[0]])
    assert kinds_of(fuse(model, supports=everything)) == [("epilogue", ["Conv", "Relu"])]


def test_a_large_static_tensor_chains():
    model = conv_model(["conv", "relu", "conv"], height=256, channels=8)  # 8 * 256 * W floats
    model.graph.inputs[0].type = f32(1, 8, 256, 256)
    assert kinds_of(fuse(model, supports=everything)) == [("chain", ["Conv", "Relu", "Conv"])]


def test_a_chained_model_computes_what_the_original_does():
    model = conv_model(["conv", "relu", "conv", "resize", "conv", "scale"])
    fused = copy(model)
    assert [g.kind for g in fuse(fused, supports=everything)] == ["chain", "chain"]
    verify(fused)
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 5)).astype(np.float32)
    want = run_reference(model, {"X": x}).outputs
    got = run_reference(fused, {"X": x}).outputs
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_a_residual_sum_is_finished_by_the_chain_of_its_residual():
    """relu(shortcut(x) + residual(x)): with chains, the sum is the epilogue of the residual's
    last Conv, which ends a chain (without, of the first Conv found, the shortcut's)."""

    def block() -> Model:
        graph = Graph()
        x = graph.add_input("X", f32("N", 4, "H", "W"))
        w = graph.add_constant(np.full((4, 4, 3, 3), 0.1, np.float32), "w")
        pads = {"pads": [1, 1, 1, 1]}
        shortcut = graph.add_node("Conv", [x, w], attrs=pads, name="shortcut").outputs[0]
        inner = graph.add_node("Conv", [x, w], attrs=pads, name="inner").outputs[0]
        inner = graph.add_node("Relu", [inner]).outputs[0]
        outer = graph.add_node("Conv", [inner, w], attrs=pads, name="outer").outputs[0]
        total = graph.add_node("Add", [shortcut, outer]).outputs[0]
        graph.set_outputs([graph.add_node("Relu", [total]).outputs[0]])
        return model_of(graph)

    chained = fuse(block(), supports=everything)
    assert kinds_of(chained) == [("chain", ["Conv", "Relu", "Conv", "Add", "Relu"])]
    assert [n.name for n in chained[0].nodes if n.op_type == "Conv"] == ["inner_1", "outer_1"]
    plain = fuse(block(), supports=everything, chains=False)
    assert kinds_of(plain) == [
        ("epilogue", ["Conv", "Relu"]),
        ("epilogue", ["Conv", "Add", "Relu"]),
    ]
    assert plain[1].nodes[0].name == "shortcut_1"
