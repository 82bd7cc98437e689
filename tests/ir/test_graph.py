import numpy as np
import pytest

from sod2.errors import GraphEditError
from sod2.ir import DType, Graph, Use, tensor_type, verify
from tests.conftest import float_input


def test_building_keeps_producers_and_uses(chain):
    graph, x, c, relu, neg = chain
    assert relu.outputs[0].producer is relu
    assert x.uses == (Use(relu, 0),)
    assert relu.outputs[0].users == [neg]
    assert neg.outputs[0].uses == (Use(graph, 0),)
    assert graph.predecessors(neg) == [relu]
    verify(graph)


def test_erase_refuses_while_outputs_are_read(chain):
    graph, x, c, relu, neg = chain
    with pytest.raises(GraphEditError, match="still read by input 0 of node 'neg'"):
        graph.erase(relu)
    verify(graph)
    assert relu.graph is graph


def test_erase_refuses_graph_outputs(chain):
    graph, *_, neg = chain
    with pytest.raises(GraphEditError, match="output 0 of graph 'main'"):
        graph.erase(neg)


def test_replace_all_uses_then_erase(chain):
    graph, x, c, relu, neg = chain
    relu.outputs[0].replace_all_uses_with(x)
    graph.erase(relu)
    assert neg.inputs == (x,)
    assert len(graph) == 1
    verify(graph)


def test_replacing_a_model_output_keeps_the_output_name(chain):
    graph, x, c, relu, neg = chain
    old = neg.outputs[0]
    name = old.name
    abs_node = graph.add_node("Abs", [relu.outputs[0]])
    old.replace_all_uses_with(abs_node.outputs[0])
    assert graph.outputs[0] is abs_node.outputs[0]
    assert graph.outputs[0].name == name
    assert old.name != name
    verify(graph)


def test_replacing_a_model_output_by_an_input_is_refused(chain):
    graph, x, c, relu, neg = chain
    with pytest.raises(GraphEditError, match="insert an Identity"):
        neg.outputs[0].replace_all_uses_with(x)
    assert graph.outputs[0] is neg.outputs[0]
    verify(graph)


def test_an_edit_that_closes_a_cycle_is_refused(chain):
    graph, x, c, relu, neg = chain
    with pytest.raises(GraphEditError, match="cycle"):
        relu.set_input(0, neg.outputs[0])
    assert relu.inputs == (x,)
    verify(graph)


def test_reading_a_tensor_out_of_scope_is_refused(if_model):
    graph = if_model.graph
    if_node = graph.nodes[-1]
    inner = if_node.subgraphs[0][1].nodes[0].outputs[0]
    with pytest.raises(GraphEditError, match="not in scope"):
        graph.add_node("Relu", [inner])
    verify(if_model)


def test_a_tensor_of_another_model_cannot_be_read(chain):
    graph, *_ = chain
    other = Graph("other")
    stranger = float_input(other, "s")
    with pytest.raises(GraphEditError, match="not in scope"):
        graph.add_node("Relu", [stranger])


def test_names_are_unique_per_model(chain):
    graph, x, *_ = chain
    with pytest.raises(GraphEditError, match="already taken"):
        graph.add_input("x", x.type)
    node = graph.add_node("Relu", [x])
    assert node.outputs[0].name != "x"
    with pytest.raises(GraphEditError, match="taken"):
        node.outputs[0].rename("x")
    node.outputs[0].rename("fresh")
    assert graph.tensor("fresh") is node.outputs[0]
    verify(graph)


def test_explicit_output_names_must_be_free_and_the_graph_stays_intact(chain):
    graph, x, *_ = chain
    before = len(graph)
    with pytest.raises(GraphEditError, match="new and distinct"):
        graph.add_node("Split", [x], outputs=["a", "a"])
    with pytest.raises(GraphEditError, match="new and distinct"):
        graph.add_node("Relu", [x], outputs=["x"])
    assert len(graph) == before
    verify(graph)


def test_node_names_are_unique(chain):
    graph, x, *_ = chain
    first = graph.add_node("Relu", [x], name="r")
    second = graph.add_node("Relu", [x], name="r")
    assert first.name == "r" and second.name != "r"
    with pytest.raises(GraphEditError):
        second.rename("r")


def test_outer_reads_make_the_control_flow_node_depend_on_the_producer(if_model):
    graph = if_model.graph
    relu, if_node = graph.nodes
    assert graph.predecessors(if_node) == [relu]
    y = relu.outputs[0]
    assert any(use.node is not None and use.node.graph is not graph for use in y.uses)
    verify(if_model)


def test_erasing_a_control_flow_node_drops_its_outer_reads(if_model):
    graph = if_model.graph
    relu, if_node = graph.nodes
    z = if_node.outputs[0]
    graph.set_outputs([relu.outputs[0]])
    graph.erase(if_node)
    assert relu.outputs[0].uses == (Use(graph, 0),)
    assert graph.find_tensor("t") is None
    assert z.graph is None
    verify(if_model)


def test_replacing_a_subgraph_attribute_detaches_the_old_one(if_model):
    graph = if_model.graph
    relu, if_node = graph.nodes
    fresh = graph.new_subgraph("then2")
    fresh.set_outputs([graph.inputs[0]])
    if_node.set_attr("then_branch", fresh)
    assert graph.find_tensor("t") is None
    assert dict(if_node.subgraphs)["then_branch"] is fresh
    assert graph.predecessors(if_node) == []
    verify(if_model)


def test_a_subgraph_attaches_once(if_model):
    graph = if_model.graph
    if_node = graph.nodes[-1]
    then_branch = dict(if_node.subgraphs)["then_branch"]
    with pytest.raises(GraphEditError, match="already belongs"):
        graph.add_node(
            "If", [graph.inputs[1]], attrs={"then_branch": then_branch, "else_branch": then_branch}
        )


def test_remove_input_and_constant_refuse_while_read(chain):
    graph, x, c, *_ = chain
    with pytest.raises(GraphEditError, match="still read"):
        graph.remove_input(x)
    graph.remove_constant(c)
    assert graph.find_tensor("c") is None
    verify(graph)


def test_topological_order_follows_program_order_where_free(chain):
    graph, x, c, relu, neg = chain
    late = graph.add_node("Abs", [x], name="late")
    graph.reorder([neg, late, relu])
    assert not graph.is_topologically_ordered()
    assert graph.topological_order() == [late, relu, neg]
    verify(graph)


def test_every_edit_bumps_the_version_of_enclosing_graphs(if_model):
    graph = if_model.graph
    inner = dict(graph.nodes[-1].subgraphs)["then_branch"]
    before_outer, before_inner = graph.version, inner.version
    inner.add_node("Relu", [graph.inputs[0]])
    assert inner.version > before_inner and graph.version > before_outer


def test_attribute_values_are_typed(chain):
    graph, x, *_ = chain
    node = graph.add_node("Transpose", [x], attrs={"perm": [1, 0], "alpha": 0.5, "mode": "x"})
    kinds = {key: attr.kind.name for key, attr in node.attrs.items()}
    assert kinds == {"perm": "INTS", "alpha": "FLOAT", "mode": "STRING"}
    assert node.attr("perm") == (1, 0)
    assert node.attr("missing", None) is None
    with pytest.raises(GraphEditError, match="no attribute 'missing'"):
        node.attr("missing")


def test_constants_carry_their_type(chain):
    graph, *_ = chain
    const = graph.add_constant(np.zeros((2, 3), dtype=np.int32))
    assert const.type == tensor_type(DType.INT32, [2, 3])
    assert const.is_constant and not const.is_graph_input
