"""Generated loop nests against the reference kernels: each op and element type, random groups,
shapes and strides, broadcasting, in-place outputs, the hoisted sigmoid of the paper's Figure 4,
errors, and sharing compiled versions in memory and on disk."""

from __future__ import annotations

import ast
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.backend import codegen
from sod2.backend.codegen import CodegenError, compile_group, kernel_source, unsupported_reason
from sod2.backend.reference import run_reference
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph
from sod2.ir.model import Model
from sod2.ir.types import Shape, TensorType
from sod2.ops.patterns import BROADCAST_OPS, ELEMENTWISE_OPS

OPSET = 21
F32, F64, I64, BOOL = DType.FLOAT32, DType.FLOAT64, DType.INT64, DType.BOOL


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Generated modules and Numba's machine code go to a temporary folder, not the home dir."""
    # Numba keeps its machine code beside each generated module, so under this folder too
    monkeypatch.setenv("SOD2_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sod2-cache"))


def tensor_type(dtype: DType) -> TensorType:
    return TensorType(dtype, Shape(None))


def body_of(op: str, dtypes: list[DType | None], out: DType | None = None, **attrs) -> Graph:
    """A body of one `op` node; a None dtype is an omitted optional input."""
    graph = Graph("body")
    inputs = [
        None if d is None else graph.add_input(f"x{i}", tensor_type(d))
        for i, d in enumerate(dtypes)
    ]
    node = graph.add_node(
        op, inputs, attrs=attrs, output_types=[tensor_type(out or dtypes[0])], name=op.lower()
    )
    graph.set_outputs([node.outputs[0]])
    return graph


def reference(body: Graph, arrays: list[np.ndarray], opset: int = OPSET) -> list[np.ndarray]:
    model = Model(body, opset_imports={"": opset})
    feeds = {t.name: a for t, a in zip(body.inputs, arrays, strict=True)}
    return list(run_reference(model, feeds).outputs.values())


def run(body: Graph, arrays: list[np.ndarray], opset: int = OPSET) -> list[np.ndarray]:
    kernel = compile_group(body, opset)
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    outs = [np.empty(shape, np.dtype(t.type.dtype.numpy)) for t in body.outputs]
    kernel(arrays, outs)
    return outs


def check(body: Graph, arrays: list[np.ndarray], opset: int = OPSET) -> None:
    """The generated kernel's outputs equal the reference interpreter's (floats within 1e-5)."""
    got_all, want_all = run(body, arrays, opset), reference(body, arrays, opset)
    for tensor, got, want in zip(body.outputs, got_all, want_all, strict=True):
        assert got.dtype == want.dtype, tensor.name
        if got.dtype.kind == "f":
            np.testing.assert_allclose(
                got, want, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=tensor.name
            )
        else:
            np.testing.assert_array_equal(got, want, err_msg=tensor.name)


# -- each op against its reference kernel --------------------------------------------------------

RNG = np.random.default_rng(7)
_X = (RNG.standard_normal((3, 5)) * 2).astype(np.float64)
_X[0, :5] = [np.nan, 2.5, -2.5, 0.5, -np.inf]
SAMPLES = {
    "any": _X,
    "positive": np.abs(np.nan_to_num(_X, neginf=1.0)) + 0.5,
    "unit": np.tanh(np.nan_to_num(_X)) * 0.9,
    "above_one": np.abs(np.nan_to_num(_X, neginf=1.0)) + 1.5,
}
UNARY_FLOAT = {
    "Abs": "any", "Neg": "any", "Reciprocal": "positive", "Sqrt": "positive", "Exp": "any",
    "Log": "positive", "Ceil": "any", "Floor": "any", "Round": "any", "Sign": "any",
    "Sin": "any", "Cos": "any", "Tan": "unit", "Asin": "unit", "Acos": "unit", "Atan": "any",
    "Sinh": "any", "Cosh": "any", "Tanh": "any", "Asinh": "any", "Acosh": "above_one",
    "Atanh": "unit", "Erf": "any", "IsNaN": "any", "IsInf": "any", "Relu": "any",
    "LeakyRelu": "any", "Elu": "any", "Selu": "any", "Celu": "any", "Sigmoid": "any",
    "HardSigmoid": "any", "HardSwish": "any", "Softplus": "any", "Softsign": "any",
    "ThresholdedRelu": "any", "Gelu": "any", "Mish": "any", "Shrink": "any", "Identity": "any",
}  # fmt: skip
BOOL_RESULT = {"IsNaN", "IsInf", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
INTS = np.array([[-7, -2, 0, 3, 7], [5, -5, 1, -1, 2]], np.int64)
BOOLS = np.array([[True, False, True, False, True]])


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("op", sorted(UNARY_FLOAT))
def test_each_unary_op_matches_its_reference_kernel(op, dtype):
    out = BOOL if op in BOOL_RESULT else dtype
    x = SAMPLES[UNARY_FLOAT[op]].astype(dtype.numpy)
    check(body_of(op, [dtype], out), [x])


@pytest.mark.parametrize("op", ["Abs", "Neg", "Sign", "Relu", "Identity"])
def test_unary_ops_on_integers(op):
    check(body_of(op, [I64]), [INTS])


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("LeakyRelu", {"alpha": 0.3}),
        ("Elu", {"alpha": 0.5}),
        ("Celu", {"alpha": 2.0}),
        ("HardSigmoid", {"alpha": 0.4, "beta": 0.25}),
        ("ThresholdedRelu", {"alpha": 0.2}),
        ("Shrink", {"bias": 0.25, "lambd": 1.0}),
        ("Gelu", {"approximate": "tanh"}),
        ("IsInf", {"detect_positive": 0}),
        ("IsInf", {"detect_negative": 0}),
    ],
)
def test_attributes_of_activations(op, attrs):
    out = BOOL if op in BOOL_RESULT else F32
    check(body_of(op, [F32], out, **attrs), [SAMPLES["any"].astype(np.float32)])


