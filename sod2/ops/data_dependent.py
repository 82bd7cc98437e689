"""Operators whose output shape depends on input values: TopK, NonZero, Unique, NonMaxSuppression.

These are SoD2's execution-determined-output (EDO) operators: no shape analysis can know their
output extent before the data is there, so the reference kernels here are the ground truth that the
rest of the system falls back on. They sit in the post-processing of detection models.

Ordering rules ONNX fixes and numpy does not:
- TopK breaks ties by the lower index, for the largest as for the smallest values; NaN counts as
  larger than every number (onnxruntime's order). Both follow from one stable sort.
- Unique with sorted=0 lists values in the order of their first occurrence, and its `indices`,
  `inverse_indices` and `counts` follow that order; with sorted=1, values (or slices along `axis`,
  compared lexicographically) ascend. NaNs compare equal to each other, as in `numpy.unique`.
- NonMaxSuppression visits boxes by descending score, ties by lower box index, and suppresses a
  box when its IoU with a kept box is strictly greater than the threshold; boxes of zero area are
  never suppressed. The IoU is computed in float32, in onnxruntime's order of operations, so
  boundary cases decide alike.
- NonZero of a scalar treats it as a one-element vector (shape [1, n]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

from sod2.analysis.facts import Facts, SymbolOrigin, TensorFact
from sod2.analysis.rule_kit import int_values, optional, value_dims
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import dim_min
from sod2.ir.dims import Dim, as_dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule
from sod2.ops.shape import normalize_axis


def _input(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def sort_keys(data: np.ndarray) -> np.ndarray:
    """`data` in a dtype numpy sorts natively (narrow floats widen to float32, exactly)."""
    if data.dtype.kind in "biuf" or data.dtype == object:
        return data
    return data.astype(np.float32)


def stable_order(keys: np.ndarray, axis: int, *, descending: bool) -> np.ndarray:
    """Positions along `axis` that sort `keys`, ties kept in index order in both directions."""
    if not descending:
        return np.argsort(keys, axis=axis, kind="stable")
    extent = keys.shape[axis]
    flipped = np.flip(keys, axis=axis)
    order = np.argsort(flipped, axis=axis, kind="stable")
    return np.flip(extent - 1 - order, axis=axis)


# -- TopK ---------------------------------------------------------------------------------------


def _top_k_count(ctx: KernelContext, inputs: Sequence[Value]) -> int:
    if ctx.opset < 10:
        return int(ctx.attr("k"))
    k_array = as_array(inputs[1], ctx, "input K")
    if k_array.size != 1 or k_array.dtype.kind not in "iu":
        raise ctx.fail(f"K must be one integer, got {k_array.dtype}{list(k_array.shape)}")
    return int(k_array.reshape(-1)[0])


@register("TopK", since=1)
def top_k(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """TopK: the k largest (or smallest) values along `axis` and their indices, ties by index."""
    data = as_array(inputs[0], ctx, "input X")
    axis = normalize_axis(ctx, ctx.attr("axis", -1), data.ndim)
    k = _top_k_count(ctx, inputs)
    if not 0 <= k <= data.shape[axis]:
        raise ctx.fail(f"K = {k} must lie in [0, {data.shape[axis]}] (dim {axis} of the input)")
    largest = bool(ctx.attr("largest", 1)) if ctx.opset >= 11 else True
    order = stable_order(sort_keys(data), axis, descending=largest)
    indices = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    return [np.take_along_axis(data, indices, axis=axis), indices]


# -- NonZero ------------------------------------------------------------------------------------


@register("NonZero", since=9)
def non_zero(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """NonZero: the indices of the non-zero elements, one column per element in row-major order."""
    data = as_array(inputs[0], ctx, "input X")
    flags = (data != "") if data.dtype == object else (data != np.zeros((), data.dtype))
    positions = np.nonzero(np.atleast_1d(flags))
    return [np.array(positions, dtype=np.int64).reshape(len(positions), -1)]


# -- Unique -------------------------------------------------------------------------------------


def _as_rows(data: np.ndarray, axis: int | None) -> np.ndarray:
    """The items Unique compares, one per row: elements, or the slices along `axis` flattened."""
    if axis is None:
        return data.reshape(-1, 1)
    moved = np.moveaxis(data, axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _row_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, new_group): a stable lexicographic order of the rows and, in that order, whether
    each row starts a new group of equal rows (NaNs equal to each other)."""
    keys = sort_keys(rows)
    order = np.lexsort(keys.T[::-1]) if keys.shape[1] else np.arange(len(keys))
    ordered = keys[order]
    differs = ordered[1:] != ordered[:-1]
    if ordered.dtype.kind == "f":
        differs &= ~(np.isnan(ordered[1:]) & np.isnan(ordered[:-1]))
    new_group = np.ones(len(ordered), dtype=bool)
    new_group[1:] = differs.any(axis=1)
    return order, new_group


