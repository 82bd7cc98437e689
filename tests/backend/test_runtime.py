"""The compiled runtime: zoo models against onnxruntime, the ablation switches, assumptions,
the arena, and the conformance cases of the ops it runs with its own kernels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import sod2
from sod2.backend import panel
from sod2.backend.runtime import AssumptionError, CompileOptions, compile_model
from sod2.errors import Sod2Error
from sod2.ir.dims import symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph
from sod2.ir.model import Model
from sod2.ir.types import Shape, TensorType
from sod2.ops.fused import is_fused
from sod2.testing.precision import closer_than_peer, float64_outputs, max_error
from sod2.zoo import get, names
from tests.zoo.runs import canonical_rows, session, sweep_runs

RTOL, ATOL = 1e-4, 1e-5

ABLATION = [
    CompileOptions(fusion=False, sep=False, dmp=False, mvc=False),
    CompileOptions(fusion=True, sep=False, dmp=False, mvc=False),
    CompileOptions(fusion=True, sep=True, dmp=True, mvc=False),
]


def assert_matches(name: str, got: dict, want: tuple, label: str, inputs: dict) -> None:
    """sod2's outputs equal onnxruntime's within rtol 1e-4, atol 1e-5; where a float output does
    not, it must be at least as close as onnxruntime's to the float64 answer (the disagreement
    is then onnxruntime's float32 rounding: see sod2.testing.precision)."""
    got_values = canonical_rows(name, tuple(got.values()))
    want_values = canonical_rows(name, want)
    for key, actual, expected in zip(got, got_values, want_values, strict=True):
        assert actual.dtype == expected.dtype, f"{label} {key}"
        if actual.dtype.kind != "f":
            np.testing.assert_array_equal(actual, expected, err_msg=f"{label} {key}")
        elif not np.allclose(actual, expected, rtol=RTOL, atol=ATOL):
            exact = float64_outputs(onnx.load(get(name).path()), inputs)[key]
            assert actual.shape == exact.shape, f"{label} {key}"
            assert closer_than_peer(actual, expected, exact), (
                f"{label} {key}: differs from onnxruntime by "
                f"{max_error(actual, expected.astype(np.float64))} and is farther from the float64 "
                f"answer ({max_error(actual, exact)}) than onnxruntime ({max_error(expected, exact)})"
            )


@pytest.fixture(scope="module")
def compiled():
    cache: dict[str, sod2.backend.runtime.CompiledModel] = {}

    def get_compiled(name: str):
        if name not in cache:
            cache[name] = compile_model(get(name).path())
        return cache[name]

    return get_compiled


@pytest.mark.parametrize("name", names())
def test_zoo_model_matches_onnxruntime_over_its_sweep(name, compiled):
    model = compiled(name)
    for point, inputs, expected in sweep_runs(name):
        got = model.run(inputs)
        assert_matches(name, got, expected, point.label(), inputs)
        for value in got.values():
            assert not np.may_share_memory(value, model.arena)


@pytest.mark.parametrize("name", names())
def test_a_binding_run_again_on_other_values_computes_them(name, compiled):
    """A second run of a binding reuses the kernel calls checked at the first (`_Bound`): over
    other values of the same shapes (each input's values shuffled), it still gives
    onnxruntime's outputs."""
    model = compiled(name)
    point, inputs, _ = sweep_runs(name)[0]
    model.run(inputs)
    rng = np.random.default_rng(5)
    shuffled = {k: rng.permutation(v.reshape(-1)).reshape(v.shape) for k, v in inputs.items()}
    expected = tuple(session(name).run(None, shuffled))
    got = model.run(shuffled)
    assert_matches(name, got, expected, f"{point.label()} shuffled", shuffled)
    assert any(frame.bound for frame in model._frames.values())


@pytest.mark.parametrize("options", ABLATION, ids=["none", "fusion", "fusion+sep+dmp"])
@pytest.mark.parametrize("name", ["skipnet", "codebert", "yolov6"])
def test_every_ablation_setting_is_correct(name, options):
    model = compile_model(get(name).path(), options)
    for point, inputs, expected in sweep_runs(name)[:2]:
        assert_matches(name, model.run(inputs), expected, point.label(), inputs)


def _broadcast_model() -> Model:
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N")])))
    y = graph.add_input("y", TensorType(DType.FLOAT32, Shape([symbol("M")])))
    graph.set_outputs([graph.add_node("Add", [x, y]).outputs[0]])
    return Model(graph, opset_imports={"": 21})


def test_a_violated_assumption_is_an_error_naming_it():
    model = compile_model(_broadcast_model())
    ones = np.ones(3, np.float32)
    np.testing.assert_array_equal(model.run({"x": ones, "y": ones})["add_out"], 2 * ones)
    np.testing.assert_array_equal(model.run({"x": ones, "y": ones[:1]})["add_out"], 2 * ones)
    with pytest.raises(AssumptionError, match=r"N.*M|M.*N"):
        model.run({"x": ones, "y": np.ones(4, np.float32)})


def test_the_arena_is_reused_and_grows_when_a_binding_needs_more():
    name = "codebert"
    model = compile_model(get(name).path())
    runs = sweep_runs(name)
    sizes = sorted(runs, key=lambda r: model.arena_bytes(r[1]))
    small, large = sizes[0], sizes[-1]
    model.run(small[1])
    arena = model.arena
    model.run(small[1])
    assert model.arena is arena
    model.run(large[1])
    assert model.arena.nbytes >= model.arena_bytes(large[1])
    assert_matches(name, model.run(small[1]), small[2], "after growing", small[1])


def test_compile_accepts_keyword_settings_and_describes_itself():
    model = sod2.compile(get("sam_prompt_encoder").path(), fusion=False)
    assert model.groups == 0
    assert "steps" in model.describe()
    with pytest.raises(sod2.Sod2Error, match="not both"):
        sod2.compile(get("sam_prompt_encoder").path(), CompileOptions(), fusion=False)


