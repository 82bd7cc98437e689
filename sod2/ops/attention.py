"""Transformer building blocks: Attention (opset 23-25) and RotaryEmbedding (opset 23).

Attention is softmax(Q K^T * scale + bias) V over (batch, heads, sequence, head_size) tensors.
The work is in assembling the additive bias, every part of which is 0 (attend) or -inf (masked)
except a float `attn_mask`:
- a boolean `attn_mask` is True where a key takes part; a float mask is added as is; a mask
  shorter than the key sequence is padded with masked positions; masks broadcast right-aligned;
- `is_causal`: query i attends key j iff j <= i + offset, offset = the past length (internal
  cache), nonpad_kv_seqlen - q_len per batch (external cache, opset 24), else 0;
- `left_window_size` / `right_window_size` (opset 25): keys within that distance of the query's
  absolute position i + offset; -1 leaves a side open;
- `nonpad_kv_seqlen` (opset 24) masks each batch entry's padding keys.
Q and K are each scaled by sqrt(scale) before the product (scale defaults to 1/sqrt(head_size));
`softcap` maps the scores to softcap * tanh(scores / softcap) before the bias; a query row with
no attendable key gives zeros (not NaN). Grouped-query attention repeats each K/V head for
q_heads / kv_heads consecutive query heads. Every step runs in the input's type (float16 and
bfloat16 products accumulate in float32 and round once), the softmax in `softmax_precision` when
given, as the ONNX function body does.

RotaryEmbedding rotates pairs of features by position-dependent angles: (x1, x2) ->
(cos x1 - sin x2, sin x1 + cos x2), pairs being the two halves of the rotated part of each head
(or neighbours, with `interleaved`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import exact_div, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import provably_equal
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in a's type, narrow floats accumulated in float32 and rounded once."""
    if a.dtype in (np.float32, np.float64):
        return np.matmul(a, b)
    return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)


# -- Attention -------------------------------------------------------------------------------


def _heads_first(ctx: KernelContext, x: np.ndarray, heads: int | None, what: str) -> np.ndarray:
    """(batch, seq, heads * size) -> (batch, heads, seq, size); 4-D inputs pass through."""
    if x.ndim == 4:
        return x
    if x.ndim != 3 or not heads or x.shape[2] % heads:
        raise ctx.fail(
            f"{what} {list(x.shape)} must be 4-D, or 3-D with q_num_heads / kv_num_heads "
            f"dividing its last dim"
        )
    batch, length, hidden = x.shape
    return x.reshape(batch, length, heads, hidden // heads).transpose(0, 2, 1, 3)


def _masked(dtype: np.dtype, allowed: np.ndarray) -> np.ndarray:
    """0 where allowed, -inf elsewhere."""
    return np.where(allowed, dtype.type(0), dtype.type(-np.inf))


def _mask_bias(mask: np.ndarray, total: int, dtype: np.dtype) -> np.ndarray:
    """attn_mask as an additive bias, its key axis padded to `total` with masked positions."""
    missing = total - mask.shape[-1]
    if mask.dtype == np.bool_:
        if missing > 0:
            mask = np.concatenate([mask, np.zeros((*mask.shape[:-1], missing), bool)], axis=-1)
        return _masked(dtype, mask)
    bias = mask.astype(dtype)
    if missing > 0:
        fill = np.full((*mask.shape[:-1], missing), -np.inf, dtype=dtype)
        bias = np.concatenate([bias, fill], axis=-1)
    return bias


def _position_offsets(past: int | None, nonpad: np.ndarray | None, q_len: int) -> np.ndarray | int:
    """The absolute position of each query block's first row: past length, per-batch
    nonpad_kv_seqlen - q_len, or 0; as (batch, 1, 1, 1) when per batch."""
    if past is not None:
        return past
    if nonpad is not None:
        return (nonpad.astype(np.int64) - q_len).reshape(-1, 1, 1, 1)
    return 0


def _structural_bias(
    ctx: KernelContext, shape: tuple[int, int], offset: np.ndarray | int, dtype: np.dtype
) -> np.ndarray:
    """Causal and sliding-window masks as an additive bias (q_len, kv_len) or (B, 1, q, kv)."""
    q_len, kv_len = shape
    distance = np.arange(q_len)[:, None] + offset - np.arange(kv_len)[None, :]  # i + off - j
    allowed = np.ones(np.shape(distance), dtype=bool)
    if int(ctx.attr("is_causal", 0)):
        allowed &= distance >= 0
    left, right = int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))
    if min(left, right) < -1:
        raise ctx.fail(f"window sizes {left}, {right} must be -1 or non-negative")
    if left >= 0:
        allowed &= distance <= left
    if right >= 0:
        allowed &= -distance <= right
    return _masked(dtype, allowed)


