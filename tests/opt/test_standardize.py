"""Written-out normalizations become one `sod2::Standardize`: which patterns are rewritten, that
the value is kept, and that the compiled model runs it (with its epilogue) as onnxruntime does."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import sod2
from sod2.analysis.rdp import propagate
from sod2.backend.reference import run_reference
from sod2.backend.runtime import CompileOptions
from sod2.errors import Sod2Error
from sod2.ir import load, verify
from sod2.ir.dtypes import DType
from sod2.ir.onnx_import import from_onnx
from sod2.ir.types import TensorType
from sod2.ops.fused import is_fused
from sod2.ops.normalization import STANDARDIZE_OP
from sod2.opt.standardize import standardize
from sod2.passes import PassManager
from sod2.zoo import get

CHANNELS = 6


def written_out(
    axes: tuple[int, ...] = (1,),
    *,
    opset: int = 20,
    square: str = "Pow",
    epsilon_first: bool = False,
    exponent: float = 2.0,
    second_axes: tuple[int, ...] | None = None,
    keepdims: int = 1,
    epsilon_input: bool = False,
    expose: str | None = None,
    affine: bool = True,
) -> onnx.ModelProto:
    """A LayerNorm written out as exporters do (module docstring of `sod2.opt.standardize`) over
    `axes` of x [N, 6, H, 5], then (with `affine`) a per-channel scale and shift and a Gelu;
    the other arguments make variants the rewrite must or must not take. `expose` names an
    intermediate that is made a graph output too."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(exponent, np.float32), "two"),
        numpy_helper.from_array(rng.uniform(0.5, 2, (CHANNELS, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((CHANNELS, 1, 1)).astype(np.float32), "b"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CHANNELS, "H", 5])]
    if epsilon_input:
        inputs.append(helper.make_tensor_value_info("eps", TensorProto.FLOAT, []))
    else:
        inits.append(numpy_helper.from_array(np.array(1e-6, np.float32), "eps"))
    nodes = []

    def mean(source: str, target: str, reduced: tuple[int, ...]) -> None:
        if opset >= 18:
            inits.append(numpy_helper.from_array(np.array(reduced, np.int64), target + "_axes"))
            nodes.append(
                helper.make_node(
                    "ReduceMean", [source, target + "_axes"], [target], keepdims=keepdims
                )
            )
        else:
            nodes.append(
                helper.make_node(
                    "ReduceMean", [source], [target], axes=list(reduced), keepdims=keepdims
                )
            )

    mean("x", "u", axes)
    nodes.append(helper.make_node("Sub", ["x", "u"], ["d"]))
    if square == "Pow":
        nodes.append(helper.make_node("Pow", ["d", "two"], ["p"]))
    else:
        nodes.append(helper.make_node("Mul", ["d", "d"], ["p"]))
    mean("p", "v", axes if second_axes is None else second_axes)
    nodes.append(helper.make_node("Add", ["eps", "v"] if epsilon_first else ["v", "eps"], ["e"]))
    nodes.append(helper.make_node("Sqrt", ["e"], ["s"]))
    nodes.append(helper.make_node("Div", ["d", "s"], ["y"]))
    result = "y"
    if affine:
        nodes.append(helper.make_node("Mul", ["y", "w"], ["scaled"]))
        nodes.append(helper.make_node("Add", ["scaled", "b"], ["shifted"]))
        nodes.append(helper.make_node("Gelu" if opset >= 20 else "Relu", ["shifted"], ["z"]))
        result = "z"
    outputs = [helper.make_tensor_value_info(result, TensorProto.FLOAT, None)]
    if expose is not None:
        outputs.append(helper.make_tensor_value_info(expose, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "written_out", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)  # typed values, as exporters write them


def feeds(n: int = 2, h: int = 7) -> dict[str, np.ndarray]:
    x = np.random.default_rng(1).standard_normal((n, CHANNELS, h, 5)).astype(np.float32)
    return {"x": x * 3 + 1}


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"axes": (-3,)},
        {"axes": (2, 3)},
        {"axes": (-1,)},
        {"axes": (1, 2, 3)},
        {"square": "Mul"},
        {"epsilon_first": True},
        {"opset": 17},
        {"affine": False},
    ],
)
def test_a_written_out_normalization_becomes_one_node_and_keeps_its_value(variant):
    model = from_onnx(written_out(**variant))
    want = run_reference(model, feeds()).outputs
    assert standardize(model) == 1
    verify(model)
    ops = [n.qualified_op for n in model.graph.topological_order()]
    activation = "Gelu" if variant.get("opset", 20) >= 20 else "Relu"
    after = ["Mul", "Add", activation] if variant.get("affine", True) else []
    assert ops == ["sod2::Standardize", *after]
    node = model.graph.topological_order()[0]
    assert node.attr("epsilon") == pytest.approx(1e-6)
    assert model.opset("sod2") == 1
    got = run_reference(model, feeds()).outputs
    assert list(got) == list(want)  # the output keeps its name
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "variant",
    [
        {"exponent": 3.0},
        {"second_axes": (2,)},
        {"axes": (1, 3)},
        {"keepdims": 0, "affine": False},
        {"epsilon_input": True},
        {"expose": "d"},
        {"expose": "u"},
        {"expose": "s"},
    ],
)
def test_a_pattern_that_is_not_whole_is_left_alone(variant):
    model = from_onnx(written_out(**variant))
    before = [n.op_type for n in model.graph.topological_order()]
    assert standardize(model) == 0
    assert [n.op_type for n in model.graph.topological_order()] == before