@register("Unique", since=11)
def unique(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Unique: Y = the distinct values (or slices along `axis`), ascending or by first occurrence;
    indices[g] = first position of Y[g]; X[i] = Y[inverse[i]]; counts[g] = occurrences of Y[g]."""
    data = as_array(inputs[0], ctx, "input X")
    axis = ctx.attr("axis", None)
    if axis is not None:
        axis = normalize_axis(ctx, axis, data.ndim)
    rows = _as_rows(data, axis)
    order, new_group = _row_groups(rows)
    group_of_sorted = np.cumsum(new_group) - 1
    first_index = order[new_group]  # stable sort: the first row of a group occurs first
    counts = np.diff(np.append(np.flatnonzero(new_group), len(order)))
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = group_of_sorted
    if not ctx.attr("sorted", 1):
        by_occurrence = np.argsort(first_index, kind="stable")
        renumber = np.empty_like(by_occurrence)
        renumber[by_occurrence] = np.arange(len(by_occurrence))
        first_index, counts, inverse = (
            first_index[by_occurrence],
            counts[by_occurrence],
            renumber[inverse],
        )
    if axis is None:
        values = data.reshape(-1)[first_index]
    else:
        values = np.take(data, first_index, axis=axis)
    as_int64 = [a.astype(np.int64) for a in (first_index, inverse, counts)]
    return [values, *as_int64][: len(ctx.node.outputs)]


# -- NonMaxSuppression --------------------------------------------------------------------------


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """Boxes as [y_min, x_min, y_max, x_max] (float32) from either ONNX box layout."""
    if center_point_box:
        x_center, y_center, width, height = np.moveaxis(boxes, -1, 0)
        half_w, half_h = width / np.float32(2), height / np.float32(2)
        return np.stack(
            [y_center - half_h, x_center - half_w, y_center + half_h, x_center + half_w], axis=-1
        )
    y1, x1, y2, x2 = np.moveaxis(boxes, -1, 0)
    return np.stack(
        [np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=-1
    )


def _suppresses(kept: np.ndarray, others: np.ndarray, threshold: np.float32) -> np.ndarray:
    """For one kept box and many others: IoU(kept, other) > threshold (float32 arithmetic)."""
    top = np.maximum(kept[0], others[:, 0])
    left = np.maximum(kept[1], others[:, 1])
    bottom = np.minimum(kept[2], others[:, 2])
    right = np.minimum(kept[3], others[:, 3])
    intersection = (right - left) * (bottom - top)
    overlaps = (right > left) & (bottom > top)
    kept_area = (kept[2] - kept[0]) * (kept[3] - kept[1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = kept_area + other_areas - intersection
    valid = overlaps & (kept_area > 0) & (other_areas > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
    return valid & (iou > threshold)


def _select_boxes(
    corners: np.ndarray,
    scores: np.ndarray,
    limit: int,
    iou_threshold: np.float32,
    score_threshold: np.float32 | None,
) -> list[int]:
    """Greedy NMS over one (batch, class): the kept box indices, in the order they were kept."""
    candidates = np.arange(len(scores))
    if score_threshold is not None:
        candidates = candidates[scores > score_threshold]
    candidates = candidates[stable_order(scores[candidates], 0, descending=True)]
    suppressed = np.zeros(len(candidates), dtype=bool)
    kept: list[int] = []
    for position, box in enumerate(candidates):
        if len(kept) >= limit:
            break
        if suppressed[position]:
            continue
        kept.append(int(box))
        later = candidates[position + 1 :]
        suppressed[position + 1 :] |= _suppresses(corners[box], corners[later], iou_threshold)
    return kept


def _float_option(ctx: KernelContext, value: Value, what: str) -> np.float32 | None:
    if value is None:
        return None
    array = as_array(value, ctx, what)
    if array.size != 1:
        raise ctx.fail(f"{what} must hold one value, got shape {list(array.shape)}")
    return np.float32(array.reshape(-1)[0])


@register("NonMaxSuppression", since=10)
def non_max_suppression(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """NonMaxSuppression: per batch and class, keep boxes by descending score unless a kept box
    overlaps them with IoU > iou_threshold; rows [batch, class, box] of the kept boxes."""
    boxes = as_array(inputs[0], ctx, "input boxes")
    scores = as_array(inputs[1], ctx, "input scores")
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3:
        raise ctx.fail(
            f"boxes must be [batch, boxes, 4] and scores [batch, classes, boxes], got "
            f"{list(boxes.shape)} and {list(scores.shape)}"
        )
    if scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ctx.fail(f"boxes {list(boxes.shape)} and scores {list(scores.shape)} do not match")
    limit_value = _input(inputs, 2)
    limit = (
        0 if limit_value is None else int(as_array(limit_value, ctx, "input max").reshape(-1)[0])
    )
    iou_threshold = _float_option(ctx, _input(inputs, 3), "input iou_threshold")
    score_threshold = _float_option(ctx, _input(inputs, 4), "input score_threshold")
    corners = _corners(boxes.astype(np.float32), int(ctx.attr("center_point_box", 0)))
    rows = [
        (batch, cls, box)
        for batch in range(scores.shape[0])
        for cls in range(scores.shape[1])
        for box in _select_boxes(
            corners[batch],
            scores[batch, cls].astype(np.float32),
            max(limit, 0),
            np.float32(0) if iou_threshold is None else iou_threshold,
            score_threshold,
        )
    ]
    return [np.array(rows, dtype=np.int64).reshape(-1, 3)]


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# Each extent only execution can tell is ONE fresh EXECUTION symbol, bounded by what the op
# implies, and reused wherever ONNX makes two extents equal (Unique's values, indices and counts
# share their length; TopK's values and indices their k). A node whose data-dependent input is a
# known value (a constant condition, a k that RDP follows) gets an exact extent and is classified
# ISVDOS; a TopK whose k RDP cannot follow is classified EDO.


@shape_rule("TopK", op_class=OpClass.ISVDOS)
def top_k_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """TopK: values and indices have the input's dims with dims[axis] replaced by k, where
    0 <= k <= dims[axis]."""
    data = inputs[0]
    dims = data.shape.dims
    if dims is None:
        return [TensorFact(data.dtype, Shape.unknown()), TensorFact(DType.INT64, Shape.unknown())]
    axis = normalize_axis(ctx, ctx.attr("axis", -1), len(dims))
    shape = Shape([*dims[:axis], _k_extent(ctx, inputs, dims[axis]), *dims[axis + 1 :]])
    return [TensorFact(data.dtype, shape), TensorFact(DType.INT64, shape)]


def _k_extent(ctx: ShapeContext, inputs: Facts, extent: Dim) -> Dim:
    """k when RDP knows it (the op needs k <= extent), else an EXECUTION symbol <= extent."""
    if ctx.opset < 10:
        k = ctx.attr("k")
    else:
        given = value_dims(inputs[1])
        k = given[0] if given is not None and len(given) == 1 else None
    if k is None:
        ctx.classify(OpClass.EDO)
        return ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=extent, note="TopK k")
    if isinstance(k, int) and (k < 0 or (isinstance(extent, int) and k > extent)):
        raise ctx.fail(f"K = {k} must lie in [0, {extent}] (the dim at axis)")
    ctx.assume(sympy.And(sympy.Ge(k, 0), sympy.Le(k, extent)), "0 <= K <= the dim at axis")
    return as_dim(k)


@shape_rule("NonZero", since=9, op_class=OpClass.EDO)
def non_zero_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """NonZero: [max(rank, 1), e], e the number of non-zero elements (an EXECUTION symbol,
    e <= numel); exact, value included, for a 1-D input of known value."""
    data = inputs[0]
    dims = data.shape.dims
    known = int_values(data)
    if known is not None and dims is not None and len(dims) <= 1:
        ctx.classify(OpClass.ISVDOS)
        positions = tuple(index for index, element in enumerate(known) if element)
        return [TensorFact(DType.INT64, Shape([1, len(positions)]), positions)]
    rank = ctx.fresh(note="rank of an unknown-rank input") if dims is None else max(len(dims), 1)
    count = ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=data.shape.numel(), note="NonZero count")
    return [TensorFact(DType.INT64, Shape([rank, count]))]


@shape_rule("Unique", since=11, op_class=OpClass.EDO)
def unique_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Unique over n items (elements, or slices along `axis`): Y holds e of them, indices and
    counts are [e], inverse_indices is [n]; e is one EXECUTION symbol, e <= n."""
    data = inputs[0]
    dims = data.shape.dims
    axis = ctx.attr("axis", None)
    if axis is not None and dims is not None:
        axis = normalize_axis(ctx, axis, len(dims))
    if dims is None:
        items: Dim | None = None
    else:
        items = data.shape.numel() if axis is None else dims[axis]
    distinct = ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=items, note="Unique count")
    if axis is None:
        values = Shape([distinct])
    else:
        values = (
            Shape.unknown() if dims is None else Shape([*dims[:axis], distinct, *dims[axis + 1 :]])
        )
    per_item = items if items is not None else ctx.fresh(note="Unique item count")
    return [
        TensorFact(data.dtype, values),
        TensorFact(DType.INT64, Shape([distinct])),
        TensorFact(DType.INT64, Shape([per_item])),
        TensorFact(DType.INT64, Shape([distinct])),
    ]


