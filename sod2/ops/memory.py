"""What each operator allows the memory planner to do with its output: alias or overwrite.

Two tables, read by the liveness analysis (`sod2.analysis.liveness`):

- `VIEW_OPS`: ops whose output is its first input's bytes reinterpreted (same element type, same
  order of elements, only the shape changes), so the output can *be* the input's memory: no copy,
  no allocation. `Slice` is a view only when the selected elements are contiguous in the input,
  which the analysis decides per node from the facts (`contiguous_slice_offset`).
- `INPLACE_OPS`: elementwise ops whose output may be written over an input of the same size and
  element width, when that input is not read again after this node: element `i` of the output
  depends only on element `i` of the inputs, so computing in place never reads an overwritten value.

Ops absent from both tables get memory of their own. Adding an op here is a claim about its
kernel's semantics; the planned-execution tests check the claim on every zoo model.
"""

from __future__ import annotations

from sod2.ir.graph import Node
from sod2.ops.fused import is_fused

VIEW_OPS: frozenset[str] = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
"""Outputs that are always a reinterpretation of input 0 (when both are tensors)."""

CONTIGUOUS_VIEW_OPS: frozenset[str] = frozenset({"Slice"})
"""Outputs that are a view of input 0 when the analysis proves the selected block contiguous."""

INPLACE_OPS: frozenset[str] = frozenset(
    {
        # unary arithmetic and math
        "Abs", "Neg", "Reciprocal", "Sqrt", "Exp", "Log", "Ceil", "Floor", "Round", "Sign",
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Tanh", "Asinh", "Acosh",
        "Atanh", "Erf", "Not", "IsNaN", "IsInf", "BitwiseNot",
        # activations
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid",
        "HardSwish", "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Mish", "Shrink", "Clip",
        # binary and variadic
        "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean",
        "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift",
        "Where",
    }
)  # fmt: skip
"""Elementwise ops that may overwrite an input which dies at the node (same size, same width)."""


ROW_INPLACE_OPS = frozenset({"Softmax", "LogSoftmax"})
"""Ops that read all of a row of their input before writing that row of their output, so the
output may overwrite the input too (every kernel of theirs computes correctly in place)."""


def overwritable_inputs(node: Node) -> frozenset[int] | None:
    """The positions of the inputs `node`'s output may overwrite when they die at it (None: any
    input, where `may_write_in_place` allows it at all).

    A fused chain (`sod2.opt.fusion`) computes its last stage block by block into a buffer of
    its own and finishes each block with its epilogue before writing it out, so its output may
    overwrite an input that only that epilogue reads (the residual of a block): block `b` of
    the output is written after block `b` of that input was read, and no later block reads it.
    Inputs the stages themselves read (in bands that overlap) are never overwritten."""
    if not (is_fused(node) and node.attr("kind", "") == "chain"):
        return None
    body = node.attr("body")
    if len(node.outputs) != 1:
        return frozenset()
    after = _epilogue_nodes(body.topological_order())
    return frozenset(
        i
        for i, tensor in enumerate(body.inputs)
        if tensor.users and all(user in after for user in tensor.users)
    )


def streamed_input(node: Node) -> int | None:
    """The position of the input a fused chain's first stage reads (its X), when the chain's
    output may overwrite it provided the two have the same shape, or None.

    The chain then writes its output block by block over X's rows (`BandChain`'s write-behind):
    a block's rows are written once no later block's band of X reaches them, and X's rows at
    the block are what the last stage's epilogue reads as a residual before it writes them. So
    X may be read only by the first stage (as its data input) and by that epilogue."""
    if not (is_fused(node) and node.attr("kind", "") == "chain") or len(node.outputs) != 1:
        return None
    body = node.attr("body")
    order = body.topological_order()
    stages = [n for n in order if n.op_type in ("Conv", "Resize")]
    if len(stages) < 2:
        return None
    first, x = stages[0], stages[0].inputs[0]
    if x is None or x not in body.inputs:
        return None
    after = _epilogue_nodes(order)
    for user in x.users:
        reads = [i for i, t in enumerate(user.inputs) if t is x]
        if not (user is first and reads == [0]) and user not in after:
            return None
    return body.inputs.index(x)


def _epilogue_nodes(order: list[Node]) -> set[Node]:
    """The nodes of a chain's body after its last Conv: the epilogue it applies per block."""
    last = [n for n in order if n.op_type == "Conv"][-1]
    after: set[Node] = set()
    frontier = [last]
    while frontier:
        current = frontier.pop()
        for tensor in current.outputs:
            for user in () if tensor is None else tensor.users:
                if user not in after:
                    after.add(user)
                    frontier.append(user)
    return after


def may_write_in_place(node: Node) -> bool:
    """True when `node`'s output may overwrite a same-sized input that dies at it: a standard
    elementwise op of `INPLACE_OPS` or a row op of `ROW_INPLACE_OPS`, a fused elementwise
    group with one output (its loop nest reads element `i` of every input before writing
    element `i`), or a fused chain with one output (over the inputs `overwritable_inputs`
    names)."""
    if is_fused(node):
        return node.attr("kind", "") in ("elementwise", "chain") and len(node.outputs) == 1
    return node.domain in ("", "ai.onnx") and (
        node.op_type in INPLACE_OPS or node.op_type in ROW_INPLACE_OPS
    )
