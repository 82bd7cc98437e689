"""Differential tests of the sequence and optional kernels against onnxruntime.

Graph inputs here are tensors only, so a sequence input `Seq([...])` is built inside the model by
a SequenceConstruct node (SequenceEmpty when it has no elements) and an optional input `Opt(x)` by
an Optional node; the operator under test then reads them. Outputs that are sequences or
optionals come back from both runtimes as lists or None and are compared element by element.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sod2.backend.reference import run_reference
from sod2.errors import Sod2Error
from sod2.ir import load
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime

rng = np.random.default_rng(41)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(value):
    return np.array(value, dtype=np.int64)


@dataclass
class Seq:
    """A sequence input, built in the model from its elements."""

    items: list[np.ndarray]
    dtype: type = np.float32


@dataclass
class Opt:
    """An optional input: Optional(item), or the empty optional of `element` when item is None."""

    item: np.ndarray | Seq | None
    element: onnx.TypeProto = field(
        default_factory=lambda: helper.make_tensor_type_proto(TensorProto.FLOAT, None)
    )


class _Builder:
    """Turns case inputs into graph inputs, feeds and the nodes that build sequences/optionals."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.graph_inputs: list[onnx.ValueInfoProto] = []
        self.feeds: dict[str, np.ndarray] = {}

    def tensor(self, name: str, value: np.ndarray) -> str:
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        self.graph_inputs.append(helper.make_tensor_value_info(name, dtype, list(value.shape)))
        self.feeds[name] = value
        return name

    def value(self, name: str, value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, np.ndarray):
            return self.tensor(name, value)
        if isinstance(value, Seq):
            return self.sequence(name, value)
        return self.optional(name, value)

    def sequence(self, name: str, value: Seq) -> str:
        if not value.items:
            dtype = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
            self.nodes.append(helper.make_node("SequenceEmpty", [], [name], dtype=dtype))
            return name
        parts = [self.tensor(f"{name}_{i}", item) for i, item in enumerate(value.items)]
        self.nodes.append(helper.make_node("SequenceConstruct", parts, [name]))
        return name

    def optional(self, name: str, value: Opt) -> str:
        if value.item is None:
            node = helper.make_node("Optional", [], [name], type=value.element)
        else:
            node = helper.make_node("Optional", [self.value(f"{name}_v", value.item)], [name])
        self.nodes.append(node)
        return name


def sequence_model(op, inputs, attrs, opset, outputs):
    """A model running `op` on inputs that may be tensors, `Seq`s, `Opt`s or None (omitted)."""
    builder = _Builder()
    names = [builder.value(f"in{i}", v) for i, v in enumerate(inputs)]
    out_names = [f"out{i}" for i in range(outputs)]
    builder.nodes.append(helper.make_node(op, names, out_names, **attrs))
    graph_outputs = [helper.make_value_info(n, onnx.TypeProto()) for n in out_names]
    graph = helper.make_graph(builder.nodes, "case", builder.graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model), builder.feeds


def check_sequence_op(op, inputs, attrs, opset, outputs=1):
    """Why sod2 and onnxruntime disagree on one sequence or optional operator ("" if they agree)."""
    model, feeds = sequence_model(op, inputs, attrs, opset, outputs)
    expected = run_onnxruntime(model, feeds)
    actual = list(run_reference(load(model, check=False), feeds).outputs.values())
    return outputs_mismatch(expected, actual)


def body(nodes, inputs, outputs):
    """A SequenceMap body over float32 tensors of unknown shape (int64 for names ending _i)."""

    def info(name):
        elem = TensorProto.INT64 if name.endswith("_i") else TensorProto.FLOAT
        return helper.make_tensor_value_info(name, elem, None)

    return helper.make_graph(nodes, "body", [info(i) for i in inputs], [info(o) for o in outputs])