@shape_rule("NonMaxSuppression", since=10, op_class=OpClass.EDO)
def non_max_suppression_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """NonMaxSuppression: [e, 3] with e <= batches * classes * min(boxes, max_per_class), an
    EXECUTION symbol; [0, 3] when max_output_boxes_per_class is absent or not positive."""
    boxes, scores = inputs[0], inputs[1]
    limit = optional(inputs, 2)
    given = [0] if limit is None else value_dims(limit)
    per_class = given[0] if given is not None and len(given) == 1 else None
    if isinstance(per_class, int) and per_class <= 0:
        ctx.classify(OpClass.ISVDOS)
        return [TensorFact(DType.INT64, Shape([0, 3]))]
    bound = _selection_bound(ctx, boxes.shape, scores.shape, per_class)
    count = ctx.fresh(SymbolOrigin.EXECUTION, upper_bound=bound, note="NonMaxSuppression count")
    return [TensorFact(DType.INT64, Shape([count, 3]))]


def _selection_bound(
    ctx: ShapeContext, boxes: Shape, scores: Shape, per_class: Dim | None
) -> Dim | None:
    """batches * classes * min(boxes, per_class), with boxes [B, N, 4] and scores [B, C, N]."""
    if boxes.dims is None or scores.dims is None:
        return None
    if len(boxes.dims) != 3 or len(scores.dims) != 3:
        raise ctx.fail(
            f"boxes {boxes} must be [batch, boxes, 4] and scores {scores} [batch, classes, boxes]"
        )
    batches = ctx.same(boxes.dims[0], scores.dims[0], "boxes and scores share the batch")
    count = ctx.same(boxes.dims[1], scores.dims[2], "one score per box")
    ctx.same(boxes.dims[2], 4, "four box coordinates")
    if per_class is not None and sympy.sympify(per_class).is_positive:
        count = dim_min(count, per_class)
    return as_dim(batches * scores.dims[1] * count)
