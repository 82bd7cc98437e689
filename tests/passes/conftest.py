from dataclasses import dataclass

import numpy as np
import pytest

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.passes import Analysis, Pass, PassResult


@pytest.fixture
def model():
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [symbol("N")]))
    relu = graph.add_node("Relu", [x], name="relu")
    graph.add_node("Neg", [x], name="unused")
    graph.add_constant(np.ones(2, dtype=np.float32), "c")
    graph.set_outputs([relu.outputs[0]])
    return Model(graph, {"": 18})


class NodeCount(Analysis[int]):
    name = "node-count"

    def run(self, graph, analyses):
        return len(graph)


class DoubleCount(Analysis[int]):
    """Depends on NodeCount, so invalidating NodeCount must drop it too."""

    name = "double-count"

    def run(self, graph, analyses):
        return 2 * analyses.get(NodeCount, graph)


@dataclass(frozen=True)
class AddRelu(Pass):
    """Test pass: append a Relu; preserves what it is told to."""

    name = "test-add-relu"
    preserve_count: bool = False

    def run(self, model, context):
        model.graph.add_node("Relu", [model.graph.inputs[0]])
        return PassResult.modified(preserved=(NodeCount,) if self.preserve_count else ())


@dataclass(frozen=True)
class LiesAboutChanges(Pass):
    """Test pass that edits the graph and claims it did not."""

    name = "test-liar"

    def run(self, model, context):
        model.graph.add_node("Relu", [model.graph.inputs[0]])
        return PassResult.unchanged()


@dataclass(frozen=True)
class BreaksTheIR(Pass):
    """Test pass that corrupts the use lists behind the API's back."""

    name = "test-breaker"

    def run(self, model, context):
        model.graph.inputs[0]._uses.clear()
        return PassResult.modified()