def attention_bias(
    ctx: KernelContext,
    mask: Value,
    shape: tuple[int, int],
    past: int | None,
    nonpad: np.ndarray | None,
    dtype: np.dtype,
) -> np.ndarray:
    """The additive bias of the scores: mask + causal + window + key padding."""
    q_len, kv_len = shape
    bias = np.zeros(shape, dtype=dtype)
    if mask is not None:
        bias = bias + _mask_bias(as_array(mask, ctx, "attn_mask"), kv_len, dtype)
    offset = _position_offsets(past, nonpad, q_len)
    bias = bias + _structural_bias(ctx, shape, offset, dtype)
    if nonpad is not None:
        valid = np.arange(kv_len)[None, :] < nonpad.reshape(-1, 1)
        bias = bias + _masked(dtype, valid).reshape(-1, 1, 1, kv_len)
    return bias


def _softmax(scores: np.ndarray) -> np.ndarray:
    """softmax over the last axis; an all -inf row gives zeros instead of NaN."""
    peak = np.max(scores, axis=-1, keepdims=True)
    zero = scores.dtype.type(0)
    shifted = np.exp(scores - np.where(np.isneginf(peak), zero, peak))
    total = np.sum(shifted, axis=-1, keepdims=True)
    return shifted / np.where(total == zero, scores.dtype.type(1), total)


