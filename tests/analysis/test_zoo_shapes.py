"""RDP on every shipped zoo model: over the whole sweep, no inferred fact contradicts execution
(sod2's interpreter at every point, onnxruntime at the last), and every dim that does not depend
on an execution-determined extent is resolved."""

import pytest

from sod2.analysis.facts import SymbolOrigin
from sod2.analysis.rdp import propagate
from sod2.ir import load
from sod2.testing.shape_check import check_model_shapes
from sod2.zoo import REGISTRY


@pytest.mark.parametrize("name", list(REGISTRY))
def test_inferred_shapes_agree_with_execution_over_the_sweep(name):
    entry = REGISTRY[name]
    model = load(entry.path())
    for point in entry.sweep:
        check = check_model_shapes(model, entry.make_inputs(point.values(), seed=point.seed))
        assert check.wrong == [], point.label()
        assert check.unsupported == []
    last = entry.sweep[-1]
    feeds = entry.make_inputs(last.values(), seed=last.seed)
    assert check_model_shapes(model, feeds, executor="onnxruntime").wrong == []


@pytest.mark.parametrize("name", list(REGISTRY))
def test_dims_not_depending_on_execution_are_all_resolved(name):
    model = load(REGISTRY[name].path())
    result = propagate(model)
    execution = {
        s
        for s, i in result.symbols.items()
        if i.origin in (SymbolOrigin.EXECUTION, SymbolOrigin.BRANCH)
    }
    dims = [
        d
        for f in result.facts.values()
        if f.shape.dims
        for d in f.shape.dims
        if isinstance(d, int) or not d.free_symbols & execution
    ]
    unresolved = [d for d in dims if not result.is_resolved(d)]
    assert len(unresolved) <= 0.01 * len(dims), unresolved[:5]
    assert all(f.shape.dims is not None for f in result.facts.values())