ADD_BODY = body([helper.make_node("Add", ["x", "y"], ["z"])], ["x", "y"], ["z"])
SHAPE_BODY = body(
    [
        helper.make_node("Shape", ["x"], ["shape_i"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
    ],
    ["x"],
    ["shape_i", "total"],
)

THREE = Seq([f32(2, 3), f32(1, 3), f32(4, 3)])
SAME = Seq([f32(2, 3), f32(2, 3), f32(2, 3)])
EMPTY = Seq([])

CASES = [
    ("SequenceEmpty", [], {}, 11, 1),
    ("SequenceEmpty", [], {"dtype": TensorProto.INT64}, 11, 1),
    ("SequenceConstruct", [f32(2), f32(3, 1)], {}, 11, 1),
    ("SequenceConstruct", [i64([1, 2])], {}, 11, 1),
    ("SequenceAt", [THREE, i64(1)], {}, 11, 1),
    ("SequenceAt", [THREE, i64(-3)], {}, 11, 1),
    ("SequenceAt", [THREE, np.array(-1, np.int32)], {}, 11, 1),
    ("SequenceInsert", [THREE, f32(5, 3)], {}, 11, 1),
    ("SequenceInsert", [THREE, f32(5, 3), i64(0)], {}, 11, 1),
    ("SequenceInsert", [THREE, f32(5, 3), i64(-1)], {}, 11, 1),
    ("SequenceInsert", [THREE, f32(5, 3), i64(3)], {}, 11, 1),
    ("SequenceInsert", [EMPTY, f32(2)], {}, 11, 1),
    ("SequenceErase", [THREE], {}, 11, 1),
    ("SequenceErase", [THREE, i64(0)], {}, 11, 1),
    ("SequenceErase", [THREE, i64(-2)], {}, 11, 1),
    ("SequenceLength", [THREE], {}, 11, 1),
    ("SequenceLength", [EMPTY], {}, 11, 1),
    ("ConcatFromSequence", [THREE], {"axis": 0}, 11, 1),
    ("ConcatFromSequence", [THREE], {"axis": -2}, 11, 1),
    ("ConcatFromSequence", [SAME], {"axis": 1, "new_axis": 1}, 11, 1),
    ("ConcatFromSequence", [SAME], {"axis": -1, "new_axis": 1}, 11, 1),
    ("ConcatFromSequence", [SAME], {"axis": 0, "new_axis": 1}, 11, 1),
    ("SplitToSequence", [f32(5, 2)], {}, 11, 1),
    ("SplitToSequence", [f32(5, 2)], {"axis": 1, "keepdims": 0}, 11, 1),
    ("SplitToSequence", [f32(7, 2), i64(3)], {}, 11, 1),
    ("SplitToSequence", [f32(2, 6), i64([1, 0, 5])], {"axis": -1}, 11, 1),
    ("SplitToSequence", [f32(4, 3), i64([4])], {"keepdims": 0}, 24, 1),
    (
        "SequenceMap",
        [THREE],
        {"body": body([helper.make_node("Neg", ["x"], ["y"])], ["x"], ["y"])},
        17,
        1,
    ),
    ("SequenceMap", [THREE, f32(1, 3)], {"body": ADD_BODY}, 17, 1),
    ("SequenceMap", [THREE, Seq([f32(2, 3), f32(1, 1), f32(3)])], {"body": ADD_BODY}, 17, 1),
    ("SequenceMap", [THREE], {"body": SHAPE_BODY}, 17, 2),
    ("SequenceMap", [EMPTY], {"body": SHAPE_BODY}, 17, 2),
    ("Optional", [f32(2, 3)], {}, 15, 1),
    ("Optional", [THREE], {}, 15, 1),
    ("Optional", [], {"type": helper.make_tensor_type_proto(TensorProto.FLOAT, None)}, 15, 1),
    ("OptionalHasElement", [Opt(f32(2))], {}, 15, 1),
    ("OptionalHasElement", [Opt(None)], {}, 15, 1),
    ("OptionalHasElement", [f32(3)], {}, 18, 1),
    ("OptionalHasElement", [], {}, 18, 1),
    ("OptionalGetElement", [Opt(f32(2, 2))], {}, 15, 1),
    ("OptionalGetElement", [Opt(THREE)], {}, 18, 1),
    ("OptionalGetElement", [f32(4)], {}, 18, 1),
]


def _describe(value):
    if isinstance(value, np.ndarray):
        return str(list(value.shape))
    if isinstance(value, Seq):
        return "seq" + "".join(str(list(v.shape)) for v in value.items)
    if isinstance(value, Opt):
        return "opt(" + ("" if value.item is None else _describe(value.item)) + ")"
    return "-"


def _case_id(case):
    op, inputs, attrs, opset, *_ = case
    details = "-".join(f"{k}={v}" for k, v in sorted(attrs.items()) if k not in ("body", "type"))
    return f"{op}-opset{opset}-{'x'.join(_describe(v) for v in inputs)}-{details}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_kernel_matches_onnxruntime(case):
    assert check_sequence_op(*case) == ""


def _run(op, inputs, attrs, opset=18):
    model, feeds = sequence_model(op, inputs, attrs, opset, 1)
    return next(iter(run_reference(load(model, check=False), feeds).outputs.values()))


def test_sequence_at_rejects_a_position_past_the_end():
    with pytest.raises(Sod2Error, match=r"position 3 is out of range \[-3, 2\]"):
        _run("SequenceAt", [THREE, i64(3)], {})


def test_sequence_insert_does_not_change_its_input_sequence():
    sequence = [f32(2), f32(2)]
    model, feeds = sequence_model("SequenceInsert", [Seq(sequence), f32(2)], {}, 18, 1)
    model.graph.output.append(helper.make_value_info("in0", onnx.TypeProto()))
    outputs = list(run_reference(load(model, check=False), feeds).outputs.values())
    assert [len(v) for v in outputs] == [3, 2]


def test_optional_get_element_of_an_empty_optional_is_an_error():
    with pytest.raises(Sod2Error, match="optional input is empty"):
        _run("OptionalGetElement", [Opt(None)], {})