def test_large_negative_gelu_keeps_its_relative_accuracy():
    x = np.array([-12.0, -8.0, -3.0, 0.0, 3.0], np.float32)
    got = run(body_of("Gelu", [F32]), [x])[0]
    np.testing.assert_allclose(got, reference(body_of("Gelu", [F32]), [x])[0], rtol=1e-5, atol=0)


ARITHMETIC = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("op", ARITHMETIC)
def test_each_binary_op_matches_under_broadcasting(op, dtype):
    a = SAMPLES["any"].astype(dtype.numpy)
    b = (np.abs(RNG.standard_normal((1, 5))) + 0.5).astype(dtype.numpy)
    check(body_of(op, [dtype, dtype]), [a, b])


@pytest.mark.parametrize("op", [op for op in ARITHMETIC if op != "Mean"])
def test_integer_arithmetic(op):
    divisor = np.array([[2], [-3]], np.int64)
    b = np.abs(divisor) if op == "Pow" else divisor
    check(body_of(op, [I64, I64]), [INTS, b])


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 6], np.int64)
    b = np.array([2, 2, -2, -2, 3], np.int64)
    assert run(body_of("Div", [I64, I64]), [a, b])[0].tolist() == [3, -3, -3, 3, 2]


def test_integer_division_by_zero_is_an_error_naming_the_group():
    kernel = compile_group(body_of("Div", [I64, I64]), OPSET, name="ratio")
    a = np.array([4, 5], np.int64)
    with pytest.raises(CodegenError, match=r"ratio.*division by zero"):
        kernel([a, np.array([1, 0], np.int64)], [np.empty(2, np.int64)])


def test_variadic_ops_take_any_number_of_inputs():
    x = SAMPLES["any"].astype(np.float32)
    for op in ("Sum", "Max", "Min", "Mean"):
        check(body_of(op, [F32]), [x])
        check(body_of(op, [F32] * 3), [x, x[:1] * 2, np.float32(0.5) - x[:, :1]])


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
@pytest.mark.parametrize("dtype", [F32, I64])
def test_comparisons_give_bool(op, dtype):
    a = np.array([[1, 2, 3]]).astype(dtype.numpy)
    b = np.array([[2], [2]]).astype(dtype.numpy)
    check(body_of(op, [dtype, dtype], BOOL), [a, b])


def test_equality_of_bools_and_nan_comparisons():
    check(body_of("Equal", [BOOL, BOOL], BOOL), [BOOLS, BOOLS.T])
    nan = np.array([np.nan, 1.0], np.float32)
    check(body_of("Less", [F32, F32], BOOL), [nan, np.float32([2.0, np.nan])])


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic_ops(op):
    check(body_of(op, [BOOL, BOOL], BOOL), [BOOLS, BOOLS.T])


def test_not():
    check(body_of("Not", [BOOL], BOOL), [BOOLS])


@pytest.mark.parametrize("dtype", [F32, I64, BOOL])
def test_where_picks_by_a_broadcast_condition(dtype):
    cond = np.array([[True], [False]])
    x, y = INTS.astype(dtype.numpy), (-INTS[:, ::-1]).astype(dtype.numpy)
    check(body_of("Where", [BOOL, dtype, dtype], dtype), [cond, x, y])


