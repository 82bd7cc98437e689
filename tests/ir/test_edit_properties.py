"""Property: any sequence of edits through the API keeps verify() true, and a refused edit
(GraphEditError) leaves the graph exactly as it was."""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sod2.errors import GraphEditError
from sod2.ir import DType, Graph, Model, format_graph, symbol, tensor_type, verify
from sod2.passes import PassManager

FLOAT = tensor_type(DType.FLOAT32, [symbol("N")])
OPS = ("Relu", "Add", "Concat", "Neg", "Sum")


def visible(graph: Graph) -> list:
    return [t for scope in graph.scopes() for t in scope.tensors()]


class GraphEdits(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        graph = Graph("main")
        x = graph.add_input("x", FLOAT)
        graph.add_input("cond", tensor_type(DType.BOOL, []))
        graph.set_outputs([x])
        self.model = Model(graph, {"": 18})
        self.counter = 0

    # -- helpers -----------------------------------------------------------------------------

    def graphs(self) -> list[Graph]:
        return [self.model.graph, *self.model.graph.subgraphs()]

    def name(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def attempt(self, edit) -> None:
        before = format_graph(self.model.graph)
        try:
            edit()
        except GraphEditError:
            assert format_graph(self.model.graph) == before, "a refused edit changed the graph"

    def pick_graph(self, data) -> Graph:
        return data.draw(st.sampled_from(self.graphs()))

    def pick_tensors(self, data, graph: Graph, count: int) -> list:
        pool = visible(graph)
        return [data.draw(st.sampled_from(pool)) for _ in range(count)]

    # -- rules -------------------------------------------------------------------------------

    @rule(data=st.data())
    def add_input(self, data):
        graph = self.pick_graph(data)
        graph.add_input(self.name(), FLOAT)

    @rule(data=st.data())
    def add_constant(self, data):
        graph = self.pick_graph(data)
        graph.add_constant(np.zeros(3, dtype=np.float32), self.name())

    @rule(data=st.data(), op=st.sampled_from(OPS), arity=st.integers(1, 3))
    def add_node(self, data, op, arity):
        graph = self.pick_graph(data)
        inputs = self.pick_tensors(data, graph, arity)
        self.attempt(lambda: graph.add_node(op, inputs, outputs=data.draw(st.integers(1, 2))))

    @rule(data=st.data())
    def add_if(self, data):
        graph = self.pick_graph(data)
        branches = {}
        for key in ("then_branch", "else_branch"):
            branch = graph.new_subgraph(self.name())
            if data.draw(st.booleans()):
                branch.add_node("Relu", self.pick_tensors(data, branch, 1))
            branch.set_outputs(self.pick_tensors(data, branch, 1))
            branches[key] = branch
        cond = self.pick_tensors(data, graph, 1)
        self.attempt(lambda: graph.add_node("If", cond, attrs=branches))

    @rule(data=st.data())
    def set_outputs(self, data):
        graph = self.pick_graph(data)
        outputs = self.pick_tensors(data, graph, data.draw(st.integers(1, 3)))
        self.attempt(lambda: graph.set_outputs(outputs))

    @rule(data=st.data())
    def rewire_an_input(self, data):
        graph = self.pick_graph(data)
        nodes = [n for n in graph.nodes if n.inputs]
        if nodes:
            node = data.draw(st.sampled_from(nodes))
            slot = data.draw(st.integers(0, len(node.inputs) - 1))
            tensor = self.pick_tensors(data, graph, 1)[0]
            self.attempt(lambda: node.set_input(slot, tensor))

    @rule(data=st.data())
    def replace_all_uses(self, data):
        graph = self.pick_graph(data)
        old, new = self.pick_tensors(data, graph, 2)
        self.attempt(lambda: old.replace_all_uses_with(new))

    @rule(data=st.data())
    def erase_a_node(self, data):
        graph = self.pick_graph(data)
        if graph.nodes:
            node = data.draw(st.sampled_from(graph.nodes))
            self.attempt(lambda: graph.erase(node))

    @rule(data=st.data())
    def remove_an_input_or_constant(self, data):
        graph = self.pick_graph(data)
        candidates = (
            [*graph.inputs[2:], *graph.constants] if graph.outer is None else [*graph.constants]
        )
        if candidates:
            tensor = data.draw(st.sampled_from(candidates))
            remove = graph.remove_constant if tensor.is_constant else graph.remove_input
            self.attempt(lambda: remove(tensor))

    @rule(data=st.data())
    def rename_a_tensor(self, data):
        graph = self.pick_graph(data)
        tensor = self.pick_tensors(data, graph, 1)[0]
        name = data.draw(st.sampled_from(["x", "cond", self.name()]))
        self.attempt(lambda: tensor.rename(name))

    @rule(pipeline=st.sampled_from(["dce", "toposort", "fold-constants", "dce,toposort"]))
    def run_passes(self, pipeline):
        PassManager.parse(pipeline).run(self.model)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def verifies(self):
        verify(self.model)

    @invariant()
    def every_graph_has_a_topological_order(self):
        for graph in self.graphs():
            assert sorted(map(id, graph.topological_order())) == sorted(map(id, graph.nodes))


GraphEdits.TestCase.settings = settings(
    settings(),  # the active profile (tests/conftest.py), with fewer, longer examples by default
    max_examples=max(settings().max_examples // 2, 30),
    stateful_step_count=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_graph_edits_keep_the_ir_valid = GraphEdits.TestCase
