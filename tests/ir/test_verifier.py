"""verify() must catch each kind of corruption; the editing API never produces them, so the tests
corrupt the internals directly, one invariant at a time."""

import numpy as np
import pytest

from sod2.errors import VerificationError
from sod2.ir import DType, Graph, Model, Shape, TensorType, Use, find_problems, verify


def problems(target) -> str:
    return "\n".join(find_problems(target))


def test_a_sound_graph_has_no_problems(chain, if_model):
    verify(chain[0])
    verify(if_model)


def test_missing_use_record(chain):
    graph, x, c, relu, neg = chain
    del x._uses[Use(relu, 0)]
    assert "does not record that use" in problems(graph)


def test_use_record_without_a_read(chain):
    graph, x, c, relu, neg = chain
    x._uses[Use(neg, 0)] = None
    assert "reads something else" in problems(graph)


def test_dangling_reference_to_a_removed_tensor(chain):
    graph, x, c, relu, neg = chain
    c.graph = None
    relu._inputs.append(c)
    assert "dangling" in problems(graph)


def test_tensor_defined_twice(chain):
    graph, x, c, relu, neg = chain
    neg._outputs.append(relu.outputs[0])
    assert "defined twice" in problems(graph)


def test_duplicate_name(chain):
    graph, x, c, relu, neg = chain
    relu.outputs[0]._name = "x"
    assert "not registered under its name" in problems(graph)


def test_out_of_scope_read(if_model):
    graph = if_model.graph
    inner = dict(graph.nodes[-1].subgraphs)["then_branch"]
    inner_tensor = inner.nodes[0].outputs[0]
    graph.nodes[0]._inputs[0] = inner_tensor
    assert "not in scope" in problems(if_model)


def test_cycle(chain):
    graph, x, c, relu, neg = chain
    graph._dag.add_edge(neg, relu, links=1)
    report = problems(graph)
    assert "dependency cycle" in report and "recorded 1 time(s), but the uses imply 0" in report


def test_missing_dependency_edge(chain):
    graph, x, c, relu, neg = chain
    graph._dag.remove_edge(relu, neg)
    assert "recorded 0 time(s), but the uses imply 1" in problems(graph)


def test_model_input_without_a_type():
    graph = Graph()
    x = graph.add_input("x", None)
    graph.set_outputs([x])
    with pytest.raises(VerificationError, match="model input 'x' has no type"):
        verify(graph)


def test_constant_whose_value_disagrees_with_its_type(chain):
    graph, x, c, *_ = chain
    c.type = TensorType(DType.INT64, Shape([4]))
    c.const_value = np.ones(3, dtype=np.float32)
    report = problems(graph)
    assert "value shape [3]" in report and "value dtype float32" in report


def test_node_output_holding_a_value(chain):
    graph, x, c, relu, neg = chain
    relu.outputs[0].const_value = np.zeros(1)
    assert "also holds a constant value" in problems(graph)


def test_domain_not_imported(chain):
    graph, x, *_ = chain
    graph.add_node("Foo", [x], domain="com.example")
    assert "domain 'com.example', which the model does not import" in problems(
        Model(graph, {"": 18})
    )


def test_error_lists_every_problem(chain):
    graph, x, c, relu, neg = chain
    del x._uses[Use(relu, 0)]
    relu.outputs[0]._name = "x"
    with pytest.raises(VerificationError) as error:
        verify(graph)
    assert len(error.value.problems) >= 2