@pytest.mark.parametrize("dtype", [F32, I64])
def test_clip_with_bounds_present_or_omitted(dtype):
    x = (SAMPLES["any"] if dtype is F32 else INTS).astype(dtype.numpy)
    low, high = np.array(-1, dtype.numpy), np.array(2, dtype.numpy)
    check(body_of("Clip", [dtype, dtype, dtype]), [x, low, high])
    check(body_of("Clip", [dtype, None, dtype]), [x, high])
    check(body_of("Clip", [dtype, dtype]), [x, low])
    check(body_of("Clip", [dtype]), [x])


def test_clip_before_opset_11_reads_attributes():
    x = SAMPLES["any"].astype(np.float32)
    check(body_of("Clip", [F32], min=-0.5, max=1.0), [x], opset=6)


@pytest.mark.parametrize(
    ("source", "target", "values"),
    [
        (F32, DType.INT32, np.nan_to_num(_X, neginf=-3.0)),
        (F32, DType.UINT8, np.abs(np.nan_to_num(_X, neginf=1.0)) * 10),
        (F32, BOOL, _X),
        (F64, F32, _X),
        (I64, F32, INTS),
        (I64, DType.INT8, INTS * 40),
        (BOOL, F32, BOOLS),
        (BOOL, I64, BOOLS),
        (F32, F32, _X),
    ],
)
def test_cast_between_numbers_and_bool(source, target, values):
    x = values.astype(source.numpy)
    check(body_of("Cast", [source], target, to=int(target)), [x])


def test_every_pattern_op_is_generated_or_refused_with_a_reason():
    for op in sorted(ELEMENTWISE_OPS | BROADCAST_OPS):
        arity = 3 if op in ("Where", "Clip") else 2 if op in BROADCAST_OPS else 1
        data = BOOL if op in ("And", "Or", "Xor", "Not") else F32
        dtypes = [BOOL, F32, F32] if op == "Where" else [data] * arity
        out = BOOL if op in BOOL_RESULT else data
        body = body_of(op, dtypes, out)
        assert unsupported_reason(body.nodes[0], OPSET) is None, op
    for dtype in (I64, BOOL):
        for op in sorted(ELEMENTWISE_OPS | BROADCAST_OPS):
            node = body_of(op, [dtype] * (3 if op in ("Where", "Clip") else 1)).nodes[0]
            reason = unsupported_reason(node, OPSET)
            assert reason is None or (isinstance(reason, str) and op in reason), op


def test_refusals_say_why():
    def reason(op, dtypes, out=None, **attrs):
        return unsupported_reason(body_of(op, dtypes, out, **attrs).nodes[0], OPSET)

    assert reason("Cast", [F32], DType.STRING, to=int(DType.STRING)) == "Cast to string"
    assert reason("Exp", [I64]) == "Exp on int64"
    assert reason("Add", [F32, F64]) == "Add on mixed element types float32, float64"
    assert reason("Relu", [DType.FLOAT16]) == "Relu on float16"
    assert reason("Gelu", [F32], approximate="erf") == "Gelu approximate='erf'"
    assert reason("Transpose", [F32]) == "Transpose is not an elementwise or broadcast op"
    assert reason("And", [I64, I64], BOOL) == "And on int64"


def test_compiling_a_refused_node_names_it():
    with pytest.raises(CodegenError, match=r"grp.*'exp'.*Exp on int64"):
        compile_group(body_of("Exp", [I64]), OPSET, name="grp")


# -- loop nests: versions, hoisting, strides, aliasing ------------------------------------------


def figure_4() -> Graph:
    """The paper's Figure 4: Sigmoid(A[I,1,1]) + B[I,J,K]."""
    graph = Graph("figure4")
    a = graph.add_input("A", tensor_type(F32))
    b = graph.add_input("B", tensor_type(F32))
    sigmoid = graph.add_node("Sigmoid", [a], output_types=[a.type])
    add = graph.add_node("Add", [sigmoid.outputs[0], b], output_types=[a.type])
    graph.set_outputs([add.outputs[0]])
    return graph


