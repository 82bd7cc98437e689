"""Pattern kinds: how an operator's loop nest looks, which is what fusion needs to know.

Fusion (`sod2.opt.fusion`) merges operators whose loop nests can share one traversal. Every op
has one kind, by how each output element depends on the inputs:

| kind | output element `i` reads | examples |
|---|---|---|
| ELEMENTWISE | element `i` of each input (all of one shape) | Relu, Sigmoid, Cast |
| BROADCAST | element `i` of each input after numpy broadcasting | Add, Mul, Where |
| INJECTIVE | one element of an input, at an index computed from `i` | Transpose, Slice, Concat |
| REDUCTION | many elements of an input along some axes | ReduceMean, Softmax, ArgMax |
| OUT_ELEMENTWISE_FUSABLE | a window or a row of its inputs (heavy, BLAS-like); an elementwise epilogue can be applied to each output element as it is finished | Conv, MatMul, Gemm |
| OPAQUE | anything, or its shape needs execution (EDO), or it runs subgraphs | NonZero, If, Loop |

An op missing from the tables is OPAQUE: nothing fuses with it, which is always safe.
ELEMENTWISE and BROADCAST ops are the ones the code generator turns into scalar expressions
(`sod2.backend.codegen`); the table here is the single list both agree on.
"""

from __future__ import annotations

import enum

from sod2.ir.graph import Node
from sod2.ops.fused import FUSED_DOMAIN


class PatternKind(enum.IntEnum):
    """Fusion pattern of an operator; a lower value fuses more freely (TVM's ordering)."""

    ELEMENTWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCTION = 3
    OUT_ELEMENTWISE_FUSABLE = 4
    OPAQUE = 8


ELEMENTWISE_OPS: frozenset[str] = frozenset(
    {
        "Abs", "Neg", "Reciprocal", "Sqrt", "Exp", "Log", "Ceil", "Floor", "Round", "Sign",
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Tanh", "Asinh", "Acosh",
        "Atanh", "Erf", "Not", "IsNaN", "IsInf",
        "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Mish", "Shrink",
        "Cast", "Identity",
    }
)  # fmt: skip
"""Unary ops: output element `i` is a function of input element `i` alone."""

BROADCAST_OPS: frozenset[str] = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
        "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor",
        "Where", "PRelu", "Clip",
    }
)  # fmt: skip
"""Ops with several tensor inputs combined element by element under numpy broadcasting
(Clip's min and max are broadcast inputs too)."""

INJECTIVE_OPS: frozenset[str] = frozenset(
    {
        "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Slice", "Concat",
        "Split", "Gather", "GatherElements", "GatherND", "Pad", "Tile", "DepthToSpace",
        "SpaceToDepth", "Resize", "Trilu",
    }
)  # fmt: skip
"""Data movement: each output element is one input element (or a constant), found by index."""

REDUCTION_OPS: frozenset[str] = frozenset(
    {
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
        "Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization",
        "GroupNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "CumSum", "BatchNormalization",
    }
)  # fmt: skip
"""Ops that combine many input elements into each output element (pools and norms included)."""

OUT_ELEMENTWISE_FUSABLE_OPS: frozenset[str] = frozenset(
    {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"}
)
"""Heavy ops computed by BLAS-like kernels whose outputs an elementwise epilogue can finish."""

_KINDS: dict[str, PatternKind] = {
    **{op: PatternKind.ELEMENTWISE for op in ELEMENTWISE_OPS},
    **{op: PatternKind.BROADCAST for op in BROADCAST_OPS},
    **{op: PatternKind.INJECTIVE for op in INJECTIVE_OPS},
    **{op: PatternKind.REDUCTION for op in REDUCTION_OPS},
    **{op: PatternKind.OUT_ELEMENTWISE_FUSABLE for op in OUT_ELEMENTWISE_FUSABLE_OPS},
}


SOD2_KINDS: dict[str, PatternKind] = {"Standardize": PatternKind.OUT_ELEMENTWISE_FUSABLE}
"""sod2's own ops (domain `sod2`) that are not OPAQUE: Standardize's kernel finishes its output
with an epilogue as a Conv's does (`sod2.opt.standardize`)."""


def pattern_kind(op_type: str, domain: str = "") -> PatternKind:
    """The pattern kind of an op of the standard domain or of sod2's (SOD2_KINDS); every other
    op is OPAQUE."""
    if domain == FUSED_DOMAIN:
        return SOD2_KINDS.get(op_type, PatternKind.OPAQUE)
    if domain not in ("", "ai.onnx"):
        return PatternKind.OPAQUE
    return _KINDS.get(op_type, PatternKind.OPAQUE)


def node_pattern(node: Node) -> PatternKind:
    """The pattern kind of `node` (a node with subgraphs is always OPAQUE)."""
    if node.subgraphs:
        return PatternKind.OPAQUE
    return pattern_kind(node.op_type, node.domain)
