"""The reference interpreter drops every value once no later node reads it (a value read inside
a control-flow body lives until that node), and still gives every intermediate when asked."""

import numpy as np

from sod2.backend.reference import ReferenceInterpreter, _releases, run_reference
from sod2.ir import DType, Graph, Model, symbol, tensor_type

N = symbol("N")


def _branching_model() -> Model:
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 4]))
    cond = graph.add_input("c", tensor_type(DType.BOOL, []))
    a = graph.add_node("Relu", [x], outputs=["a"]).outputs[0]
    b = graph.add_node("Neg", [x], outputs=["b"]).outputs[0]
    branches = {}
    for key, op in (("then_branch", "Abs"), ("else_branch", "Identity")):
        branch = graph.new_subgraph(key)
        inner = branch.add_node(op, [a]).outputs[0] if op != "Identity" else a
        branch.set_outputs([inner])  # the else branch returns the outer value itself
        branches[key] = branch
    chosen = graph.add_node("If", [cond], attrs=branches, outputs=["chosen"]).outputs[0]
    y = graph.add_node("Add", [chosen, b], outputs=["y"]).outputs[0]
    graph.set_outputs([y, graph.add_node("Relu", [y], outputs=["z"]).outputs[0]])
    return Model(graph, {"": 18})


def test_values_are_released_after_their_last_reader_control_flow_bodies_included():
    model = _branching_model()
    graph = model.graph
    order = graph.topological_order()
    releases = dict(zip((n.op_type for n in order), _releases(graph, order), strict=True))
    names = {op: sorted(t.name for t in dead) for op, dead in releases.items()}
    assert "a" in names["If"]  # read only inside the branches: kept until the If ran
    assert "chosen" in names["Add"] and "b" in names["Add"]
    released = {name for dead in names.values() for name in dead}
    assert "y" not in released  # a graph output is never released


def test_runs_agree_with_and_without_keeping_intermediates():
    model = _branching_model()
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    for cond in (True, False):
        feeds = {"x": x, "c": np.array(cond)}
        lean = run_reference(model, feeds).outputs
        full = ReferenceInterpreter(model).run(feeds, intermediates=True)
        np.testing.assert_array_equal(lean["y"], np.abs(np.maximum(x, 0)) - x)
        np.testing.assert_array_equal(lean["z"], full.outputs["z"])
        assert {"a", "b", "chosen", "y"} <= set(full.intermediates)