def test_figure_4_hoists_the_sigmoid_out_of_the_inner_loop():
    body = figure_4()
    a = RNG.standard_normal((5, 1, 1)).astype(np.float32)
    b = RNG.standard_normal((5, 6, 7)).astype(np.float32)
    check(body, [a, b])
    layout = codegen.signature_of([a.shape, b.shape], b.shape, parallel_min=1 << 30)
    assert layout.extents == (5, 42) and layout.merged == ((5, 1), (5, 42))
    lines = kernel_source(body, OPSET, layout.signature).splitlines()
    outer = next(i for i, line in enumerate(lines) if "for i0 in range(e0)" in line)
    inner = next(i for i, line in enumerate(lines) if "for i1 in range(e1)" in line)
    sigmoid = next(i for i, line in enumerate(lines) if "# Sigmoid" in line)
    add = next(i for i, line in enumerate(lines) if "# Add" in line)
    assert outer < sigmoid < inner < add


def test_contiguous_operands_of_one_shape_give_one_flat_loop():
    kernel = compile_group(body_of("Add", [F32, F32]), OPSET)
    a = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    out = np.empty_like(a)
    kernel([a, a], [out])
    np.testing.assert_array_equal(out, a + a)
    assert kernel.versions() == ["rank 1 [full, full] serial"]


def test_each_broadcast_pattern_is_a_version_of_its_own():
    kernel = compile_group(body_of("Mul", [F32, F32]), OPSET)
    a = RNG.standard_normal((4, 6)).astype(np.float32)
    for b in (a, a[:1], a[:, :1], np.float32(3.0), a[:1, :1]):
        out = np.empty_like(a)
        kernel([a, b], [out])
        np.testing.assert_allclose(out, a * b, rtol=1e-6)
    assert kernel.versions() == [
        "rank 1 [full, full] serial",
        "rank 2 [full, (-, i)] serial",
        "rank 2 [full, (i, -)] serial",
        "rank 1 [full, scalar] serial",
    ]


def test_an_output_may_be_an_input_in_place():
    body = figure_4()
    a = RNG.standard_normal((4, 1, 1)).astype(np.float32)
    b = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    want = reference(body, [a, b])[0]
    compile_group(body, OPSET)([a, b], [b])
    np.testing.assert_allclose(b, want, rtol=1e-6, atol=1e-7)  # a sum may cancel to ~0


def test_an_input_that_is_the_output_is_read_through_it():
    # (LLVM vectorizes a loop only after checking that its arrays do not overlap; one array
    # under two names fails that check, so such calls get a version of their own)
    kernel = compile_group(body_of("Sigmoid", [F32]), OPSET)
    a = RNG.standard_normal((3, 40)).astype(np.float32)
    want = 1 / (1 + np.exp(-a.astype(np.float64)))
    kernel([a], [a])
    np.testing.assert_allclose(a, want, rtol=1e-6)
    assert kernel.versions() == ["rank 1 [full] serial in place (in0=out0)"]
    source = kernel_source(
        body_of("Sigmoid", [F32]), OPSET, codegen.Signature(((True,),), 1, False, (0,))
    )
    assert "x0 = out0[i0]" in source and "in0[" not in source


def test_an_input_overlapping_an_output_otherwise_is_copied_first():
    kernel = compile_group(body_of("Neg", [F64]), OPSET)
    buffer = np.arange(12, dtype=np.float64)
    a, out = buffer[:8], buffer[4:]
    want = -a.copy()
    kernel([a], [out])
    np.testing.assert_array_equal(buffer[4:], want)
    assert kernel.versions() == ["rank 1 [full] serial"]


def test_a_bound_call_computes_what_the_arrays_hold_when_it_is_made():
    body = figure_4()
    kernel = compile_group(body, OPSET)
    a = RNG.standard_normal((4, 1, 1)).astype(np.float32)
    b = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    out = np.empty_like(b)
    call = kernel.bind([a, b], [out])
    assert call is not None
    for _ in range(2):
        call()
        np.testing.assert_allclose(out, reference(body, [a, b])[0], rtol=1e-6, atol=1e-7)
        a[...] = RNG.standard_normal(a.shape)
        b[...] = RNG.standard_normal(b.shape)


def test_a_call_that_copies_an_input_cannot_be_bound():
    kernel = compile_group(body_of("Neg", [F32]), OPSET)
    strided = RNG.standard_normal((4, 6)).astype(np.float32)[:, ::2]
    out = np.empty(strided.shape, np.float32)
    assert kernel.bind([strided], [out]) is None
    buffer = np.arange(12, dtype=np.float32)
    assert kernel.bind([buffer[:8]], [buffer[4:]]) is None
    assert kernel.bind([buffer[4:]], [buffer[4:]]) is not None
    empty = np.empty((0, 3), np.float32)
    call = kernel.bind([empty], [empty.copy()])
    assert call is not None
    call()


