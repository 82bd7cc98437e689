"""Test-wide settings.

Hypothesis: no per-example deadline (symbolic algebra and onnxruntime sessions vary in speed, and
a timing is not a property). Under CI (CI=true) examples are derandomized so a run is repeatable;
set HYPOTHESIS_PROFILE=thorough for a longer search.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from sod2.ir import DType, Graph, Model, symbol, tensor_type

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


# -- small graphs shared by the IR and transformation tests --------------------------------

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
