from sod2.passes import AnalysisManager, PassContext, PassManager, PreservedAnalyses

from .conftest import AddRelu, DoubleCount, NodeCount


def test_results_are_cached_per_graph(model):
    analyses = AnalysisManager()
    assert analyses.get(NodeCount, model.graph) == 2
    assert analyses.get(NodeCount, model.graph) == 2
    assert analyses.computed == ["node-count"]


def test_a_pass_that_preserves_nothing_invalidates_everything(model):
    context = PassContext()
    context.analyses.get(NodeCount, model.graph)
    PassManager([AddRelu()]).run(model, context)
    assert not context.analyses.cached(NodeCount, model.graph)
    assert context.analyses.get(NodeCount, model.graph) == 3


def test_preserved_analyses_survive_the_pass(model):
    context = PassContext()
    context.analyses.get(NodeCount, model.graph)
    PassManager([AddRelu(preserve_count=True)]).run(model, context)
    # The pass vouched for the (now stale) count, so the cache serves it: preservation is a promise.
    assert context.analyses.cached(NodeCount, model.graph)
    assert context.analyses.get(NodeCount, model.graph) == 2
    assert context.analyses.computed == ["node-count"]


def test_invalidation_reaches_analyses_computed_from_the_dropped_one(model):
    analyses = AnalysisManager()
    assert analyses.get(DoubleCount, model.graph) == 4
    analyses.invalidate(model.graph, PreservedAnalyses([DoubleCount]))
    assert not analyses.cached(NodeCount, model.graph)
    assert not analyses.cached(DoubleCount, model.graph)


def test_edits_outside_a_pass_never_serve_stale_results(model):
    analyses = AnalysisManager()
    assert analyses.get(NodeCount, model.graph) == 2
    model.graph.add_node("Relu", [model.graph.inputs[0]])
    assert analyses.get(NodeCount, model.graph) == 3


def test_preserved_all_keeps_everything(model):
    analyses = AnalysisManager()
    analyses.get(DoubleCount, model.graph)
    analyses.invalidate(model.graph, PreservedAnalyses.all())
    assert analyses.cached(NodeCount, model.graph) and analyses.cached(DoubleCount, model.graph)


def test_an_unchanged_pass_keeps_the_cache(model):
    context = PassContext()
    context.analyses.get(NodeCount, model.graph)
    PassManager.parse("toposort").run(model, context)
    assert context.analyses.cached(NodeCount, model.graph)