def test_large_iteration_spaces_get_a_parallel_version():
    body = figure_4()
    kernel = compile_group(body, OPSET)
    kernel.parallel_min = 64
    a = RNG.standard_normal((16, 1, 1)).astype(np.float32)
    b = RNG.standard_normal((16, 3, 5)).astype(np.float32)
    out = np.empty_like(b)
    kernel([a, b], [out])
    np.testing.assert_allclose(out, reference(body, [a, b])[0], rtol=1e-5, atol=1e-6)
    assert kernel.versions() == ["rank 2 [(i, -), full] parallel"]


def test_integer_division_never_runs_in_parallel():
    kernel = compile_group(body_of("Div", [I64, I64]), OPSET)
    a = np.arange(1, 1 << 17, dtype=np.int64)
    out = np.empty_like(a)
    kernel([a, np.array(3, np.int64)], [out])
    np.testing.assert_array_equal(out, a // 3)
    assert kernel.versions() == ["rank 1 [full, scalar] serial"]


def test_strided_scalar_and_empty_inputs():
    body = body_of("Sub", [F32, F32])
    a = RNG.standard_normal((4, 6)).astype(np.float32)
    check(body, [a[:, ::2], np.array(1.5, np.float32)])
    check(body, [a.T, a[0, :4]])
    check(body, [np.zeros((0, 3), np.float32), np.ones(3, np.float32)])
    check(body, [np.array(2.0, np.float32), np.array(1.5, np.float32)])


def test_one_element_constants_in_the_body_are_inlined():
    graph = Graph("scaled")
    x = graph.add_input("x", tensor_type(F32))
    half = graph.add_constant(np.array(0.5, np.float32), "half")
    node = graph.add_node("Mul", [x, half], output_types=[x.type])
    graph.set_outputs([node.outputs[0]])
    check(graph, [SAMPLES["any"][0].astype(np.float32)])


def test_several_outputs_are_written_in_one_pass():
    graph = Graph("pair")
    x = graph.add_input("x", tensor_type(F32))
    y = graph.add_input("y", tensor_type(F32))
    total = graph.add_node("Add", [x, y], output_types=[x.type])
    positive = graph.add_node("Greater", [total.outputs[0], x], output_types=[tensor_type(BOOL)])
    graph.set_outputs([total.outputs[0], positive.outputs[0]])
    check(graph, [SAMPLES["any"].astype(np.float32), np.float32([[1], [-1], [0]])])


def test_shapes_that_do_not_broadcast_and_wrong_outputs_are_errors_naming_the_group():
    kernel = compile_group(body_of("Add", [F32, F32]), OPSET, name="grp")
    a, b = np.ones((2, 3), np.float32), np.ones((4,), np.float32)
    with pytest.raises(CodegenError, match=r"grp.*do not broadcast.*'x0' \[2, 3\].*'x1' \[4\]"):
        kernel([a, b], [np.empty((2, 3), np.float32)])
    with pytest.raises(CodegenError, match=r"grp.*output 'add_out'.*float32.*float64"):
        kernel([a, a], [np.empty((2, 3), np.float64)])
    with pytest.raises(CodegenError, match=r"grp.*output 'add_out' has shape \[3, 2\]"):
        kernel([a, a], [np.empty((3, 2), np.float32)])
    with pytest.raises(CodegenError, match=r"grp.*input 'x0' is float64"):
        kernel([a.astype(np.float64), a], [np.empty((2, 3), np.float32)])
    with pytest.raises(CodegenError, match=r"grp' takes 2 inputs"):
        kernel([a], [np.empty((2, 3), np.float32)])


# -- sharing compiled versions ------------------------------------------------------------------


def test_a_second_kernel_with_the_same_structure_reuses_the_compiled_version(monkeypatch):
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    first = compile_group(body_of("Tanh", [F32]), OPSET)
    first([a], [np.empty_like(a)])
    loads = []
    monkeypatch.setattr(codegen, "_load", lambda *args: loads.append(args))
    second = compile_group(body_of("Tanh", [F32]), OPSET, name="another")
    assert second.source_key == first.source_key
    out = np.empty_like(a)
    second([a], [out])
    assert loads == []
    np.testing.assert_allclose(out, np.tanh(a), rtol=1e-6)


def test_the_structure_key_ignores_names_but_not_attributes():
    plain = compile_group(body_of("LeakyRelu", [F32]), OPSET)
    renamed = body_of("LeakyRelu", [F32])
    renamed.inputs[0].rename("other")
    assert compile_group(renamed, OPSET).source_key == plain.source_key
    sloped = compile_group(body_of("LeakyRelu", [F32], alpha=0.2), OPSET)
    assert sloped.source_key != plain.source_key


def test_machine_code_is_loaded_from_the_disk_cache(tmp_path, monkeypatch):
    a = RNG.standard_normal(7).astype(np.float32)
    body = body_of("LeakyRelu", [F32], alpha=0.0625)  # compiled by no other test
    compile_group(body, OPSET, cache_dir=tmp_path)([a], [np.empty_like(a)])
    modules = sorted(tmp_path.glob("sod2_kernel_*.py"))
    assert len(modules) == 1
    # a new process: nothing compiled in memory, the module not imported yet
    monkeypatch.setattr(codegen, "_COMPILED", {})
    monkeypatch.delitem(sys.modules, modules[0].stem)
    kernel = compile_group(body, OPSET, cache_dir=tmp_path)
    out = np.empty_like(a)
    kernel([a], [out])
    np.testing.assert_allclose(out, np.where(a < 0, a * np.float32(0.0625), a))
    (function,) = codegen._COMPILED.values()
    assert sum(function.stats.cache_hits.values()) == 1
    assert sum(function.stats.cache_misses.values()) == 0


# -- random groups ------------------------------------------------------------------------------

UNARY_CHAIN = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Softplus", "Erf", "HardSwish"]
BINARY_CHAIN = ["Add", "Mul", "Sub", "Max", "Min", "Div"]


@st.composite
def groups(draw):
    """A random DAG of 1-6 float32 ops over 1-3 inputs of broadcastable shapes (rank 0-4, dims
    of 1 included, some inputs strided), with 1-2 outputs of the iteration shape."""
    rank = draw(st.integers(0, 4))
    full = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    count = draw(st.integers(1, 3))
    graph = Graph("random")
    values, shapes = [], []
    for position in range(count):
        keep = draw(st.lists(st.booleans(), min_size=rank, max_size=rank))
        drop = draw(st.integers(0, rank))
        shapes.append(tuple(d if k else 1 for d, k in zip(full, keep, strict=True))[drop:])
        values.append(graph.add_input(f"x{position}", tensor_type(F32)))
    value_shapes = dict(zip(values, shapes, strict=True))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(UNARY_CHAIN + BINARY_CHAIN))
        operands = [draw(st.sampled_from(values)) for _ in range(2 if op in BINARY_CHAIN else 1)]
        node = graph.add_node(op, operands, output_types=[tensor_type(F32)])
        value_shapes[node.outputs[0]] = np.broadcast_shapes(*(value_shapes[t] for t in operands))
        values.append(node.outputs[0])
    result = values[-1]
    for tensor in values[:-1]:  # every value of a fused body reaches an output
        if not tensor.users:
            add = graph.add_node("Add", [result, tensor], output_types=[tensor.type])
            value_shapes[add.outputs[0]] = np.broadcast_shapes(
                value_shapes[result], value_shapes[tensor]
            )
            result = add.outputs[0]
    shape = np.broadcast_shapes(*shapes)
    extra = [t for t in values[count:-1] if value_shapes[t] == shape and t is not result]
    outputs = [result, *draw(st.lists(st.sampled_from(extra), max_size=1))] if extra else [result]
    graph.set_outputs(outputs)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = []
    for s in shapes:
        array = rng.standard_normal(s).astype(np.float32)
        if array.ndim >= 2 and draw(st.booleans()):  # same values, Fortran strides
            array = np.asfortranarray(array)
        arrays.append(array)
    return graph, arrays