def test_bad_input_is_an_error_naming_the_input():
    model = compile_model(_broadcast_model())
    with pytest.raises(sod2.Sod2Error, match="'x'"):
        model.run({"x": np.ones((2, 2), np.float32), "y": np.ones(2, np.float32)})


def _shape_arithmetic_model() -> Model:
    """x [N, M] reshaped to [N, 2, M / 2] through Shape, Gather, Div, Unsqueeze and Concat over
    its shape, M / 2 * 3 as an output of its own, and back to [N, M] through [N, -1]."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), symbol("M")])))

    def const(name: str, value: object) -> object:
        return graph.add_constant(np.array(value, dtype=np.int64), name)

    shape = graph.add_node("Shape", [x], outputs=["shape"]).outputs[0]
    n = graph.add_node("Gather", [shape, const("zero", 0)], outputs=["n"]).outputs[0]
    m = graph.add_node("Gather", [shape, const("one", 1)], outputs=["m"]).outputs[0]
    half = graph.add_node("Div", [m, const("two", 2)], outputs=["half"]).outputs[0]
    axes = const("axes", [0])
    parts = [
        graph.add_node("Unsqueeze", [v, axes], outputs=[f"{v.name}_1d"]).outputs[0]
        for v in (n, half)
    ]
    target = graph.add_node(
        "Concat", [parts[0], const("pair", [2]), parts[1]], outputs=["target"], attrs={"axis": 0}
    ).outputs[0]
    y = graph.add_node("Reshape", [x, target], outputs=["y"]).outputs[0]
    thrice = graph.add_node("Mul", [half, const("three", 3)], outputs=["thrice"]).outputs[0]
    rows = graph.add_node(  # a negative constant among the proved elements
        "Concat", [parts[0], const("rest", [-1])], outputs=["rows"], attrs={"axis": 0}
    ).outputs[0]
    z = graph.add_node("Reshape", [y, rows], outputs=["z"]).outputs[0]
    graph.set_outputs([y, thrice, z])
    return Model(graph, opset_imports={"": 21})


def test_shape_arithmetic_is_evaluated_once_per_binding_and_never_run():
    """The steps whose outputs the binding alone fixes (RDP's value facts) are not run: their
    values are evaluated once per binding, read-only, and the results are right at every
    binding; a graph output is still computed by its step (the caller owns it)."""
    model = compile_model(_shape_arithmetic_model())
    folded = {step.node.op_type for step in model._known_steps}
    assert {"Shape", "Gather", "Div", "Concat"} <= folded
    assert all("thrice" not in [t.name for t in step.outputs] for step in model._known_steps)
    for n, m in ((3, 8), (5, 2), (3, 8)):
        x = np.arange(n * m, dtype=np.float32).reshape(n, m)
        got = model.run({"x": x})
        np.testing.assert_array_equal(got["y"], x.reshape(n, 2, m // 2))
        np.testing.assert_array_equal(got["thrice"], np.int64(m // 2 * 3))
        frame = model._frames[tuple({"N": n, "M": m}[name] for name in model._symbols)]
        values = {t.name: v for t, v in frame.known.items()}
        np.testing.assert_array_equal(got["z"], x)
        np.testing.assert_array_equal(values["target"], [n, 2, m // 2])
        np.testing.assert_array_equal(values["rows"], [n, -1])
        assert not any(v.flags.writeable for v in frame.known.values())
        ran = {step for step, _ in frame.program}
        assert not ran & model._known_steps
        assert len(ran) == len(model.steps) - len(model._known_steps)


def _views_model() -> Model:
    """x [N, M] (a graph input) reshaped to [N * M], then unsqueezed to [1, N * M] (neither
    planned: both views of x), Relu of the first, and Relu(x) reshaped to [N * M] as an output
    of its own (the Relu's result lives in the arena)."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), symbol("M")])))
    flat = graph.add_constant(np.array([-1], dtype=np.int64), "flat")
    axes = graph.add_constant(np.array([0], dtype=np.int64), "axes")
    y = graph.add_node("Reshape", [x, flat], outputs=["y"]).outputs[0]
    row = graph.add_node("Unsqueeze", [y, axes], outputs=["row"]).outputs[0]
    relu = graph.add_node("Relu", [y], outputs=["relu"]).outputs[0]
    inner = graph.add_node("Relu", [x], outputs=["inner"]).outputs[0]
    out = graph.add_node("Neg", [inner], outputs=["neg"]).outputs[0]
    z = graph.add_node("Reshape", [out, flat], outputs=["z"]).outputs[0]
    graph.set_outputs([row, relu, z])
    return Model(graph, opset_imports={"": 21})


def test_views_of_graph_inputs_are_the_inputs_reshaped_without_their_kernels():
    """A view op whose output the plan does not place reads the input under its new shape,
    without the catalogue kernel, where the input is not the arena's; one of an arena tensor
    is copied out, so that the next run cannot overwrite an output handed out."""
    model = compile_model(_views_model(), CompileOptions(fusion=False))
    rng = np.random.default_rng(0)

    def refuse(*args: object) -> object:
        raise AssertionError("a view of a graph input ran its catalogue kernel")

    for step in model.steps:
        if type(step).__name__ == "_ViewStep" and step.inputs[0].name in ("x", "y"):
            step.kernel = refuse
    earlier = []
    for n, m in ((3, 4), (2, 5), (3, 4)):
        x = rng.standard_normal((n, m)).astype(np.float32)
        got = model.run({"x": x})
        np.testing.assert_array_equal(got["row"], x.reshape(1, -1))
        np.testing.assert_array_equal(got["relu"], np.maximum(x.reshape(-1), 0))
        np.testing.assert_array_equal(got["z"], -np.maximum(x, 0).reshape(-1))
        earlier.append((got["z"], -np.maximum(x, 0).reshape(-1)))
    for z, expected in earlier:
        np.testing.assert_array_equal(z, expected)  # not overwritten by a later run
        assert not np.shares_memory(z, model.arena)


def _positions_model() -> Model:
    """x [N, M] plus its column positions: Range(0, M) from x's shape, cast to float and
    halved (steps that read only shape values and constants); the halved positions are an
    output of their own too, through an Identity; and a RandomUniformLike of the positions
    (random: never kept), times zero, added in."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), symbol("M")])))

    def const(name: str, value: object, dtype: object = np.int64) -> object:
        return graph.add_constant(np.array(value, dtype=dtype), name)

    shape = graph.add_node("Shape", [x], outputs=["shape"]).outputs[0]
    m = graph.add_node("Gather", [shape, const("one", 1)], outputs=["m"]).outputs[0]
    steps = graph.add_node("Range", [const("zero", 0), m, const("step", 1)], outputs=["r"])
    floats = graph.add_node("Cast", steps.outputs, outputs=["f"], attrs={"to": 1}).outputs[0]
    half = const("half", 0.5, np.float32)
    positions = graph.add_node("Mul", [floats, half], outputs=["positions"]).outputs[0]
    noise = graph.add_node("RandomUniformLike", [positions], outputs=["noise"]).outputs[0]
    none = graph.add_node("Mul", [noise, const("nil", 0.0, np.float32)], outputs=["none"])
    shifted = graph.add_node("Add", [x, positions], outputs=["shifted"]).outputs[0]
    y = graph.add_node("Add", [shifted, none.outputs[0]], outputs=["y"]).outputs[0]
    out = graph.add_node("Identity", [positions], outputs=["out"]).outputs[0]
    graph.set_outputs([y, out])
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("room", [1 << 20, 8])
def test_values_the_binding_fixes_are_computed_once_per_binding(room, monkeypatch):
    """Steps that read only shape values and constants (Range, Cast, Mul here) run once per
    binding, before its first run, and are left out of its program; a random op and a step
    writing a graph output are not; past FIXED_MAX_BYTES, the steps run at every call."""
    from sod2.backend import runtime

    monkeypatch.setattr(runtime, "FIXED_MAX_BYTES", room)
    model = compile_model(_positions_model(), CompileOptions(fusion=False))
    fixed = {step.node.op_type for step, _, _ in model._fixed}
    assert {"Range", "Cast", "Mul"} <= fixed
    assert not {"RandomUniformLike", "Identity", "Add"} & fixed
    for n, m in ((2, 5), (3, 7), (2, 5)):
        x = np.arange(n * m, dtype=np.float32).reshape(n, m)
        positions = np.arange(m, dtype=np.float32) * 0.5
        got = model.run({"x": x})
        np.testing.assert_array_equal(got["y"], x + positions)
        np.testing.assert_array_equal(got["out"], positions)
        frame = model._frames[tuple({"N": n, "M": m}[name] for name in model._symbols)]
        ran = {step.node.op_type for step, _ in frame.program}
        kept = {t.name for t in frame.known}
        if room > 8:
            assert not ran & {"Range", "Cast"} and {"r", "f", "positions"} <= kept
            assert not any(v.flags.writeable for v in frame.known.values())
        else:
            assert {"Range", "Cast"} <= ran and not {"r", "f", "positions"} & kept
        assert {"RandomUniformLike", "Identity"} <= ran


def test_a_fixed_step_that_fails_runs_with_the_steps_that_read_it(monkeypatch):
    """A step whose kernel fails while a binding is prepared is not folded: it runs in the
    program, and so do the steps that read its outputs; the results stay right."""
    model = compile_model(_positions_model(), CompileOptions(fusion=False))
    position = next(i for i, f in enumerate(model._fixed) if f[0].node.op_type == "Range")
    step, kernel, context = model._fixed[position]
    calls = []

    def failing_once(*args: object) -> object:  # (while the binding is prepared)
        calls.append(args)
        if len(calls) == 1:
            raise ValueError("not now")
        return kernel(*args)

    model._fixed[position] = step, failing_once, context
    step.kernel = failing_once
    x = np.ones((2, 3), np.float32)
    got = model.run({"x": x})
    np.testing.assert_array_equal(got["y"], x + np.arange(3, dtype=np.float32) * 0.5)
    frame = next(iter(model._frames.values()))
    assert {"Range", "Cast", "Mul"} <= {s.node.op_type for s, _ in frame.program}
    assert len(calls) == 2


def _waves_model() -> Model:
    """x [N, 2, M] plus sin and cos of M positions: Range(0, M) from x's shape, cast, scaled,
    Sin and Cos (one fused group reading only fixed values), each made a row, the rows
    concatenated."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), 2, symbol("M")])))

    def const(name: str, value: object, dtype: object = np.int64) -> object:
        return graph.add_constant(np.array(value, dtype=dtype), name)

    shape = graph.add_node("Shape", [x], outputs=["shape"]).outputs[0]
    m = graph.add_node("Gather", [shape, const("two", 2)], outputs=["m"]).outputs[0]
    steps = graph.add_node("Range", [const("zero", 0), m, const("step", 1)], outputs=["r"])
    floats = [TensorType(DType.FLOAT32, Shape(None))]  # (fusion reads the declared types)
    cast = graph.add_node("Cast", steps.outputs, attrs={"to": 1}, output_types=floats)
    rate = const("rate", 0.25, np.float32)
    angles = graph.add_node("Mul", [cast.outputs[0], rate], output_types=floats)
    rows = []
    for op in ("Sin", "Cos"):
        wave = graph.add_node(op, angles.outputs, output_types=floats).outputs[0]
        row = graph.add_node("Unsqueeze", [wave, const(f"{op}_axis", [0])], output_types=floats)
        rows.append(row.outputs[0])
    waves = graph.add_node("Concat", rows, attrs={"axis": 0}, output_types=floats)
    y = graph.add_node("Add", [x, waves.outputs[0]], outputs=["y"], output_types=floats)
    graph.set_outputs(y.outputs)
    return Model(graph, opset_imports={"": 21})


def test_fused_groups_over_fixed_values_are_computed_once_per_binding():
    """A fused group that reads only values the binding fixes is computed once per binding by
    the reference interpreter running its body, and left out of the binding's program, as
    are the steps reading only its outputs; the results match numpy's."""
    model = compile_model(_waves_model())
    fixed = [step for step, _, _ in model._fixed]
    group = next(step for step in fixed if is_fused(step.node))
    assert {n.op_type for n in group.node.attr("body").nodes} >= {"Sin", "Cos"}
    assert "Concat" in {step.node.op_type for step in fixed}
    for n, m in ((2, 5), (3, 8), (2, 5)):
        x = np.arange(n * 2 * m, dtype=np.float32).reshape(n, 2, m)
        angles = np.arange(m, dtype=np.float32) * np.float32(0.25)
        expected = x + np.stack([np.sin(angles), np.cos(angles)])
        np.testing.assert_allclose(model.run({"x": x})["y"], expected, rtol=1e-6, atol=1e-6)
        frame = model._frames[tuple({"N": n, "M": m}[name] for name in model._symbols)]
        assert group not in {step for step, _ in frame.program}
        assert len(frame.program) == 1  # (the Add alone)


def test_a_checked_runtime_runs_every_step():
    """With `checked` set (every result checked against its tensor's facts), no step is
    skipped: the folded values' own steps run and are checked too."""
    model = compile_model(_shape_arithmetic_model())
    model.checked = True
    x = np.ones((2, 6), np.float32)
    np.testing.assert_array_equal(model.run({"x": x})["y"], x.reshape(2, 2, 3))
    (frame,) = model._frames.values()
    assert not frame.known and len(frame.program) == len(model.steps)


def _branch_results_model() -> Model:
    """An If whose branches return values they compute (one twice), outer values and an input of
    the model; its results feed more nodes, so the top plan places them."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("N"), 4])))
    cond = graph.add_input("cond", TensorType(DType.BOOL, Shape([])))
    y = graph.add_node("Relu", [x], outputs=["y"]).outputs[0]
    then_branch = graph.new_subgraph("then")
    a = then_branch.add_node("Neg", [y], outputs=["a"]).outputs[0]
    b = then_branch.add_node("Abs", [a], outputs=["b"]).outputs[0]
    then_branch.set_outputs([a, a, b])
    else_branch = graph.new_subgraph("else")
    c = else_branch.add_node("Sigmoid", [x], outputs=["c"]).outputs[0]
    else_branch.set_outputs([c, x, y])
    node = graph.add_node(
        "If",
        [cond],
        outputs=["z1", "z2", "z3"],
        attrs={"then_branch": then_branch, "else_branch": else_branch},
    )
    z1, z2, z3 = node.outputs
    w = graph.add_node("Add", [z1, z2]).outputs[0]
    graph.set_outputs([graph.add_node("Mul", [w, z3]).outputs[0]])
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("fusion", [True, False])
def test_if_branches_write_their_results_into_the_if_outputs(fusion):
    from sod2.backend.reference import run_reference

    model = _branch_results_model()
    compiled = compile_model(model, CompileOptions(fusion=fusion))
    rng = np.random.default_rng(0)
    for n in (3, 7, 3):
        for flag in (True, False):
            feeds = {"x": rng.standard_normal((n, 4)).astype(np.float32), "cond": np.array(flag)}
            want = run_reference(model, feeds).outputs
            got = compiled.run(feeds)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=f"{n} {flag}")
    (frame,) = [f for k, f in compiled._frames.items() if k == (3,)]
    (node,) = [n for n in compiled.model.graph.nodes if n.op_type == "If"]
    then_branch = dict(node.subgraphs)["then_branch"]
    a, _, b = then_branch.outputs
    z1, z2, z3 = node.outputs
    assert frame.views[a] is frame.views[z1]  # computed in place of its If output
    assert frame.views[b] is frame.views[z3]
    assert z2 in frame.views and not np.shares_memory(frame.views[z2], frame.views[z1])


def _chain_model() -> Model:
    """Conv, Relu, Conv, Resize, Conv, Sigmoid over X[N, 3, H, W] (two chains once fused), and
    a three-stage chain inside the then-branch of an If."""
    graph = Graph()
    x_type = TensorType(DType.FLOAT32, Shape([symbol("N"), 3, symbol("H"), symbol("W")]))
    x = graph.add_input("x", x_type)
    cond = graph.add_input("cond", TensorType(DType.BOOL, Shape([])))
    rng = np.random.default_rng(1)
    floats = [TensorType(DType.FLOAT32, Shape(None))]

    def op(g: Graph, op_type: str, inputs: list, **attrs):
        return g.add_node(op_type, inputs, attrs=attrs, output_types=floats).outputs[0]

    def conv(g: Graph, value, channels: int, filters: int, stride: int, name: str):
        scale = 1 / np.sqrt(9 * channels)  # values stay near 1 through the layers
        w = g.add_constant(
            (rng.standard_normal((filters, channels, 3, 3)) * scale).astype(np.float32), name
        )
        b = g.add_constant(rng.standard_normal(filters).astype(np.float32), name + "_b")
        return op(g, "Conv", [value, w, b], pads=[1, 1, 1, 1], strides=[stride, stride])

    a = op(graph, "Relu", [conv(graph, x, 3, 8, 2, "w1")])
    b = conv(graph, a, 8, 8, 1, "w2")
    scales = graph.add_constant(np.array([1, 1, 2, 2], np.float32), "scales")
    c = op(graph, "Resize", [b, None, scales], mode="linear")
    d = op(graph, "Sigmoid", [conv(graph, c, 8, 4, 2, "w3")])
    then_branch = graph.new_subgraph("then")
    e = op(then_branch, "Relu", [conv(then_branch, d, 4, 4, 1, "w4")])
    f = op(then_branch, "Relu", [conv(then_branch, e, 4, 4, 1, "w5")])
    then_branch.set_outputs([conv(then_branch, f, 4, 4, 1, "w6")])
    else_branch = graph.new_subgraph("else")
    else_branch.set_outputs([op(else_branch, "Neg", [d])])
    node = graph.add_node(
        "If", [cond], outputs=["y"], attrs={"then_branch": then_branch, "else_branch": else_branch}
    )
    graph.set_outputs([op(graph, "Abs", [node.outputs[0]])])
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("band_bytes", [256, 1 << 21])
def test_chains_compute_in_bands_what_the_reference_does(band_bytes, monkeypatch):
    from sod2.backend import kernels
    from sod2.backend.reference import run_reference

    monkeypatch.setattr(kernels, "CHAIN_BAND_BYTES", band_bytes)
    monkeypatch.setattr(kernels, "CHAIN_MIN_ROWS", 1)
    calls = []
    banded = kernels.BandChain.__call__

    def spy(self, *args):
        calls.append(banded(self, *args))
        return calls[-1]

    monkeypatch.setattr(kernels.BandChain, "__call__", spy)
    model = _chain_model()
    chained = compile_model(model)
    kinds = [n.attr("kind") for n in chained.model.graph.nodes if n.op_type == "Fused"]
    assert kinds.count("chain") == 2
    unchained = compile_model(model, CompileOptions(chains=False))
    reference_only = compile_model(model, CompileOptions(mvc=False))
    rng = np.random.default_rng(0)
    for n, h, w in [(1, 9, 7), (2, 16, 12), (1, 33, 20)]:
        for flag in (True, False):
            feeds = {
                "x": rng.standard_normal((n, 3, h, w)).astype(np.float32),
                "cond": np.array(flag),
            }
            want = run_reference(model, feeds).outputs
            for compiled in (chained, unchained, reference_only):
                got = compiled.run(feeds)
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
        if band_bytes < 4096:  # bands thinner than the values: less memory, workspace included
            assert chained.arena_bytes(feeds) < unchained.arena_bytes(feeds)
    for frame in chained._frames.values():  # RDP resolves every shape after the chains
        nodes = chained.model.graph.nodes
        assert all(t in frame.shapes for n in nodes for t in n.outputs if t is not None)
    assert calls and all(calls)  # every chain ran in bands (none fell back to whole values)


def test_kernel_workspace_regions_can_be_turned_off():
    compiled = compile_model(_chain_model(), CompileOptions(workspace=None))
    feeds = {"x": np.ones((1, 3, 9, 7), np.float32), "cond": np.array(True)}
    compiled.run(feeds)
    assert all(frame.regions == [] for frame in compiled._frames.values())
    assert (
        compiled.arena_bytes(feeds)
        == compiled.plan.top.instantiate({"N": 1, "H": 9, "W": 7}).arena_bytes
    )


def _plans(plan):
    """Every graph plan of a memory plan's tree, the top one first."""
    yield plan
    for subplans in plan.subplans.values():
        for subplan in subplans.values():
            yield from _plans(subplan)


@pytest.mark.parametrize("cap", [256, 1 << 20])
def test_kernel_workspace_is_planned_with_the_tensors(cap):
    """Every step whose kernels take scratch, in the top graph and in an If's branch, has a
    workspace storage in the plan, capped at `cap`, and a region at least that large that no
    value alive at its step shares (nor, for a branch's step, any value alive at the If's
    step around it, whose free bytes a branch's region may take); the arena is the plan's;
    with room enough, no kernel spills into buffers of its own, and with a tiny cap, results
    are still the reference's."""
    from sod2.backend import kernels
    from sod2.backend.reference import run_reference
    from sod2.opt.workspace import is_workspace

    model = _chain_model()
    compiled = compile_model(model, CompileOptions(workspace=cap))
    rng = np.random.default_rng(2)
    plans = list(_plans(compiled.plan.top))
    owners = {p.order[s.start]: (p, s) for p in plans for s in p.storages if is_workspace(s)}
    around = {  # a branch's graph -> its If's plan and step there
        sub.graph: (p, p.order.index(node))
        for p in plans
        for node, subplans in p.subplans.items()
        for sub in subplans.values()
    }
    widened = []
    assert {n.op_type for n in owners} == {"Fused"}
    assert {p.graph.name for p, _ in owners.values()} == {"main", "then"}
    for n, h, w in [(1, 9, 7), (2, 33, 20)]:
        feeds = {"x": rng.standard_normal((n, 3, h, w)).astype(np.float32), "cond": np.array(True)}
        binding = {"N": n, "H": h, "W": w}
        want = run_reference(model, feeds).outputs
        kernels.release_scratch()
        got = compiled.run(feeds)
        spilled = kernels.release_scratch()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
        if cap > 1 << 16:
            assert spilled == 0
        assert compiled.arena_bytes(feeds) == compiled.plan.top.instantiate(binding).arena_bytes
        key = tuple(binding.get(name, -1) for name in compiled._symbols)
        frame = compiled._frames[key]
        regions = {compiled.steps[i].node: r for i, r in enumerate(frame.regions) if r}
        regions.update(frame.inner_regions)
        assert set(regions) == set(owners)
        for node, region in regions.items():
            plan, storage = owners[node]
            size = int(plan.instantiate(binding).sizes(binding)[plan.storages.index(storage)])
            assert 0 < size <= cap and region.floats.nbytes >= size
            alive = [(plan, storage.start)]
            if plan.graph in around:
                alive.append(around[plan.graph])
                top, step = around[plan.graph]  # the If is in the top graph: its plan is at 0
                (index,) = [
                    k for k, s in enumerate(top.storages) if s.scratch_of is top.order[step]
                ]
                lo = int(frame.concrete.offsets[index])
                hi = lo + int(frame.concrete.sizes(binding)[index])
                start = region.floats.ctypes.data - compiled.arena.ctypes.data
                widened.append(not lo <= start < hi)
            for owner, step in alive:
                for other in owner.storages:
                    if other is not storage and other.start <= step <= other.end:
                        for tensor in other.tensors:
                            view = frame.views.get(tensor)
                            assert view is None or not np.shares_memory(view, region.floats)
    # the branch's chain took a wider gap of the arena around the If, outside the branch's own
    # storage, at some binding
    assert any(widened)


def test_workspace_steps_report_each_region_and_what_it_held():
    """One row per step with a region: where it lies, what the kernels took of it (never more
    than it holds), what is alive beside it; asked before a run of the binding, an error."""
    model = _chain_model()
    compiled = compile_model(model, CompileOptions(workspace=1 << 20))
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((2, 3, 33, 20)).astype(np.float32), "cond": np.array(True)}
    with pytest.raises(Sod2Error, match="run these feeds first"):
        compiled.workspace_steps(feeds)
    compiled.run(feeds)
    (frame,) = compiled._frames.values()
    rows = compiled.workspace_steps(feeds)
    assert [r.step for r in rows] == [i for i, g in enumerate(frame.regions) if g is not None]
    arena = compiled.arena.nbytes
    for row in rows:
        assert row.op == compiled.steps[row.step].node.op_type
        assert 0 < row.planned_bytes <= row.region_bytes
        assert row.planned_bytes <= 1 << 20 and row.offset + row.region_bytes <= arena
        assert 0 <= row.used_bytes <= row.region_bytes
        assert 0 <= row.live_bytes <= row.live_top <= arena
    assert any(row.used_bytes > 0 for row in rows)


def _residual_chain_model() -> Model:
    """sigmoid(relu(shortcut(x) + residual(x))), a bottleneck: the residual is Conv 1x1, Relu,
    Conv 3x3, Relu, Conv 1x1, the shortcut a strided Conv 1x1 computed first; then a
    Transpose."""
    graph = Graph()
    x_type = TensorType(DType.FLOAT32, Shape([symbol("N"), 8, symbol("H"), symbol("W")]))
    x = graph.add_input("x", x_type)
    rng = np.random.default_rng(2)
    floats = [TensorType(DType.FLOAT32, Shape(None))]

    def conv(value, channels: int, filters: int, kernel: int, stride: int, name: str):
        scale = 1 / np.sqrt(kernel * kernel * channels)
        w = (rng.standard_normal((filters, channels, kernel, kernel)) * scale).astype(np.float32)
        pads = [kernel // 2] * 4
        attrs = {"pads": pads, "strides": [stride, stride]}
        inputs = [value, graph.add_constant(w, name)]
        return graph.add_node("Conv", inputs, attrs=attrs, output_types=floats).outputs[0]

    def relu(value):
        return graph.add_node("Relu", [value], output_types=floats).outputs[0]

    shortcut = conv(x, 8, 16, 1, 2, "ws")
    residual = relu(conv(relu(conv(x, 8, 4, 1, 1, "w1")), 4, 4, 3, 2, "w2"))
    residual = conv(residual, 4, 16, 1, 1, "w3")
    total = graph.add_node("Add", [shortcut, residual], output_types=floats).outputs[0]
    sigmoid = graph.add_node("Sigmoid", [relu(total)], output_types=floats).outputs[0]
    flipped = graph.add_node("Transpose", [sigmoid], attrs={"perm": [0, 1, 3, 2]})
    graph.set_outputs(flipped.outputs)  # (an intermediate may be written in place; an output not)
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("band_bytes", [64, 1 << 21])
def test_a_chain_writes_its_output_over_the_residual_it_adds(band_bytes, monkeypatch):
    from sod2.backend import kernels
    from sod2.backend.reference import run_reference

    monkeypatch.setattr(kernels, "CHAIN_BAND_BYTES", band_bytes)
    monkeypatch.setattr(kernels, "CHAIN_MIN_ROWS", 1)
    model = _residual_chain_model()
    compiled = compile_model(model)
    (chain,) = [n for n in compiled.model.graph.nodes if n.attr("kind", None) == "chain"]
    ops = [n.op_type for n in chain.attr("body").topological_order()]
    assert ops == ["Conv", "Relu", "Conv", "Relu", "Conv", "Add", "Relu", "Sigmoid"]
    (pair,) = [p for p in compiled.plan.top.liveness.inplace if p.node is chain]
    assert pair.input.producer.op_type == "Conv"  # the shortcut's storage holds the output
    rng = np.random.default_rng(0)
    for n, h, w in [(1, 9, 7), (2, 16, 12), (1, 40, 21)]:
        feeds = {"x": rng.standard_normal((n, 8, h, w)).astype(np.float32)}
        want = run_reference(model, feeds).outputs
        for options in (CompileOptions(), CompileOptions(mvc=False)):
            got = (compiled if options.mvc else compile_model(model, options)).run(feeds)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_a_chain_whose_epilogues_read_constants():
    """Per-channel constants in both stages' epilogues stay inputs of the chain (only a Resize's
    scales move into its body)."""
    from sod2.backend.reference import run_reference
    from tests.opt.test_fusion import conv_model

    model = conv_model(["conv", "scale", "relu", "conv", "scale"])
    for node in model.graph.nodes:
        node.outputs[0].type = TensorType(DType.FLOAT32, Shape(None))
    compiled = compile_model(model)
    kinds = [n.attr("kind", None) for n in compiled.model.graph.nodes]
    assert kinds == ["chain"]
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 7)).astype(np.float32)
    want = run_reference(model, {"X": x}).outputs
    got = compiled.run({"X": x})
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)