def test_an_integer_input_is_left_alone():
    model = from_onnx(written_out())
    x = model.graph.inputs[0]
    x.type = TensorType(DType.INT64, x.shape)
    assert standardize(model) == 0


def test_the_pass_runs_from_a_pipeline():
    model = from_onnx(written_out())
    PassManager.parse("standardize").run(model)
    assert any(n.op_type == STANDARDIZE_OP for n in model.graph.nodes)


def test_standardize_leads_an_epilogue_and_the_compiled_model_matches_onnxruntime():
    proto = written_out()
    compiled = sod2.compile(from_onnx(proto), CompileOptions(cache=False))
    fused = [n for n in compiled.model.graph.nodes if is_fused(n)]
    assert [n.attr("kind") for n in fused] == ["epilogue"]
    body = [n.op_type for n in fused[0].attr("body").topological_order()]
    assert body == ["Standardize", "Mul", "Add", "Gelu"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for n, h in ((1, 3), (2, 7), (3, 90)):  # 90 x 5 positions: two blocks of columns
        x = feeds(n, h)
        (want,) = session.run(None, x)
        (got,) = compiled.run(x).values()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_without_fusion_the_written_out_ops_run_as_they_are():
    compiled = sod2.compile(from_onnx(written_out()), CompileOptions(fusion=False, cache=False))
    assert not any(n.op_type == STANDARDIZE_OP for n in compiled.model.graph.walk())


def test_the_op_names_axes_it_cannot_take():
    model = from_onnx(written_out(affine=False))
    standardize(model)
    node = model.graph.topological_order()[0]
    node.set_attr("axes", [1, 3])
    with pytest.raises(Sod2Error, match=r"Standardize.*axes \[1, 3\] must be distinct consecutive"):
        propagate(model)
    with pytest.raises(Sod2Error, match=r"axes \[1, 3\] must be distinct consecutive"):
        run_reference(model, feeds())


def test_sam_layer_norms_over_channels_are_rewritten():
    """The mask encoder of SAM's prompt encoder has two LayerNorm2d."""
    entry = get("sam_prompt_encoder")
    model, original = load(entry.path()), load(entry.path())
    assert standardize(model) == 2
    _, inputs = entry.sweep_inputs()[0]
    want = run_reference(original, inputs).outputs
    got = run_reference(model, inputs).outputs
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