@settings(max_examples=25, deadline=None)
@given(groups())
def test_random_groups_match_the_reference(case):
    graph, arrays = case
    check(graph, arrays)


def test_groups_of_transcendental_functions_go_parallel_sooner():
    F32 = DType.FLOAT32
    cheap = compile_group(body_of("Add", [F32, F32]), OPSET)
    costly = compile_group(body_of("Erf", [F32]), OPSET)
    assert cheap.parallel_min == codegen.PARALLEL_MIN
    assert costly.parallel_min < cheap.parallel_min
    assert costly.parallel_min >= codegen.PARALLEL_MIN // 64
    x = RNG.standard_normal(costly.parallel_min).astype(np.float32)
    out = np.empty_like(x)
    costly([x], [out])
    np.testing.assert_allclose(out, reference(body_of("Erf", [F32]), [x])[0], rtol=1e-6)
    assert costly.versions() == ["rank 1 [full] parallel"]


# -- float32 transcendental functions --------------------------------------------------------

_ERF = np.vectorize(math.erf, otypes=[np.float64])
_ERFC = np.vectorize(math.erfc, otypes=[np.float64])
_GELU_C = math.sqrt(2 / math.pi)
FLOAT32_EXACT = {  # each op's value in float64 (forms without cancellation in the far tails)
    ("Exp", "none"): np.exp,
    ("Sigmoid", "none"): lambda x: 1 / (1 + np.exp(-x)),
    ("Tanh", "none"): np.tanh,
    ("Erf", "none"): _ERF,
    ("Gelu", "none"): lambda x: 0.5 * x * _ERFC(-x * math.sqrt(0.5)),
    ("Gelu", "tanh"): lambda x: x / (1 + np.exp(-2 * _GELU_C * (x + 0.044715 * x**3))),
}
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 0.3, 0.5, 0.55, 88.7, 88.73, -87.3, -87.4],
    np.float32,
)


