import numpy as np
import pytest

from sod2.ir import DType, Graph, Model, symbol, tensor_type, verify
from sod2.passes import PassManager

N = symbol("N")


def fold(model, pipeline="fold-constants,dce"):
    report = PassManager.parse(pipeline).run(model)
    verify(model)
    return report


def shape_chain_model():
    """Reshape(x, Concat(Gather(Shape(c2d)), [-1])): the shape arithmetic is all constant."""
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 6]))
    template = graph.add_constant(np.zeros((3, 2), dtype=np.float32), "template")
    shape = graph.add_node("Shape", [template]).outputs[0]
    first = graph.add_node(
        "Gather",
        [shape, graph.add_constant(np.array([1], dtype=np.int64), "idx")],
        attrs={"axis": 0},
    ).outputs[0]
    minus_one = graph.add_constant(np.array([-1], dtype=np.int64), "minus_one")
    target = graph.add_node("Concat", [minus_one, first], attrs={"axis": 0}).outputs[0]
    out = graph.add_node("Reshape", [x, target], outputs=["y"]).outputs[0]
    graph.set_outputs([out])
    return Model(graph, {"": 18})


def test_a_constant_shape_computation_collapses_to_one_constant():
    model = shape_chain_model()
    fold(model)
    graph = model.graph
    assert [n.op_type for n in graph.nodes] == ["Reshape"]
    (target,) = graph.constants
    np.testing.assert_array_equal(target.const_value, [-1, 2])
    assert graph.outputs[0].name == "y"


def test_inputs_with_defaults_are_not_folded():
    graph = Graph("main")
    k = graph.add_input("k", tensor_type(DType.INT64, [1]), default=np.array([2]))
    doubled = graph.add_node("Add", [k, k], outputs=["y"]).outputs[0]
    graph.set_outputs([doubled])
    model = Model(graph, {"": 18})
    assert not fold(model, "fold-constants").changed


def test_a_folded_model_output_keeps_its_name():
    graph = Graph("main")
    c = graph.add_constant(np.array([1.0, 2.0], dtype=np.float32), "c")
    y = graph.add_node("Neg", [c], outputs=["y"]).outputs[0]
    graph.set_outputs([y])
    model = Model(graph, {"": 18})
    fold(model)
    (out,) = graph.outputs
    assert out.name == "y" and out.is_constant
    np.testing.assert_array_equal(out.const_value, [-1.0, -2.0])


def test_results_that_would_bloat_the_model_stay_computed():
    graph = Graph("main")
    scalar = graph.add_constant(np.array(1.0, dtype=np.float32), "one")
    shape = graph.add_constant(np.array([1024, 1024], dtype=np.int64), "shape")
    big = graph.add_node("Expand", [scalar, shape], outputs=["big"]).outputs[0]
    graph.set_outputs([big])
    model = Model(graph, {"": 18})
    assert not fold(model, "fold-constants{max_bytes=65536}").changed
    assert fold(model, "fold-constants{max_bytes=8388608}").changed


def test_failing_evaluations_stay_run_time_errors():
    graph = Graph("main")
    a = graph.add_constant(np.array([1, 2], dtype=np.int64), "a")
    zero = graph.add_constant(np.array([0, 0], dtype=np.int64), "zero")
    bad = graph.add_node("Div", [a, zero], outputs=["bad"]).outputs[0]
    graph.set_outputs([bad])
    model = Model(graph, {"": 18})
    assert not fold(model, "fold-constants").changed


def test_ops_without_a_kernel_are_left_alone():
    graph = Graph("main")
    c = graph.add_constant(np.ones((1, 1, 2, 2), dtype=np.float32), "c")
    y = graph.add_node("GlobalLpPoolUnknown", [c], outputs=["y"]).outputs[0]
    graph.set_outputs([y])
    model = Model(graph, {"": 18})
    assert not fold(model, "fold-constants").changed


def test_subgraph_constants_fold_inside_the_subgraph(if_model):
    graph = if_model.graph
    then_branch = dict(graph.nodes[-1].subgraphs)["then_branch"]
    c = then_branch.add_constant(np.array([3.0], dtype=np.float32), "inner_c")
    neg = then_branch.add_node("Neg", [c], name="fold_me").outputs[0]
    add = then_branch.add_node("Add", [then_branch.outputs[0], neg], name="add").outputs[0]
    then_branch.set_outputs([add])
    fold(if_model)
    assert [n.name for n in then_branch.nodes] == [then_branch.nodes[0].name, "add"]
    assert then_branch.nodes[0].op_type == "Neg"  # reads the outer y: not constant
    (folded,) = then_branch.constants
    np.testing.assert_array_equal(folded.const_value, [-3.0])
    assert then_branch.nodes[1].inputs[1] is folded


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_folding_respects_the_opset_of_attribute_moves(opset):
    graph = Graph("main")
    c = graph.add_constant(np.zeros((1, 3), dtype=np.float32), "c")
    if opset < 13:
        squeezed = graph.add_node("Squeeze", [c], attrs={"axes": [0]}, outputs=["y"])
    else:
        axes = graph.add_constant(np.array([0], dtype=np.int64), "axes")
        squeezed = graph.add_node("Squeeze", [c, axes], outputs=["y"])
    graph.set_outputs([squeezed.outputs[0]])
    model = Model(graph, {"": opset})
    fold(model)
    assert graph.outputs[0].const_value.shape == (3,)