def _repeat_heads(ctx: KernelContext, x: np.ndarray, q_heads: int) -> np.ndarray:
    """Grouped-query attention: each K/V head serves q_heads / kv_heads query heads."""
    kv_heads = x.shape[1]
    if q_heads == kv_heads:
        return x
    if q_heads % kv_heads:
        raise ctx.fail(f"{q_heads} query heads are not a multiple of {kv_heads} key/value heads")
    return np.repeat(x, q_heads // kv_heads, axis=1)


@register("Attention", since=23)
def attention(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Attention: Y = softmax(softcap((Q sqrt(s)) (K sqrt(s))^T) + bias) V, s = scale."""
    q_in = as_array(inputs[0], ctx, "Q")
    dtype = q_in.dtype
    q = _heads_first(ctx, q_in, ctx.attr("q_num_heads"), "Q")
    k = _heads_first(ctx, as_array(inputs[1], ctx, "K"), ctx.attr("kv_num_heads"), "K")
    v = _heads_first(ctx, as_array(inputs[2], ctx, "V"), ctx.attr("kv_num_heads"), "V")
    mask, past_key, past_value, nonpad = (_optional(inputs, i) for i in (3, 4, 5, 6))
    if (past_key is None) != (past_value is None):
        raise ctx.fail("past_key and past_value must be given together")
    if past_key is not None:
        k = np.concatenate([as_array(past_key, ctx, "past_key"), k], axis=2)
        v = np.concatenate([as_array(past_value, ctx, "past_value"), v], axis=2)
    present_key, present_value = k, v
    scale = ctx.attr("scale")
    root = dtype.type(math.sqrt(1 / math.sqrt(q.shape[3]) if scale is None else float(scale)))
    scores = _product(q * root, np.swapaxes(_repeat_heads(ctx, k, q.shape[1]) * root, 2, 3))
    raw_scores = scores
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        scores = np.tanh(scores / dtype.type(softcap)) * dtype.type(softcap)
    past = None if past_key is None else np.shape(past_key)[2]
    nonpad_lengths = None if nonpad is None else as_array(nonpad, ctx, "nonpad_kv_seqlen")
    bias = attention_bias(ctx, mask, scores.shape[2:], past, nonpad_lengths, dtype)
    biased = scores + bias
    precision = int(ctx.attr("softmax_precision", 0))
    weights = _softmax(biased.astype(DType.from_onnx(precision).numpy) if precision else biased)
    fully_masked = np.isneginf(np.max(bias, axis=-1, keepdims=True))
    weights = np.where(fully_masked, weights.dtype.type(0), weights)
    y = _product(weights.astype(dtype), _repeat_heads(ctx, v, q.shape[1]))
    if q_in.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    debug = _qk_output(ctx, raw_scores, scores, biased, weights, softcap)
    return [y, present_key, present_value, None if debug is None else debug.astype(dtype)][
        : len(ctx.node.outputs)
    ]


def _qk_output(
    ctx: KernelContext,
    raw: np.ndarray,
    capped: np.ndarray,
    biased: np.ndarray,
    weights: np.ndarray,
    softcap: float,
) -> np.ndarray | None:
    """qk_matmul_output by mode: 0 the raw product, 1 after softcap, 2 with the bias, 3 softmax."""
    outputs = ctx.node.outputs
    if len(outputs) < 4 or outputs[3] is None:
        return None
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    if mode == 0 and softcap > 0:
        # the spec says the raw product; the onnx reference returns it after softcap
        raise ctx.unsupported("qk_matmul_output_mode 0 together with softcap")
    choices = {0: raw, 1: capped, 2: biased, 3: weights}
    if mode not in choices:
        raise ctx.fail(f"qk_matmul_output_mode {mode} is not 0, 1, 2 or 3")
    return np.broadcast_to(choices[mode], weights.shape)


# -- RotaryEmbedding -------------------------------------------------------------------------


@register("RotaryEmbedding", since=23)
def rotary_embedding(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RotaryEmbedding: (x1, x2) -> (cos x1 - sin x2, sin x1 + cos x2) on the first
    rotary_embedding_dim features of each head; cos / sin looked up by position_ids if given."""
    x = as_array(inputs[0], ctx, "X")
    cos, sin = as_array(inputs[1], ctx, "cos_cache"), as_array(inputs[2], ctx, "sin_cache")
    positions = _optional(inputs, 3)
    heads = _rotary_layout(ctx, x)  # (batch, seq, heads, head_size)
    head_size = heads.shape[3]
    rotated = int(ctx.attr("rotary_embedding_dim", 0)) or head_size
    if rotated % 2 or rotated > head_size:
        raise ctx.fail(f"rotary_embedding_dim {rotated} must be even and at most {head_size}")
    if positions is not None:
        index = as_array(positions, ctx, "position_ids").astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= cos.shape[0]):
            raise ctx.fail(f"position_ids must lie in [0, {cos.shape[0]})")
        cos, sin = cos[index], sin[index]
    if cos.shape != (*heads.shape[:2], rotated // 2) or sin.shape != cos.shape:
        raise ctx.fail(
            f"cos / sin caches give {list(cos.shape)} / {list(sin.shape)} per position, expected "
            f"{[*heads.shape[:2], rotated // 2]}"
        )
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    part = heads[..., :rotated]
    interleaved = bool(ctx.attr("interleaved", 0))
    first, second = (part[..., 0::2], part[..., 1::2]) if interleaved else np.split(part, 2, -1)
    real, imaginary = cos * first - sin * second, sin * first + cos * second
    if interleaved:
        turned = np.stack([real, imaginary], axis=-1).reshape(part.shape)
    else:
        turned = np.concatenate([real, imaginary], axis=-1)
    result = np.concatenate([turned, heads[..., rotated:]], axis=-1).astype(x.dtype)
    if x.ndim == 4:
        return [result.transpose(0, 2, 1, 3)]
    return [result.reshape(x.shape)]


def _rotary_layout(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    """X as (batch, seq, heads, head_size): 4-D inputs are (batch, heads, seq, size)."""
    if x.ndim == 4:
        return x.transpose(0, 2, 1, 3)
    heads = int(ctx.attr("num_heads", 0))
    if x.ndim != 3 or heads < 1 or x.shape[2] % heads:
        raise ctx.fail(
            f"X {list(x.shape)} must be 4-D, or 3-D with num_heads dividing its last dim"
        )
    return x.reshape(x.shape[0], x.shape[1], heads, x.shape[2] // heads)


# -- shape rules (RDP) -------------------------------------------------------------------------


def _heads_first_dims(
    ctx: ShapeContext, fact: TensorFact, heads: int | None, what: str
) -> list[Dim] | None:
    """[batch, heads, seq, head_size]: a 4-D input as it is, a 3-D [batch, seq, heads * size]
    split by the heads attribute; None for an unknown rank."""
    dims = fact.shape.dims
    if dims is None:
        return None
    if len(dims) == 4:
        return list(dims)
    if len(dims) != 3 or not heads:
        raise ctx.fail(f"{what} {fact.shape} must be 4-D, or 3-D with its number of heads given")
    size = exact_div(ctx, dims[2], int(heads), f"{what}'s hidden size splits into {heads} heads")
    return [dims[0], int(heads), dims[1], size]


def _with_past(ctx: ShapeContext, past: TensorFact, current: list[Dim], what: str) -> list[Dim]:
    """Concat(past, current) on the sequence axis: [B, H, past_len + seq, D]."""
    dims = past.shape.dims
    if dims is None:
        return [*current[:2], ctx.fresh(note=f"{what} of unknown rank"), current[3]]
    if len(dims) != 4:
        raise ctx.fail(f"{what} {past.shape} must be 4-D")
    for axis in (0, 1, 3):
        ctx.same(dims[axis], current[axis], f"{what}'s dim {axis}")
    return [*current[:2], dims[2] + current[2], current[3]]


def _presents(
    ctx: ShapeContext,
    past_key: TensorFact | None,
    past_value: TensorFact | None,
    k: list[Dim],
    v: list[Dim],
) -> tuple[list[Dim], list[Dim]]:
    """present_key and present_value: K and V after their past, if given, on the sequence axis."""
    if (past_key is None) != (past_value is None):
        raise ctx.fail("past_key and past_value must be given together")
    if past_key is None or past_value is None:
        return k, v
    key_dims, value_dims = past_key.shape.dims, past_value.shape.dims
    if key_dims is not None and value_dims is not None and len(key_dims) == len(value_dims) == 4:
        ctx.same(key_dims[2], value_dims[2], "past_key and past_value have the same length")
    return _with_past(ctx, past_key, k, "past_key"), _with_past(ctx, past_value, v, "past_value")


def _weights_shape(
    ctx: ShapeContext, scores: list[Dim], mask: TensorFact | None, nonpad: TensorFact | None
) -> Shape:
    """The softmax weights: the scores [B, Hq, Sq, T] broadcast with the mask (its key axis
    padded to T, never longer) and with the key padding [B, 1, 1, T] of nonpad_kv_seqlen."""
    total = scores[3]
    shapes = [Shape(scores)]
    if mask is not None:
        dims = mask.shape.dims
        if dims:
            ctx.assume(sympy.Le(dims[-1], total), "attn_mask is no longer than the key sequence")
            dims = (*dims[:-1], total)
        shapes.append(Shape(dims))
    if nonpad is not None and nonpad.shape.dims is not None:
        shapes.append(Shape([*nonpad.shape.dims, 1, 1, total]))
    return ctx.broadcast(*shapes)


@shape_rule("Attention", since=23, op_class=OpClass.ISDOS)
def attention_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Attention: Y [B, Hq, Sq, Dv] ([B, Sq, Hq * Dv] for a 3-D Q); present key / value
    [B, Hkv, P + Skv, Dk / Dv] (P: past length); qk_matmul_output [B, Hq, Sq, P + Skv]; the
    leading dims of Y and qk_matmul_output broadcast with attn_mask's."""
    q_fact, k_fact, v_fact = inputs[:3]
    q = _heads_first_dims(ctx, q_fact, ctx.attr("q_num_heads"), "Q")
    k = _heads_first_dims(ctx, k_fact, ctx.attr("kv_num_heads"), "K")
    v = _heads_first_dims(ctx, v_fact, ctx.attr("kv_num_heads"), "V")
    if q is None or k is None or v is None:
        note = "Attention with an input of unknown rank"
        y = TensorFact(q_fact.dtype, ctx.unknown_shape(q_fact.shape.rank, note))
        return [y, *(TensorFact(f.dtype, ctx.unknown_shape(4, note)) for f in inputs[:3])]
    batch = ctx.same(q[0], k[0], "Q and K have the same batch")
    ctx.same(batch, v[0], "Q and V have the same batch")
    ctx.same(k[1], v[1], "K and V have the same number of heads")
    ctx.same(k[2], v[2], "K and V have the same sequence length")
    ctx.same(q[3], k[3], "Q and K have the same head size")
    if not provably_equal(q[1], k[1]):
        exact_div(ctx, q[1], k[1], "query heads are a multiple of key/value heads")
    k, v = _presents(ctx, optional(inputs, 4), optional(inputs, 5), k, v)
    weights = _weights_shape(
        ctx, [batch, q[1], q[2], k[2]], optional(inputs, 3), optional(inputs, 6)
    )
    lead = list(weights.dims[:2]) if weights.dims is not None and len(weights.dims) == 4 else None
    if lead is None:
        lead = [ctx.fresh(note="Attention mask broadcast") for _ in range(2)]
    heads_folded = q_fact.shape.rank == 3  # Y is [B, Sq, Hq * Dv] like Q
    y = [lead[0], q[2], lead[1] * v[3]] if heads_folded else [*lead, q[2], v[3]]
    return [
        TensorFact(q_fact.dtype, Shape(y)),
        TensorFact(k_fact.dtype, Shape(k)),
        TensorFact(v_fact.dtype, Shape(v)),
        TensorFact(q_fact.dtype, weights),
    ]


@shape_rule("RotaryEmbedding", since=23, op_class=OpClass.ISDOS)
def rotary_embedding_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """RotaryEmbedding: X's shape. X is [B, H, S, D] or [B, S, num_heads * D]; the caches give
    [B, S, rotary_dim / 2] directly or through position_ids [B, S]."""
    x = inputs[0]
    dims = x.shape.dims
    if dims is None:
        return [TensorFact(x.dtype, x.shape)]
    if len(dims) == 3:
        heads = int(ctx.attr("num_heads", 0))
        if heads < 1:
            raise ctx.fail(f"X {x.shape} is 3-D: num_heads must be given")
        exact_div(ctx, dims[2], heads, f"X's hidden size splits into {heads} heads")
        batch, seq = dims[0], dims[1]
    elif len(dims) == 4:
        batch, seq = dims[0], dims[2]
    else:
        raise ctx.fail(f"X {x.shape} must be 3-D or 4-D")
    positions = optional(inputs, 3)
    indexed = positions.shape.dims if positions is not None else inputs[1].shape.dims
    if indexed is not None and len(indexed) >= 2:
        ctx.same(indexed[0], batch, "the batch of the position index")
        ctx.same(indexed[1], seq, "the sequence of the position index")
    return [TensorFact(x.dtype, x.shape)]
