import numpy as np
import pytest

from sod2.ir import DType, Graph, Model, symbol, tensor_type

N = symbol("N")


def float_input(graph: Graph, name: str, dims=(None,)) -> "object":
    dims = [N, 4] if dims == (None,) else list(dims)
    return graph.add_input(name, tensor_type(DType.FLOAT32, dims))


@pytest.fixture
def chain():
    """x -> Relu -> Neg -> output, plus a constant c."""
    graph = Graph("main")
    x = float_input(graph, "x")
    c = graph.add_constant(np.ones(4, dtype=np.float32), "c")
    relu = graph.add_node("Relu", [x], name="relu")
    neg = graph.add_node("Neg", [relu.outputs[0]], name="neg")
    graph.set_outputs([neg.outputs[0]])
    return graph, x, c, relu, neg


@pytest.fixture
def if_model():
    """An If whose branches read the outer tensors x and y."""
    graph = Graph("main")
    x = float_input(graph, "x")
    cond = graph.add_input("cond", tensor_type(DType.BOOL, []))
    y = graph.add_node("Relu", [x], outputs=["y"], name="relu").outputs[0]
    then_branch = graph.new_subgraph("then")
    then_branch.set_outputs([then_branch.add_node("Neg", [y], outputs=["t"]).outputs[0]])
    else_branch = graph.new_subgraph("else")
    else_branch.set_outputs([x])
    node = graph.add_node(
        "If",
        [cond],
        outputs=["z"],
        attrs={"then_branch": then_branch, "else_branch": else_branch},
        name="if",
    )
    graph.set_outputs([node.outputs[0]])
    return Model(graph, {"": 18})
