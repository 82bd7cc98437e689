import numpy as np

from sod2.ir import DType, Graph, Model, format_graph, symbol, tensor_type, verify
from sod2.passes import PassManager

FLOAT = tensor_type(DType.FLOAT32, [symbol("N")])


def run(model, pipeline="dce"):
    report = PassManager.parse(pipeline).run(model)
    verify(model)
    return report


def test_removes_unused_chains_and_constants():
    graph = Graph("main")
    x = graph.add_input("x", FLOAT)
    c = graph.add_constant(np.ones(1, dtype=np.float32), "c")
    dead = graph.add_node("Add", [x, c], name="dead")
    graph.add_node("Neg", [dead.outputs[0]], name="dead_too")
    keep = graph.add_node("Relu", [x], name="keep")
    graph.set_outputs([keep.outputs[0]])
    model = Model(graph, {"": 18})
    assert run(model).changed
    assert [n.name for n in graph.nodes] == ["keep"]
    assert graph.constants == ()
    assert graph.inputs == (x,)  # inputs are the interface: kept
    assert not run(model).changed


def test_removes_dead_nodes_inside_live_subgraphs_and_frees_outer_tensors(if_model):
    graph = if_model.graph
    then_branch = dict(graph.nodes[-1].subgraphs)["then_branch"]
    outer_only_used_inside = graph.add_node("Abs", [graph.inputs[0]], name="abs").outputs[0]
    then_branch.add_node("Sqrt", [outer_only_used_inside], name="inner_dead")
    run(if_model)
    names = {n.name for n in graph.walk()}
    assert "inner_dead" not in names and "abs" not in names
    assert "relu" in names  # read by the live then-branch


def test_a_dead_control_flow_node_goes_with_its_subgraphs(if_model):
    graph = if_model.graph
    graph.set_outputs([graph.inputs[0]])
    run(if_model)
    assert len(graph) == 0
    assert graph.find_tensor("t") is None


def test_nodes_of_custom_domains_are_kept():
    graph = Graph("main")
    x = graph.add_input("x", FLOAT)
    graph.add_node("Log", [x], domain="com.example", name="custom")
    graph.set_outputs([x])
    model = Model(graph, {"": 18, "com.example": 1})
    assert not run(model).changed
    assert "custom" in format_graph(graph)