def _projection_model(shared: bool) -> Model:
    """Relu(x[R, 16] @ W[16, 24] + b) (a MatMul with an epilogue once fused); where `shared`, a
    second output x @ W reads W too."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([symbol("R"), 16])))
    rng = np.random.default_rng(2)
    w = graph.add_constant(rng.standard_normal((16, 24)).astype(np.float32), "W")
    b = graph.add_constant(rng.standard_normal(24).astype(np.float32), "b")
    floats = [TensorType(DType.FLOAT32, Shape(None))]

    def op(op_type: str, inputs: list):
        return graph.add_node(op_type, inputs, output_types=floats).outputs[0]

    outputs = [op("Relu", [op("Add", [op("MatMul", [x, w]), b])])]
    if shared:
        outputs.append(op("MatMul", [x, w]))
    graph.set_outputs(outputs)
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("fusion", [True, False])
@pytest.mark.parametrize("shared", [False, True])
def test_a_matmul_weight_read_by_one_kernel_is_held_by_columns(fusion, shared, monkeypatch):
    """The weights of the skinny product are laid out once, in place of the constant, where one
    kernel reads them; a weight two nodes read keeps its layout. Results are the reference's at
    row counts inside and outside the skinny range."""
    from sod2.backend import kernels
    from sod2.backend.reference import run_reference

    monkeypatch.setattr(kernels, "SKINNY_MIN_WEIGHTS", 1)
    model = _projection_model(shared)
    want_w = model.graph.tensor("W").const_value.copy()
    compiled = compile_model(model, CompileOptions(fusion=fusion))
    (w,) = [t for t in compiled.model.graph.constants if t.name == "W"]
    assert w.const_value.flags.f_contiguous != shared
    np.testing.assert_array_equal(w.const_value, want_w)
    rng = np.random.default_rng(3)
    for rows in (1, 3, 8, 40, 5):
        feeds = {"x": rng.standard_normal((rows, 16)).astype(np.float32)}
        want = run_reference(model, feeds).outputs
        got = compiled.run(feeds)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)


def _gated_residual_model() -> Model:
    """Two gated bottleneck blocks, as in SkipNet: `If(c1)` runs relu(h + residual(h)) or
    passes h through (Identity), `If(c2)` runs relu(shortcut(g) + residual(g)), strided, or the
    shortcut alone; a Transpose reads the result (so the If outputs are planned)."""
    graph = Graph()
    x_type = TensorType(DType.FLOAT32, Shape([1, 8, symbol("H"), symbol("W")]))
    x = graph.add_input("x", x_type)
    c1 = graph.add_input("c1", TensorType(DType.BOOL, Shape([])))
    c2 = graph.add_input("c2", TensorType(DType.BOOL, Shape([])))
    rng = np.random.default_rng(3)
    floats = [TensorType(DType.FLOAT32, Shape(None))]

    def op(g: Graph, op_type: str, inputs: list, **attrs):
        return g.add_node(op_type, inputs, attrs=attrs, output_types=floats).outputs[0]

    def conv(g: Graph, value, channels: int, filters: int, kernel: int, stride: int):
        scale = 1 / np.sqrt(kernel * kernel * channels)
        w = (rng.standard_normal((filters, channels, kernel, kernel)) * scale).astype(np.float32)
        pads = [kernel // 2] * 4
        inputs = [value, g.add_constant(w)]
        return op(g, "Conv", inputs, pads=pads, strides=[stride, stride])

    def residual(g: Graph, value, stride: int, filters: int):
        inner = op(g, "Relu", [conv(g, value, 8, 4, 1, 1)])
        return conv(g, op(g, "Relu", [conv(g, inner, 4, 4, 3, stride)]), 4, filters, 1, 1)

    h = op(graph, "Relu", [conv(graph, x, 8, 8, 3, 1)])
    identity_block = graph.new_subgraph("then1")
    identity_block.set_outputs(
        [
            op(
                identity_block,
                "Relu",
                [op(identity_block, "Add", [h, residual(identity_block, h, 1, 8)])],
            )
        ]
    )
    skip = graph.new_subgraph("else1")
    skip.set_outputs([op(skip, "Identity", [h])])
    node = graph.add_node(
        "If", [c1], outputs=["g"], attrs={"then_branch": identity_block, "else_branch": skip}
    )
    g = node.outputs[0]
    projection = graph.new_subgraph("then2")
    shortcut = conv(projection, g, 8, 8, 1, 2)
    total = op(projection, "Add", [shortcut, residual(projection, g, 2, 8)])
    projection.set_outputs([op(projection, "Relu", [total])])
    shortcut_only = graph.new_subgraph("else2")
    shortcut_only.set_outputs([conv(shortcut_only, g, 8, 8, 1, 2)])
    graph.add_node(
        "If",
        [c2],
        outputs=["z"],
        attrs={"then_branch": projection, "else_branch": shortcut_only},
    )
    flipped = graph.add_node("Transpose", [graph.tensor("z")], attrs={"perm": [0, 1, 3, 2]})
    graph.set_outputs(flipped.outputs)
    return Model(graph, opset_imports={"": 21})


@pytest.mark.parametrize("band_bytes", [64, 1 << 21])
def test_gated_blocks_write_their_results_over_what_they_read(band_bytes, monkeypatch):
    """A gated identity block's If output takes the bytes of the block's input (its branches
    write over it: the chain block by block, the Identity trivially), and a projection block's
    shortcut is computed in the If's output, which its chain then overwrites. Either way, and
    with fast kernels off, the results are the reference's."""
    from sod2.backend import kernels
    from sod2.backend.reference import run_reference

    monkeypatch.setattr(kernels, "CHAIN_BAND_BYTES", band_bytes)
    monkeypatch.setattr(kernels, "CHAIN_MIN_ROWS", 1)
    model = _gated_residual_model()
    compiled = compile_model(model)
    top = compiled.plan.top
    first, second = [n for n in compiled.model.graph.nodes if n.op_type == "If"]
    (pair,) = [p for p in top.liveness.inplace if p.node is first]
    assert pair.input.name == first.subgraphs[1][1].outputs[0].producer.inputs[0].name  # h
    then2 = top.subplans[second]["then_branch"]
    result = dict(second.subgraphs)["then_branch"].outputs[0]
    held = then2.liveness.storage_of[result].tensors
    assert len(held) == 2 and held[0].producer.op_type == "Conv"  # the shortcut
    rng = np.random.default_rng(0)
    reference_only = compile_model(model, CompileOptions(mvc=False))
    for h, w in [(9, 7), (16, 12), (24, 5)]:
        for c1, c2 in [(True, True), (False, True), (True, False), (False, False)]:
            feeds = {
                "x": rng.standard_normal((1, 8, h, w)).astype(np.float32),
                "c1": np.array(c1),
                "c2": np.array(c2),
            }
            want = run_reference(model, feeds).outputs
            for runtime in (compiled, reference_only):
                got = runtime.run(feeds)
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
    frame = next(iter(compiled._frames.values()))
    shortcut = held[0]
    assert np.shares_memory(frame.views[shortcut], frame.views[second.outputs[0]])
    assert np.shares_memory(frame.views[first.outputs[0]], frame.views[pair.input])


