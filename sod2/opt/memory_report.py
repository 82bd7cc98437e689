"""The figures of a memory plan at one binding, next to the planners it is measured against.

All figures count the same bytes: the planned storages of the top graph (intermediates with a
known size, after views and in-place, control-flow scratch included). Inputs, constants, outputs
and unplanned tensors are outside every figure.

- `order_peak_bytes`: the most bytes alive at one step in the chosen order, a lower bound for any
  placement of that order;
- `default_order_peak_bytes`: the same for the model's own order;
- `arena_bytes`: the symbolic plan instantiated at the binding;
- `greedy_by_size_bytes`: TFLite's greedy-by-size, re-planned from scratch for this binding;
- `online_best_fit_bytes`: an onnxruntime-style best-fit allocator run in execution order;
- `no_reuse_bytes`: every storage in its own bytes;
- `instantiate_us`: the median time to instantiate the plan (microseconds);
- `optimal_order_peak_bytes`: the exact minimum over all orders of the order-search model (views,
  no in-place), when the exact search finishes; `sep_peak_bytes` / `sep_default_peak_bytes` are
  the chosen and the model's order in that same model, to compare with it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from sod2.analysis.liveness import Liveness, liveness
from sod2.opt import placement
from sod2.opt.memory_plan import GraphPlan, MemoryPlan, schedule_problem, size_evaluator
from sod2.opt.ordering import optimal_peak, peak_bytes


@dataclass(frozen=True)
class PlanFigures:
    """A plan's figures at one binding (module docstring)."""

    binding: dict[str, int]
    storages: int
    tensors_planned: int
    views: int
    inplace: int
    unplanned: int
    versions: int
    order_peak_bytes: int
    default_order_peak_bytes: int
    arena_bytes: int
    greedy_by_size_bytes: int
    online_best_fit_bytes: int
    no_reuse_bytes: int
    instantiate_us: float
    sep_peak_bytes: int | None = None
    sep_default_peak_bytes: int | None = None
    optimal_order_peak_bytes: int | None = None

    def to_dict(self) -> dict:
        """The figures as a JSON-ready dict."""
        return asdict(self)


def figures(
    plan: MemoryPlan, binding: Mapping[str, int], *, exact: bool = False, repeat: int = 200
) -> PlanFigures:
    """The figures of `plan`'s top graph at `binding`; `exact` also runs the exact order search."""
    top = plan.top
    values = top.binding_values(binding)
    concrete = top.instantiate(values)
    start, end, size = _arrays(top.liveness, top, values)
    steps = len(top.order)
    peak = int(placement.live_bytes(start, end, size, steps).max()) if len(size) else 0
    d_start, d_end, d_size = _arrays(top.default_liveness, top, values)
    default_peak = (
        int(placement.live_bytes(d_start, d_end, d_size, steps).max()) if len(d_size) else 0
    )
    greedy = placement.arena_size(placement.greedy_by_size(start, end, size), size)
    _, best_fit = placement.online_best_fit(start, end, size)
    sep = _sep_figures(plan, top, values) if exact else (None, None, None)
    return PlanFigures(
        binding=dict(binding),
        storages=len(top.storages),
        tensors_planned=sum(len(s.tensors) for s in top.storages),
        views=len(top.liveness.views),
        inplace=len(top.liveness.inplace),
        unplanned=len(top.liveness.unplanned) + sum(len(s.tensors) for s in top.unplanned),
        versions=len(top.versions),
        order_peak_bytes=peak,
        default_order_peak_bytes=default_peak,
        arena_bytes=concrete.arena_bytes,
        greedy_by_size_bytes=int(greedy),
        online_best_fit_bytes=int(best_fit),
        no_reuse_bytes=int(size.sum()),
        instantiate_us=instantiate_microseconds(top, values, repeat),
        sep_peak_bytes=sep[0],
        sep_default_peak_bytes=sep[1],
        optimal_order_peak_bytes=sep[2],
    )


def instantiate_microseconds(
    plan: GraphPlan, binding: Mapping[str, int], repeat: int = 200
) -> float:
    """The median wall time of `plan.instantiate(binding)`, in microseconds (after a warm-up)."""
    plan.instantiate(binding)
    times = []
    for _ in range(max(repeat, 1)):
        began = time.perf_counter()
        plan.instantiate(binding)
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1e6)


def _arrays(lv: Liveness, plan: GraphPlan, values: Mapping[str, int]) -> tuple[np.ndarray, ...]:
    storages = plan.storages if lv is plan.liveness else plan.placeable(lv.planned())
    start = np.array([s.start for s in storages], dtype=np.int64)
    end = np.array([s.end for s in storages], dtype=np.int64)
    size = plan.sizes(values) if lv is plan.liveness else size_evaluator(storages)(values)
    return start, end, size


def _sep_figures(
    plan: MemoryPlan, top: GraphPlan, values: Mapping[str, int]
) -> tuple[int | None, int | None, int | None]:
    """(chosen order's peak, default order's peak, exact optimum) in the order-search model."""
    graph = top.graph
    default = tuple(graph.topological_order())
    scratch = {s.scratch_of: s.size for s in top.storages if s.scratch_of is not None}
    lv = liveness(graph, plan.rdp.facts, default, scratch=scratch, inplace=False)  # type: ignore[arg-type]
    storages = top.placeable(lv.planned())
    sizes = size_evaluator(storages)(values).reshape(-1, 1)
    problem = schedule_problem(lv, sizes, storages)
    position = {node: i for i, node in enumerate(default)}
    chosen = tuple(position[node] for node in top.order)
    return (
        int(peak_bytes(problem, chosen)[0]),
        int(peak_bytes(problem, tuple(range(len(default))))[0]),
        optimal_peak(problem, 0),
    )