def _check_float32(op: str, approximate: str, x: np.ndarray, rtol: float) -> None:
    """Within `rtol` of float64 where the value's magnitude is at least the op's floor (far-tail
    arguments amplify their own rounding: `rtol` is per test); NaN, inf and 0 exactly where
    float64 has them; values below the floor within the floor. The floor is float32's smallest
    normal, except for Gelu: e^-87.3 flushes to 0, and Gelu multiplies it by up to 6.5."""
    attrs = {"approximate": approximate} if op == "Gelu" else {}
    got = run(body_of(op, [F32], **attrs), [x])[0]
    with np.errstate(all="ignore"):
        want = FLOAT32_EXACT[op, approximate](x.astype(np.float64))
        rounded = want.astype(np.float32)
    floor = 1e-33 if op == "Gelu" else np.finfo(np.float32).tiny
    above = np.isfinite(rounded) & (np.abs(rounded) >= floor)
    np.testing.assert_allclose(got[above], want[above], rtol=rtol, atol=0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded))
    np.testing.assert_array_equal(got[np.isinf(rounded)], rounded[np.isinf(rounded)])
    below = ~above & np.isfinite(rounded)
    assert np.all(np.abs(got[below] - want[below]) <= floor)


@pytest.mark.parametrize(("op", "approximate"), list(FLOAT32_EXACT))
def test_float32_transcendentals_are_accurate_over_their_whole_range(op, approximate):
    x = np.concatenate(
        [
            np.linspace(-100, 100, 400_001, dtype=np.float32),
            np.linspace(-1, 1, 200_001, dtype=np.float32),
            SPECIALS,
        ]
    )
    # Gelu's tanh form reaches e^-89 at x = -10: its argument's rounding is amplified 80-fold
    _check_float32(op, approximate, x, rtol=2e-5 if approximate == "tanh" else 1e-6)


@pytest.mark.parametrize(("op", "approximate"), list(FLOAT32_EXACT))
@settings(max_examples=30)
@given(values=st.lists(st.floats(width=32), min_size=1, max_size=64))
def test_float32_transcendentals_on_any_floats(op, approximate, values):
    _check_float32(op, approximate, np.array(values, np.float32), rtol=2e-5)


@pytest.mark.parametrize("op", ["Exp", "Sigmoid", "Tanh", "Erf", "Gelu"])
def test_float32_transcendentals_call_no_libm_and_float64_ones_do(op):
    layout = codegen.signature_of([(8,)], (8,), parallel_min=codegen.PARALLEL_MIN)
    narrow = kernel_source(body_of(op, [F32]), OPSET, layout.signature)
    wide = kernel_source(body_of(op, [DType.FLOAT64]), OPSET, layout.signature)
    assert "math." not in narrow and "float32_from_bits" in narrow
    assert "math." in wide and "float32_from_bits" not in wide


@settings(max_examples=50)
@given(
    coefficients=st.lists(st.floats(-4, 4), min_size=1, max_size=12),
    v=st.floats(-1.5, 1.5),
)
def test_polynomials_are_generated_in_estrin_form_with_the_same_value(coefficients, v):
    source = codegen._polynomial("v", coefficients)
    value = eval(source, {"np": np}, {"v": np.float64(v)})  # float32 constants, float64 v
    want = np.polynomial.polynomial.polyval(v, np.float32(coefficients).astype(np.float64))
    assert value == pytest.approx(want, rel=1e-6, abs=1e-5)


def _chain(node: ast.AST) -> int:
    """The longest path of arithmetic operations in an expression."""
    if isinstance(node, ast.BinOp):
        return 1 + max(_chain(node.left), _chain(node.right))
    return 0