def _dense_model() -> Model:
    """A dense block over X[1, 4, H, W]: three times, a Conv 3x3 of everything so far is
    concatenated to it (axis 1); a Sigmoid reads the last Concat."""
    graph = Graph()
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([1, 4, symbol("H"), symbol("W")])))
    rng = np.random.default_rng(4)
    floats = [TensorType(DType.FLOAT32, Shape(None))]
    total, channels = graph.add_node("Relu", [x], output_types=floats).outputs[0], 4
    for _ in range(3):
        w = graph.add_constant((rng.standard_normal((3, channels, 3, 3)) / 6).astype(np.float32))
        grown = graph.add_node("Conv", [total, w], attrs={"pads": [1] * 4}, output_types=floats)
        total = graph.add_node(
            "Concat", [total, grown.outputs[0]], attrs={"axis": 1}, output_types=floats
        ).outputs[0]
        channels += 3
    graph.set_outputs(graph.add_node("Sigmoid", [total], output_types=floats).outputs)
    return Model(graph, opset_imports={"": 21})


def test_a_dense_block_writes_each_feature_once_where_the_concats_read_it():
    from sod2.backend.reference import run_reference

    model = _dense_model()
    compiled = compile_model(model)
    reference_only = compile_model(model, CompileOptions(mvc=False))
    rng = np.random.default_rng(0)
    for h, w in [(5, 7), (12, 9), (5, 7)]:
        feeds = {"x": rng.standard_normal((1, 4, h, w)).astype(np.float32)}
        want = run_reference(model, feeds).outputs
        for runtime in (compiled, reference_only):
            got = runtime.run(feeds)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    concats = [n for n in compiled.model.graph.nodes if n.op_type == "Concat"]
    frame = compiled._frames[(12, 9)]
    last = frame.views[concats[-1].outputs[0]]
    for node in concats:
        for tensor in node.inputs:
            assert np.shares_memory(frame.views[tensor], last)  # computed in its place


