"""The picture of a memory plan: steps across, arena offsets up, one rectangle per storage.

A storage alive from step `s` to step `e` at offset `o` with `n` bytes is the rectangle
`[s, e + 1) x [o, o + n)`. In a valid plan no two rectangles overlap; the white space under the
arena line is the price of the plan over the live-bytes curve drawn beside it (the bytes alive at
each step, a lower bound no placement can beat). Colours tell storages apart: plain, holding views
or in-place results, a control-flow node's scratch, or dynamic (sized by run-time symbols).

Needs matplotlib (`pip install 'sod2[plot]'`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sod2.errors import Sod2Error
from sod2.opt import placement
from sod2.opt.memory_plan import GraphPlan

COLOURS = {
    "plain": "#8fb8de",
    "shared": "#9fd39b",
    "scratch": "#f2c57c",
    "dynamic": "#e89a9a",
}


def draw_plan(plan: GraphPlan, binding: Mapping[str, int], path: Path, *, title: str = "") -> None:
    """Draw `plan` instantiated at `binding` into `path` (.png, .svg or .pdf)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle
    except ImportError:
        raise Sod2Error("--plot needs matplotlib: pip install 'sod2[plot]'") from None
    values = plan.binding_values(binding)
    concrete = plan.instantiate(values)
    sizes = plan.sizes(values)
    unit, scale = _unit(max(concrete.arena_bytes, 1))
    steps = len(plan.order)
    figure, axes = plt.subplots(figsize=(12, 6))
    for index, storage in enumerate(plan.storages):
        kind = _kind(plan, index)
        axes.add_patch(
            Rectangle(
                (storage.start, concrete.offsets[index] / scale),
                storage.end - storage.start + 1,
                sizes[index] / scale,
                facecolor=COLOURS[kind],
                edgecolor="#333333",
                linewidth=0.4,
            )
        )
    start = np.array([s.start for s in plan.storages], dtype=np.int64)
    end = np.array([s.end for s in plan.storages], dtype=np.int64)
    live = placement.live_bytes(start, end, sizes, steps) if steps else np.zeros(0)
    axes.step(
        np.arange(steps), live / scale, where="post", color="black", linewidth=1, label="live bytes"
    )
    axes.axhline(
        concrete.arena_bytes / scale, color="#aa0000", linestyle="--", linewidth=1, label="arena"
    )
    axes.set_xlim(0, max(steps, 1))
    axes.set_ylim(
        0, max(concrete.arena_bytes, int(live.max()) if len(live) else 0, 1) / scale * 1.05
    )
    axes.set_xlabel("step (node in execution order)")
    axes.set_ylabel(f"arena offset ({unit})")
    bound = " ".join(f"{k}={v}" for k, v in sorted(binding.items()))
    axes.set_title(title or f"memory plan of {plan.graph.name!r} at {bound}")
    handles = [Patch(facecolor=c, label=k) for k, c in COLOURS.items()]
    axes.legend(
        handles=[*handles, *axes.get_legend_handles_labels()[0]], loc="upper right", fontsize=8
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _kind(plan: GraphPlan, index: int) -> str:
    storage = plan.storages[index]
    if plan.dynamic[index]:
        return "dynamic"
    if storage.scratch_of is not None:
        return "scratch"
    return "shared" if len(storage.tensors) > 1 else "plain"


def _unit(largest: int) -> tuple[str, float]:
    for unit, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if largest >= scale:
            return unit, scale
    return "bytes", 1.0