def test_estrin_form_has_a_short_chain():
    # Horner's form of degree 9 is 18 operations deep: each one waits for the one before
    source = codegen._polynomial("t", [float(c) for c in range(1, 11)])
    assert _chain(ast.parse(source, mode="eval").body) <= 8


def test_float32_bits_is_the_inverse_of_float32_from_bits():
    from numba import njit

    from sod2.backend.intrinsics import float32_bits, float32_from_bits

    @njit
    def round_trip(values):
        bits = np.empty(values.size, np.int32)
        back = np.empty_like(values)
        for i in range(values.size):
            bits[i] = float32_bits(values[i])
            back[i] = float32_from_bits(bits[i])
        return bits, back

    values = np.array([1.0, -2.5, np.inf, -np.inf, 1e-40, 0.0, -0.0, 3.4e38], np.float32)
    bits, back = round_trip(values)
    np.testing.assert_array_equal(bits, values.view(np.int32))
    np.testing.assert_array_equal(back.view(np.int32), values.view(np.int32))


def test_float32_from_bits_reinterprets_the_low_32_bits():
    from numba import njit

    from sod2.backend.intrinsics import float32_from_bits

    @njit
    def convert(bits):
        out = np.empty(bits.size, np.float32)
        for i in range(bits.size):
            out[i] = float32_from_bits(bits[i])
        return out

    values = np.array([1.0, -2.5, np.inf, 1e-40, 0.0], np.float32)
    np.testing.assert_array_equal(convert(values.view(np.int32)), values)
    np.testing.assert_array_equal(convert(values.view(np.int32).astype(np.int64)), values)
    narrow = np.array([-1, 0x7F80], np.int16)  # sign-extended, zero-extended
    want = np.array([-1, 0x7F80], np.int32).view(np.float32)
    np.testing.assert_array_equal(convert(narrow).view(np.int32), want.view(np.int32))


def test_prefetch_is_a_hint_that_changes_nothing():
    from numba import njit

    from sod2.backend.intrinsics import prefetch

    @njit
    def sum_with_prefetches(matrix):
        total = 0.0
        rows, cols = matrix.shape
        for i in range(rows):
            prefetch(matrix, i + 1, 0)  # past the last row too: a hint never faults
            for j in range(cols):
                prefetch(matrix, i, j + 16)
                total += matrix[i, j]
        return total

    matrix = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    assert sum_with_prefetches(matrix) == matrix.sum()
    assert sum_with_prefetches(matrix.T) == matrix.sum()  # any layout
    with pytest.raises(Exception, match="prefetch"):
        njit(lambda v: prefetch(v, 0, 0))(np.zeros(3))  # a matrix only


def _power_body(exponent: float | int, dtype: DType) -> Graph:
    """x ** c with c a one-element constant of the body (as fusion inlines it)."""
    graph = Graph("body")
    x = graph.add_input("x", tensor_type(dtype))
    c = graph.add_constant(np.array(exponent, np.dtype(dtype.numpy)), "c")
    graph.set_outputs([graph.add_node("Pow", [x, c], output_types=[tensor_type(dtype)]).outputs[0]])
    return graph


@pytest.mark.parametrize("dtype", [F32, DType.FLOAT64])
@settings(max_examples=40)
@given(data=st.data())
def test_squaring_by_a_constant_two_multiplies_and_rounds_as_pow_does(dtype, data):
    width = 32 if dtype is F32 else 64
    values = data.draw(st.lists(st.floats(width=width), min_size=1, max_size=64))
    x = np.concatenate([np.array(values), SPECIALS.astype(np.float64), [1e20, 3e38, 1e-23]])
    x = x.astype(np.dtype(dtype.numpy))
    body = _power_body(2, dtype)
    layout = codegen.signature_of([(8,)], (8,), parallel_min=codegen.PARALLEL_MIN)
    assert "**" not in kernel_source(body, OPSET, layout.signature)
    with np.errstate(all="ignore"):
        want = (x.astype(np.float64) ** 2.0).astype(x.dtype) if dtype is F32 else x**2.0
    np.testing.assert_array_equal(run(body, [x])[0], want)


@pytest.mark.parametrize("exponent", [3.0, 0.5, -2.0])
def test_other_constant_exponents_keep_pow(exponent):
    body = _power_body(exponent, F32)
    layout = codegen.signature_of([(8,)], (8,), parallel_min=codegen.PARALLEL_MIN)
    assert "**" in kernel_source(body, OPSET, layout.signature)
    check(body, [np.linspace(-3, 3, 101, dtype=np.float32)])
