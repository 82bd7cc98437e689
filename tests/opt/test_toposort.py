from sod2.ir import verify
from sod2.passes import PassManager


def test_sorts_every_graph_and_is_stable(if_model):
    graph = if_model.graph
    relu, if_node = graph.nodes
    graph.reorder([if_node, relu])
    then_branch = dict(if_node.subgraphs)["then_branch"]
    late = then_branch.add_node("Abs", [graph.inputs[0]], name="late")
    early = then_branch.nodes[0]
    then_branch.reorder([late, early])
    report = PassManager.parse("toposort").run(if_model)
    assert report.changed
    assert graph.nodes == (relu, if_node)
    assert then_branch.nodes == (late, early)  # already a dependency order: left as it was
    verify(if_model)
    assert not PassManager.parse("toposort").run(if_model).changed
