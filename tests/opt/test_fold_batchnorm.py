"""BatchNorm folding: into the Conv before it, else into Mul and Add; outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from sod2.backend.reference import run_reference
from sod2.ir import load, verify
from sod2.ir.dims import symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph
from sod2.ir.model import Model
from sod2.ir.types import Shape, TensorType
from sod2.opt.fold_batchnorm import fold_batchnorm
from sod2.zoo import get


def _bn_model(after_conv: bool, training: int = 0) -> Model:
    rng = np.random.default_rng(0)
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), 3, 5, 5])))
    if after_conv:
        w = graph.add_constant(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
        x = graph.add_node("Conv", [x, w], attrs={"pads": [1, 1, 1, 1]}).outputs[0]
    params = [
        graph.add_constant(rng.uniform(0.5, 2, 3).astype(np.float32)),
        graph.add_constant(rng.standard_normal(3).astype(np.float32)),
        graph.add_constant(rng.standard_normal(3).astype(np.float32)),
        graph.add_constant(rng.uniform(0.5, 2, 3).astype(np.float32)),
    ]
    bn = graph.add_node(
        "BatchNormalization", [x, *params], attrs={"training_mode": training} if training else {}
    )
    graph.set_outputs([bn.outputs[0]])
    return Model(graph, opset_imports={"": 15})


@pytest.mark.parametrize("after_conv", [True, False])
def test_folding_keeps_the_output(after_conv):
    model = _bn_model(after_conv)
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)}
    want = run_reference(model, feeds).outputs
    assert fold_batchnorm(model) == 1
    verify(model)
    ops = [n.op_type for n in model.graph.topological_order()]
    assert "BatchNormalization" not in ops
    assert ops == (["Conv"] if after_conv else ["Mul", "Add"])
    got = run_reference(model, feeds).outputs
    assert list(got) == list(want)  # the output keeps its name
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)


def test_a_batchnorm_folded_into_mul_and_add_fuses_with_what_follows():
    """The Mul and Add are typed as the BatchNorm's output (as an imported model's are), so the
    code generator takes them: with the Relu after them they make one elementwise group."""
    from sod2.analysis.rdp import propagate
    from sod2.opt.fusion import fuse

    rng = np.random.default_rng(0)
    graph = Graph()
    typed = TensorType(DType.FLOAT32, Shape([symbol("N"), 3, 5, 5]))
    x = graph.add_input("x", typed)
    params = [graph.add_constant(rng.uniform(0.5, 2, 3).astype(np.float32)) for _ in range(4)]
    bn = graph.add_node("BatchNormalization", [x, *params], output_types=[typed])
    relu = graph.add_node("Relu", bn.outputs, output_types=[typed])
    graph.set_outputs(relu.outputs)
    model = Model(graph, opset_imports={"": 15})
    assert fold_batchnorm(model) == 1
    assert all(t.type == typed for n in graph.nodes for t in n.outputs)
    groups = fuse(model, propagate(model))
    assert [sorted(n.op_type for n in g.nodes) for g in groups] == [["Add", "Mul", "Relu"]]


def test_training_mode_is_left_alone():
    model = _bn_model(True, training=1)
    assert fold_batchnorm(model) == 0


@pytest.mark.parametrize("name", ["skipnet", "ranet"])
def test_zoo_models_fold_every_batchnorm(name):
    model = load(get(name).path())
    original = load(get(name).path())
    assert fold_batchnorm(model) > 0
    verify(model)
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.walk())
    _, feeds = get(name).sweep_inputs()[0]
    want = run_reference(original, feeds).outputs
    got = run_reference(model, feeds).outputs
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
