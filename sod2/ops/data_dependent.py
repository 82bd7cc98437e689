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

from sod2.ops.registry import KernelContext, Value, as_array, register
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
