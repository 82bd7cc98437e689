"""Dropout, as an inference engine runs it.

In inference mode Dropout is the identity: output = input, and the optional mask is all true
(all ones of the input's type before opset 10, when the mask was not yet boolean). Before opset
12 the spec leaves that mask's value open: sod2 follows the onnx reference (every element kept),
where onnxruntime returns all zeros. Inference mode
is the only mode before opset 12 from opset 7 on; opsets 1-6 select it with `is_test=1`; from
opset 12 on `ratio` and `training_mode` are inputs and training mode is on only when
`training_mode` holds true.

Training mode is random: mask = uniform[0, 1) >= ratio, output = mask * input / (1 - ratio).
ONNX leaves the generator to the runtime. With a `seed` attribute sod2 draws the uniforms from
numpy's `RandomState(seed)`, so a seeded node is reproducible (and agrees with the onnx reference);
an unseeded training-mode node has no reproducible result and is refused as unsupported.
A ratio of 0 keeps every element, in any mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import int_values, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dtypes import DType
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _wants_mask(ctx: KernelContext) -> bool:
    return len(ctx.node.outputs) > 1 and ctx.node.outputs[1] is not None


def _kept_everything(ctx: KernelContext, x: np.ndarray) -> list[Value]:
    """The inference result: the input itself and an all-true mask (if asked for)."""
    if not _wants_mask(ctx):
        return [x]
    mask_type = np.bool_ if ctx.opset >= 10 else x.dtype
    return [x, np.ones(x.shape, dtype=mask_type)]


def _training_mode(ctx: KernelContext, inputs: Sequence[Value]) -> bool:
    if ctx.opset < 7:
        return not bool(ctx.attr("is_test", 0))
    if ctx.opset < 12:
        return False
    flag = _optional(inputs, 2)
    if flag is None:
        return False
    array = as_array(flag, ctx, "training_mode")
    if array.size != 1:
        raise ctx.fail(f"training_mode must hold one value, got shape {list(array.shape)}")
    return bool(array.reshape(-1)[0])


def _ratio(ctx: KernelContext, inputs: Sequence[Value]) -> float:
    given = _optional(inputs, 1) if ctx.opset >= 12 else None
    ratio = (
        float(as_array(given, ctx, "ratio").reshape(-1)[0])
        if given is not None
        else float(ctx.attr("ratio", 0.5))
    )
    if not 0.0 <= ratio < 1.0:
        raise ctx.fail(f"ratio must lie in [0, 1), got {ratio}")
    return ratio


@register("Dropout")
def dropout(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Dropout: inference Y = X, mask = true; training Y = mask * X / (1 - ratio),
    mask = uniform[0, 1) >= ratio, drawn from RandomState(seed)."""
    x = as_array(inputs[0], ctx, "input data")
    ratio = _ratio(ctx, inputs)
    if not _training_mode(ctx, inputs) or ratio == 0.0:
        return _kept_everything(ctx, x)
    seed = ctx.attr("seed")
    if seed is None:
        raise ctx.unsupported("training-mode Dropout without a seed attribute (not reproducible)")
    if x.dtype.kind != "f":
        raise ctx.unsupported(f"training-mode Dropout of element type {x.dtype}")
    mask = np.random.RandomState(int(seed)).uniform(0.0, 1.0, x.shape) >= ratio
    scale = x.dtype.type(1.0 / (1.0 - x.dtype.type(ratio)))
    output = np.asarray(mask * x * scale).astype(x.dtype)
    return [output, mask] if _wants_mask(ctx) else [output]


# -- shape rules (RDP) -------------------------------------------------------------------------


def _surely_inference(ctx: ShapeContext, inputs: Facts) -> bool:
    """True when the node runs in inference mode whatever its inputs (Y = X, value included)."""
    if ctx.opset < 7:
        return bool(ctx.attr("is_test", 0))
    flag = optional(inputs, 2) if ctx.opset >= 12 else None
    return flag is None or int_values(flag) == [0]


@shape_rule("Dropout", op_class=OpClass.ISDOS)
def dropout_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Dropout: output like the input (the input itself in inference mode); the mask has the
    input's shape, bool from opset 10 on, the input's type before."""
    data = inputs[0]
    output = data if _surely_inference(ctx, inputs) else TensorFact(data.dtype, data.shape)
    mask_type = DType.BOOL if ctx.opset >= 10 else data.dtype
    return [output, TensorFact(mask_type, data.shape)]