@pytest.mark.skipif(panel.TILE is None, reason="this CPU has no panel products")
@pytest.mark.parametrize(("lowest", "packed"), [(1, True), (300, False)])
def test_weights_are_packed_only_where_some_product_has_few_rows(lowest, packed):
    """RDP's rows of a MatMul's operand (N * 2 here), at the lowest values of the symbol
    ranges, decide whether its constant B is packed into panels at compile time."""
    from sod2.backend.kernels import PANEL_MAX_ROWS

    graph = Graph("rows")
    n = symbol("N")
    x = graph.add_input("x", TensorType(DType.FLOAT32, Shape([n, 2, 64])))
    w = graph.add_constant(np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32))
    graph.set_outputs([graph.add_node("MatMul", [x, w]).outputs[0]])
    model = Model(graph, opset_imports={"": 21})
    compiled = compile_model(model, CompileOptions(ranges={"N": (lowest, 400)}))
    (step,) = [s for s in compiled.steps if s.node.op_type == "MatMul"]
    assert (step.fast.body._panels is not None) == packed
    assert lowest * 2 <= PANEL_MAX_ROWS or not packed
    feeds = {"x": np.random.default_rng(1).standard_normal((lowest, 2, 64)).astype(np.float32)}
    (got,) = compiled.run(feeds).values()
    np.testing.assert_allclose(got, feeds["x"] @ w.const_value, rtol=1e-4, atol=1e-4)


def test_profile_times_each_step_the_binding_runs():
    """`profile` returns one entry per step of the binding's program, in schedule order, with
    its op (a fused group's kind and body), kind, output shapes and a positive least time; the
    steps the binding folds are not among them."""
    model = compile_model(_waves_model())
    x = np.ones((3, 2, 7), np.float32)
    times = model.profile({"x": x}, repeat=2)
    frame = next(iter(model._frames.values()))
    assert [t.step for t in times] == [model.steps.index(s) for s, _ in frame.program]
    (add,) = times
    assert add.op == "Fused[elementwise: Add]" and add.kind == "fused"
    assert add.shapes == ((3, 2, 7),) and add.seconds > 0
