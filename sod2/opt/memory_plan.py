"""DMP: one memory plan per model, computed on symbolic sizes, made concrete per input.

The plan places every intermediate storage (`sod2.analysis.liveness`) of a graph in one arena.
Sizes are sympy expressions over the model's symbols, so offsets cannot be numbers. Instead the
planner decides, for every two storages that are alive at the same time, which one sits *above*
the other. That relation is a DAG (the *above-DAG*), and an offset is the longest path to it:

    offset(b) = Max(0, offset(a) + size(a) for every a directly below b)
    arena     = Max(offset(b) + size(b) for every b)

These expressions are valid for *every* binding of the symbols: whatever the sizes, a storage
starts above everything below it, so storages alive together never overlap. Only the quality of
the plan depends on the binding. The above-DAG is read off concrete plans: at a few sample
bindings spread over the symbols' ranges, TFLite's greedy-by-size places the storages, and each
placement orients every conflicting pair (lower offset below), a *candidate* above-DAG. Redundant
edges (implied by a longer path) are dropped, so each offset is a Max of a few terms.

A few candidates are kept as *versions*; each input takes the version with the smallest arena.
They are chosen on a denser set of *validation* bindings (thousands of random points and the
ranges' corners), against a from-scratch greedy plan at each: a greedy cover that lowers the
total excess over `VALIDATION_TARGET` (a margin under the 1.05 target, for bindings between the
validation points). Where no candidate serves a validation binding well, greedy's placement at
that binding becomes one more candidate (adaptive sampling). Greedy runs at a validation binding
only where the versions exceed the target against the order's peak (the bytes alive at one step,
a lower bound of any placement, computed for every binding at once).

Instantiation computes the sizes with generated straight-line code (`sod2.opt.evaluator`), then
every version's offsets with one compiled loop over the above-DAGs' edges (`_longest_paths`,
edges as arrays): microseconds, not a re-plan, and no code generated per version.

Sizes that depend on symbols known only while running (EDO outputs such as a NonZero count, a
branch's result) make a storage *dynamic*. Dynamic storages are always placed above the static
ones they conflict with, so static offsets never depend on run-time symbols: `instantiate` with
the input symbols alone places every static storage; the dynamic ones are placed once their symbols
are bound, with the same expressions, without re-planning the rest. Without their value, a
dynamic symbol takes its proven upper bound (sizes and offsets grow monotonically with it, so the
placement stays valid for any smaller value). A storage sized by a run-time symbol with no proven
bound at all (a Loop's trip count read from a tensor, a Range's length) cannot be placed ahead of
time: it is left out of the plan (`GraphPlan.unplanned`) and allocated when it is produced.

The order is chosen first (SEP, `sod2.opt.ordering`), then the storages of that order are built
(views, in-place) and placed. Subgraphs (If branches, Loop and Scan bodies) get plans of their own;
their arena is the control-flow node's scratch storage, alive at its step only (an If's is the Max
of its branches'). An If branch's result may be written over a residual it adds, which then
lives in the If's output instead of that arena; and an If output that every branch writes over
one outer value (a gated residual block over its input) takes that value's storage when the
value dies at the If (`branch_overwrites`). A kernel's workspace (`plan_memory(workspace=...)`)
is a scratch storage too, alive at its node's step: placed with the tensors, it takes bytes
only where they leave room.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
import sympy

from sod2.analysis.facts import SymbolInfo, TensorFact
from sod2.analysis.liveness import (
    Liveness,
    Storage,
    branch_overwrites,
    concat_slots,
    find_views,
    liveness,
)
from sod2.analysis.rdp import RDPResult, propagate
from sod2.cache import Rebuilt
from sod2.errors import Sod2Error
from sod2.ir.dims import Dim
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ops.fused import is_fused
from sod2.opt import placement
from sod2.opt.evaluator import Evaluator, ref
from sod2.opt.ordering import OrderResult, ScheduleProblem, plan_order

DEFAULT_RANGE = (1, 1024)
"""The range assumed for an input symbol no range is given for."""

VALIDATION_TARGET = 1.02
"""The arena / greedy-by-size ratio the versions aim for at every validation binding."""


class PlanError(Sod2Error):
    """A memory plan could not be built or instantiated (names the symbol or tensor at fault)."""


@dataclass(frozen=True)
class PlanOptions:
    """How to plan: symbol ranges (default `DEFAULT_RANGE`), whether to search the order, apply
    in-place, how many sample and validation bindings, how many plan versions at most, the
    evaluator backend ("auto", "python" or "numba")."""

    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    search_order: bool = True
    inplace: bool = True
    samples: int = 48
    validation: int = 4096
    versions: int = 16
    time_limit_s: float = 2.0
    evaluator: str = "auto"
    seed: int = 0


def sample_bindings(
    symbols: Sequence[str], ranges: Mapping[str, tuple[int, int]], count: int, seed: int = 0
) -> list[dict[str, int]]:
    """`count` bindings spread over the symbols' ranges: every symbol at its low end, at its high
    end, at the geometric middle, every corner of the ranges (up to four symbols), then
    log-uniform random points (reproducible by `seed`)."""
    bounds = {s: ranges.get(s, DEFAULT_RANGE) for s in symbols}
    samples = [
        {s: low for s, (low, _) in bounds.items()},
        {s: high for s, (_, high) in bounds.items()},
        {s: round(math.sqrt(low * high)) for s, (low, high) in bounds.items()},
    ]
    names = list(bounds)
    if len(names) <= 4:  # every corner of the range: one symbol large while another is small
        for corner in itertools.product((0, 1), repeat=len(names)):
            samples.append({s: bounds[s][side] for s, side in zip(names, corner, strict=True)})
    rng = np.random.default_rng(seed)
    while len(samples) < count:
        samples.append(
            {
                s: round(math.exp(rng.uniform(math.log(low), math.log(high))))
                for s, (low, high) in bounds.items()
            }
        )
    unique = list({tuple(sorted(b.items())): b for b in samples}.values())
    return unique[: max(count, 1)]


def validation_bindings(
    symbols: Sequence[str], ranges: Mapping[str, tuple[int, int]], count: int, seed: int = 0
) -> list[dict[str, int]]:
    """About `count` bindings to choose plan versions on: every corner of the ranges (up to ten
    symbols) and log-uniform random points drawn apart from the samples' (`seed + 1`)."""
    bounds = {s: ranges.get(s, DEFAULT_RANGE) for s in symbols}
    names = list(bounds)
    corners = []
    if len(names) <= 10:
        for corner in itertools.product((0, 1), repeat=len(names)):
            corners.append({s: bounds[s][side] for s, side in zip(names, corner, strict=True)})
    points = corners + sample_bindings(symbols, ranges, count, seed + 1)
    return list({tuple(sorted(b.items())): b for b in points}.values())


@dataclass
class GraphPlan:
    """The plan of one graph: order, storages, the above-DAGs (versions), and the evaluators of
    sizes (`sizes`: every storage; `static_sizes`: the static ones, from the input symbols alone)."""

    graph: Graph
    liveness: Liveness
    default_liveness: Liveness
    order_result: OrderResult | None
    storages: list[Storage]
    versions: list[list[tuple[int, ...]]]
    dynamic: list[bool]
    subplans: dict[Node, dict[str, GraphPlan]]
    input_symbols: tuple[sympy.Symbol, ...]
    runtime_symbols: tuple[sympy.Symbol, ...]
    dags: AboveDags
    sizes: Evaluator
    static_sizes: Evaluator
    plan_seconds: float
    bounds: Evaluator
    addresses: dict[Tensor, tuple[int, Dim]] = field(default_factory=dict)
    unplanned: list[Storage] = field(default_factory=list)
    """Storages sized by a run-time symbol without a known bound: allocated when produced."""

    # -- symbolic view -----------------------------------------------------------------------

    def placeable(self, storages: Sequence[Storage]) -> list[Storage]:
        """Those of `storages` (of this graph, in any order) whose size this plan can evaluate:
        none of the unbounded run-time symbols that put a storage in `unplanned`."""
        if not self.unplanned:
            return list(storages)
        known = {s.name for s in self.input_symbols} | set(self.bounds.outputs)
        return [s for s in storages if all(f.name in known for f in _free(s.size))]

    @property
    def order(self) -> tuple[Node, ...]:
        """The execution order the plan is for."""
        return self.liveness.order

    def offset_expr(self, index: int, version: int = 0) -> Dim:
        """Storage `index`'s offset in `version` as one sympy expression (from the above-DAG)."""
        memo: dict[int, Dim] = {}
        below = self.versions[version]

        def offset(b: int) -> Dim:
            if b not in memo:
                terms = [offset(a) + self.storages[a].size for a in below[b]]  # type: ignore[operator]
                memo[b] = _max(terms)
            return memo[b]

        return offset(index)

    def arena_expr(self) -> Dim:
        """The arena's size as one sympy expression: the smallest over the versions."""
        arenas = [
            _max([self.offset_expr(b, k) + self.storages[b].size for b in _sinks(below)])  # type: ignore[operator]
            for k, below in enumerate(self.versions)
        ]
        return arenas[0] if len(arenas) == 1 else sympy.Min(*arenas, evaluate=False)

    # -- concrete ----------------------------------------------------------------------------

    def binding_values(self, binding: Mapping[str, int]) -> dict[str, int]:
        """`binding` completed: every input symbol must be bound; an unbound run-time symbol
        takes its upper bound (which keeps the placement valid for any smaller value)."""
        values = {k: int(v) for k, v in binding.items()}
        missing = [s.name for s in self.input_symbols if s.name not in values]
        if missing:
            raise PlanError(
                f"graph {self.graph.name!r}: bind the input symbols {', '.join(missing)} "
                f"(e.g. --bind {missing[0]}=...)"
            )
        unbound = [s.name for s in self.runtime_symbols if s.name not in values]
        if unbound:
            known = dict(zip(self.bounds.outputs, self.bounds(values).tolist(), strict=True))
            for name in unbound:
                if name not in known:
                    raise PlanError(
                        f"run-time symbol {name} has no known bound: bind it (--bind {name}=...)"
                    )
                values[name] = known[name]
        return values

    def instantiate(self, binding: Mapping[str, int]) -> ConcretePlan:
        """Offsets and arena size at `binding` (input symbols; run-time ones optional)."""
        offsets, tops = self.dags.place(self.sizes(self.binding_values(binding)))
        k = _pick_version(tops)
        return ConcretePlan(self, offsets[k], int(tops[k, 0]), k)

    def instantiate_static(self, binding: Mapping[str, int]) -> ConcretePlan:
        """The static storages placed from the input symbols alone (dynamic ones read -1,
        `arena_bytes` covers the static ones); `instantiate` later picks the same version and
        the same static offsets once run-time symbols are known."""
        values = {k: int(v) for k, v in binding.items()}
        offsets, tops = self.dags.place(self.static_sizes(values), static_only=True)
        k = _pick_version(tops)
        return ConcretePlan(self, offsets[k], int(tops[k, 1]), k)


def _pick_version(tops: np.ndarray) -> int:
    """The version with the smallest static arena (a choice the input symbols alone decide),
    then the smallest arena (`tops[k]` is version `k`'s (arena, static arena))."""
    if len(tops) == 1:
        return 0
    return int(np.lexsort((tops[:, 0], tops[:, 1]))[0])


class AboveDags(Rebuilt):
    """The versions' above-DAGs as arrays, placed by one compiled loop (`_longest_paths`).

    For version `k`, `order[k]` lists the storages below-first, and the storages directly below
    storage `b` are `below[indptr[k * count + b] : indptr[k * count + b + 1]]`.
    """

    TRANSIENT = ("_kernel",)

    def __init__(
        self, versions: Sequence[Sequence[tuple[int, ...]]], dynamic: Sequence[bool], backend: str
    ) -> None:
        count = len(dynamic)
        orders = [_topological(below) for below in versions]
        self.order = np.array(orders, dtype=np.int64).reshape(len(versions), count)
        edges = [a for below in versions for parents in below for a in parents]
        degrees = [len(parents) for below in versions for parents in below]
        self.indptr = np.concatenate(([0], np.cumsum(degrees, dtype=np.int64)))
        self.below = np.array(edges, dtype=np.int64)
        self.dynamic = np.array(dynamic, dtype=np.bool_)
        self.backend = backend
        self.rebuild()

    def rebuild(self) -> None:
        """The placement loop: plain Python, or compiled (Numba's disk cache)."""
        self._kernel = _longest_paths if self.backend == "python" else _compiled_longest_paths()

    def place(
        self, size: np.ndarray, *, static_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every version's offsets (rows) for storage sizes `size`, and its (arena, static arena);
        `static_only`: dynamic storages are skipped and read -1."""
        versions, count = self.order.shape
        offsets = np.empty((versions, count), dtype=np.int64)
        tops = np.empty((versions, 2), dtype=np.int64)
        self._kernel(
            size, self.order, self.indptr, self.below, self.dynamic, static_only, offsets, tops
        )
        return offsets, tops


def _longest_paths(
    size: np.ndarray,
    order: np.ndarray,
    indptr: np.ndarray,
    below: np.ndarray,
    dynamic: np.ndarray,
    static_only: bool,
    offsets: np.ndarray,
    tops: np.ndarray,
) -> None:
    """offset(b) = max(0, offset(a) + size(a) for a directly below b), for every version, in
    its below-first order; tops[k] = (max of offset + size, the same over static storages).
    Plain loops over integer arrays: what Numba compiles once for every plan."""
    versions, count = offsets.shape
    for k in range(versions):
        arena = 0
        static = 0
        for i in range(count):
            b = order[k, i]
            if static_only and dynamic[b]:
                offsets[k, b] = -1
                continue
            at = 0
            row = k * count + b
            for e in range(indptr[row], indptr[row + 1]):
                a = below[e]
                at = max(at, offsets[k, a] + size[a])
            offsets[k, b] = at
            arena = max(arena, at + size[b])
            if not dynamic[b]:
                static = max(static, at + size[b])
        tops[k, 0] = arena
        tops[k, 1] = static


@functools.cache
def _compiled_longest_paths() -> Callable[..., None]:
    """`_longest_paths` compiled by Numba (once per machine: `cache=True` keeps the machine code
    on disk)."""
    import numba

    return numba.njit(cache=True, nogil=True)(_longest_paths)


@dataclass
class ConcretePlan:
    """A plan made concrete for one binding."""

    plan: GraphPlan
    offsets: np.ndarray
    arena_bytes: int
    version: int

    def sizes(self, binding: Mapping[str, int]) -> np.ndarray:
        """Each storage's bytes at `binding`."""
        return self.plan.sizes(self.plan.binding_values(binding))

    def address(self, tensor: Tensor, binding: Mapping[str, int]) -> int | None:
        """The byte offset of `tensor`'s data in the arena, or None when it is not planned."""
        located = self.plan.addresses.get(tensor)
        if located is None:
            return None
        index, inner = located
        if isinstance(inner, int):
            return int(self.offsets[index]) + inner
        values = self.plan.binding_values(binding)
        scope = {s.name: s for s in inner.free_symbols}  # type: ignore[union-attr]
        return int(self.offsets[index]) + _evaluate(inner, values, scope)


def bound_program(
    runtime: Sequence[sympy.Symbol], symbols: Mapping[sympy.Symbol, SymbolInfo]
) -> tuple[list[tuple[str, Dim]], list[str]]:
    """Evaluator assignments computing the upper bound of each run-time symbol that has one (the
    largest of its possible values, else its proven upper bound), in dependency order: a bound may
    use input symbols and the bounds of other run-time symbols."""
    expressions: dict[sympy.Symbol, Dim] = {}
    pending = list(runtime)
    while pending:
        symbol = pending.pop()
        if symbol in expressions:
            continue
        info = symbols.get(symbol)
        if info is None or info.origin.from_inputs:
            continue
        bound = (
            info.upper_bound if info.upper_bound is not None else _max(list(info.possible_values))
        )
        if info.upper_bound is None and not info.possible_values:
            continue
        expressions[symbol] = bound
        pending.extend(s for s in _free(bound) if s not in expressions)
    assignments: list[tuple[str, Dim]] = []
    done: set[str] = set()
    while len(done) < len(expressions):
        ready = [
            (s, e)
            for s, e in expressions.items()
            if s.name not in done
            and all(f.name in done or f not in expressions for f in _free(e) if f != s)
        ]
        if not ready:  # circular bounds: leave the rest unbounded
            break
        for symbol, expr in ready:
            assignments.append((symbol.name, _rename(expr, expressions)))
            done.add(symbol.name)
    return assignments, [name for name, _ in assignments]


def _rename(expr: Dim, bounded: Mapping[sympy.Symbol, Dim]) -> Dim:
    """`expr` with bounded run-time symbols replaced by references to their bounds."""
    if isinstance(expr, int):
        return expr
    return expr.xreplace({s: ref(s.name) for s in expr.free_symbols if s in bounded})


def _evaluate(expr: Dim, values: Mapping[str, int], scope: Mapping[str, sympy.Symbol]) -> int:
    if isinstance(expr, int):
        return expr
    return int(expr.subs({scope[name]: values[name] for name in scope if name in values}))


# -- building ----------------------------------------------------------------------------------


@dataclass
class MemoryPlan:
    """The memory plan of a whole model: the top graph's plan with its subgraphs' inside."""

    model: Model
    rdp: RDPResult
    options: PlanOptions
    top: GraphPlan
    samples: list[dict[str, int]]

    def instantiate(self, binding: Mapping[str, int]) -> ConcretePlan:
        """The top graph's plan at `binding`."""
        return self.top.instantiate(binding)


Workspace = Callable[[Node], Dim | None]
"""A step's kernel workspace in bytes, a multiple of ALIGNMENT (a sympy expression over the
symbols), or None for none."""


def plan_memory(
    model: Model,
    rdp: RDPResult | None = None,
    options: PlanOptions | None = None,
    workspace: Workspace | None = None,
) -> MemoryPlan:
    """Plan the memory of `model` once, for every binding of its symbols (module docstring).
    `workspace` sizes each node's kernel scratch (`sod2.backend.scratch`), which the plan then
    places as a storage alive at that node's step only, like a control-flow node's."""
    rdp = rdp or propagate(model)
    options = options or PlanOptions()
    inputs = [s for s in rdp.input_symbols()]
    unknown = sorted(set(options.ranges) - {s.name for s in inputs})
    if unknown:
        raise PlanError(
            f"ranges given for {', '.join(unknown)}, which are not input symbols of the model "
            f"(its input symbols: {', '.join(s.name for s in inputs) or 'none'})"
        )
    for name, (low, high) in options.ranges.items():
        if not 0 <= low <= high:
            raise PlanError(f"symbol {name}: empty range [{low}, {high}]")
    names = [s.name for s in inputs]
    samples = sample_bindings(names, options.ranges, options.samples, options.seed)
    validation = validation_bindings(names, options.ranges, options.validation, options.seed)
    builder = _Builder(rdp, options, samples, validation, workspace)
    return MemoryPlan(model, rdp, options, builder.plan(model.graph), samples)


class _Builder:
    def __init__(
        self,
        rdp: RDPResult,
        options: PlanOptions,
        samples: list[dict[str, int]],
        validation: list[dict[str, int]],
        workspace: Workspace | None = None,
    ) -> None:
        self.rdp = rdp
        self.workspace = workspace
        self.facts: Mapping[Tensor, TensorFact] = rdp.facts
        self.options = options
        self.inputs = tuple(sorted(rdp.input_symbols(), key=lambda s: s.name))
        self.samples = samples
        self.validation = validation
        self.input_names = {s.name for s in self.inputs}

    def plan(self, graph: Graph, branch: bool = False) -> GraphPlan:
        """The plan of `graph`; `branch` when it is an If's branch, whose results the runtime
        places in the If's outputs (so a result may be written over a residual it adds,
        `liveness(results_in_place=True)`, and that residual takes the output's bytes)."""
        began = time.perf_counter()
        subplans: dict[Node, dict[str, GraphPlan]] = {}
        scratch: dict[Node, Dim] = {}
        needs: dict[Node, Dim] = {}
        for node in graph.topological_order():
            if node.subgraphs and not is_fused(node):  # a fused body is never materialized
                is_if = node.op_type == "If" and node.domain in ("", "ai.onnx")
                subplans[node] = {name: self.plan(sub, is_if) for name, sub in node.subgraphs}
                arenas = [p.arena_expr() for p in subplans[node].values()]
                arenas = [a for a in arenas if a != 0]
                if arenas:
                    scratch[node] = _max(arenas)
            elif self.workspace is not None:
                need = self.workspace(node)
                if need is not None and need != 0:
                    needs[node] = need
        views = find_views(graph, self.facts)
        captured = {
            node: over
            for node, plans in subplans.items()
            if (
                over := branch_overwrites(
                    node, {name: p.liveness for name, p in plans.items()}, self.facts
                )
            )
        }
        default = tuple(graph.topological_order())
        order_result = None
        order: tuple[Node, ...] = default
        if self.options.search_order and len(default) > 1:
            order_result, order = self._search(graph, default, {**scratch, **needs}, views)
        scratch.update(needs)
        settings = {
            "scratch": scratch,
            "inplace": self.options.inplace,
            "views": views,
            "results_in_place": branch,
            "captured": captured,
        }
        if self.options.inplace:
            settings["slots"] = self._slots(graph, order, settings)
        lv = liveness(graph, self.facts, order, **settings)  # type: ignore[arg-type]
        default_lv = lv if order == default else liveness(graph, self.facts, default, **settings)  # type: ignore[arg-type]
        storages, unplanned = self._plannable(lv.planned())
        symbols = self._symbols(storages)
        runtime = tuple(s for s in symbols if s.name not in self.input_names)
        dynamic = [bool(_free(s.size) & set(runtime)) for s in storages]
        sizes = self._sample_sizes(storages)
        versions = self._above_dag(lv, storages, sizes, dynamic)
        all_symbols = (*self.inputs, *runtime)
        addresses = {}
        for index, storage in enumerate(storages):
            for tensor in storage.tensors:
                addresses[tensor] = (index, storage.offsets[tensor])
        backend = self.options.evaluator
        plan = GraphPlan(
            graph=graph,
            liveness=lv,
            default_liveness=default_lv,
            order_result=order_result,
            storages=storages,
            versions=versions,
            dynamic=dynamic,
            subplans=subplans,
            input_symbols=self.inputs,
            runtime_symbols=runtime,
            dags=AboveDags(versions, dynamic, backend),
            sizes=size_evaluator(storages, all_symbols, backend=backend),
            static_sizes=size_evaluator(storages, self.inputs, backend=backend, skip=dynamic),
            plan_seconds=0.0,
            bounds=Evaluator(
                self.inputs, *bound_program(runtime, self.rdp.symbols), backend="python"
            ),
            addresses=addresses,
            unplanned=unplanned,
        )
        plan.plan_seconds = time.perf_counter() - began
        return plan

    def _slots(
        self, graph: Graph, order: Sequence[Node], settings: Mapping[str, object]
    ) -> dict[Tensor, tuple[Tensor, Dim]]:
        """The Concat inputs computed in their place (`concat_slots`), chain by chain (a chain
        is the inputs of one root): a chain stays only where it lowers the order's peak (the
        sum over the sample bindings of the most bytes alive at one step). In place, a chain's
        whole output is alive from its first input on, which costs where that input is made
        at a step that was the peak already."""
        slots = concat_slots(graph, self.facts, settings["views"])  # type: ignore[arg-type]
        if not slots:
            return slots
        roots = list(dict.fromkeys(root for root, _ in slots.values()))

        def peak(kept: set[Tensor]) -> int:
            chosen = {t: slot for t, slot in slots.items() if slot[0] in kept}
            return self._peak(liveness(graph, self.facts, order, **{**settings, "slots": chosen}))  # type: ignore[arg-type]

        kept = set(roots)
        best = peak(kept)
        for root in roots:
            score = peak(kept - {root})
            if score < best:
                kept.discard(root)
                best = score
        return {t: slot for t, slot in slots.items() if slot[0] in kept}

    def _peak(self, lv: Liveness) -> int:
        """The sum over the sample bindings of the most bytes alive at one step of `lv`."""
        storages, _ = self._plannable(lv.planned())
        if not storages:
            return 0
        sizes = self._sample_sizes(storages)
        start = np.array([max(s.start, 0) for s in storages], dtype=np.int64)
        end = np.array([s.end for s in storages], dtype=np.int64)
        steps = int(end.max()) + 1
        return int(placement.live_bytes(start, end, sizes, steps).max(axis=0).sum())

    def _plannable(self, storages: Sequence[Storage]) -> tuple[list[Storage], list[Storage]]:
        """`storages` split into those the plan can place and those sized by a run-time symbol
        with no known bound (left to be allocated when produced)."""
        runtime = [s for s in self._symbols(storages) if s.name not in self.input_names]
        bounded = set(bound_program(runtime, self.rdp.symbols)[1])
        unbounded = {s for s in runtime if s.name not in bounded}
        if not unbounded:
            return list(storages), []
        placed = [s for s in storages if not (_free(s.size) & unbounded)]
        return placed, [s for s in storages if _free(s.size) & unbounded]

    def _symbols(self, storages: Sequence[Storage]) -> list[sympy.Symbol]:
        found: set[sympy.Symbol] = set()
        for storage in storages:
            found |= _free(storage.size)
        return sorted(found, key=lambda s: s.name)

    def _sample_sizes(
        self, storages: Sequence[Storage], bindings: Sequence[Mapping[str, int]] | None = None
    ) -> np.ndarray:
        """Bytes of each storage (rows) at each binding (columns; default: the samples);
        run-time symbols at their upper bounds."""
        symbols = self._symbols(storages)
        runtime = [s for s in symbols if s.name not in self.input_names]
        sizes = size_evaluator(storages, (*self.inputs, *runtime))
        bounds = Evaluator(self.inputs, *bound_program(runtime, self.rdp.symbols), backend="python")
        columns = []
        for sample in self.samples if bindings is None else bindings:
            values = dict(sample)
            values.update(zip(bounds.outputs, bounds(sample).tolist(), strict=True))
            missing = [s.name for s in runtime if s.name not in values]
            if missing:
                raise PlanError(f"run-time symbols {', '.join(missing)} have no known bound")
            columns.append(sizes(values))
        return np.stack(columns, axis=1) if columns else np.zeros((len(storages), 0), np.int64)

    # -- SEP ---------------------------------------------------------------------------------

    def _search(
        self,
        graph: Graph,
        default: tuple[Node, ...],
        scratch: Mapping[Node, Dim],
        views: Mapping[Tensor, object],
    ) -> tuple[OrderResult, tuple[Node, ...]]:
        lv = liveness(graph, self.facts, default, scratch=scratch, inplace=False, views=views)  # type: ignore[arg-type]
        storages, _ = self._plannable(lv.planned())
        problem = schedule_problem(lv, self._sample_sizes(storages), storages)
        result = plan_order(problem, time_limit_s=self.options.time_limit_s)
        return result, tuple(default[i] for i in result.order)

    # -- DMP ---------------------------------------------------------------------------------

    def _above_dag(
        self, lv: Liveness, storages: Sequence[Storage], sizes: np.ndarray, dynamic: Sequence[bool]
    ) -> list[list[tuple[int, ...]]]:
        """Above-DAGs (versions) whose best arena stays close to greedy-by-size at every
        validation binding (module docstring); `sizes` are the storages' at the samples."""
        if not storages:
            return [[]]
        budget = max(256, VALIDATION_SIZES // len(storages))  # a huge graph: fewer bindings
        validation = self._sample_sizes(storages, self.validation[:budget])
        # bindings that give every storage the same size are one column (a model whose shapes
        # are fixed, dynamic only through control flow, has a single one)
        columns, inverse = np.unique(
            np.concatenate([sizes, validation], axis=1), axis=1, return_inverse=True
        )
        search = _VersionSearch(
            np.array([s.start for s in storages], dtype=np.int64),
            np.array([s.end for s in storages], dtype=np.int64),
            np.array(dynamic, dtype=bool),
            columns,
        )
        for k in dict.fromkeys(np.ravel(inverse)[: sizes.shape[1]].tolist()):
            search.add_candidate(k)
        return search.run(self.options.versions, rounds=2 * self.options.versions)


VALIDATION_SIZES = 1 << 22
"""At most about this many storage sizes (storages x validation bindings) are compared."""


class _VersionSearch:
    """Candidates and the choice of versions over bindings (the columns of `sizes`).

    `reference[k]` is greedy-by-size's arena at binding `k` where `exact[k]`, else the order's
    peak there (a lower bound of greedy's): ratios against it never understate."""

    def __init__(
        self, start: np.ndarray, end: np.ndarray, dynamic: np.ndarray, sizes: np.ndarray
    ) -> None:
        self.start, self.end, self.dynamic, self.sizes = start, end, dynamic, sizes
        steps = int(end.max()) + 1
        self.reference = placement.live_bytes(start, end, sizes, steps).max(axis=0)
        self.exact = np.zeros(sizes.shape[1], dtype=bool)
        self.candidates: list[list[tuple[int, ...]]] = []
        self.arenas: list[np.ndarray] = []
        self.sources: set[int] = set()

    def add_candidate(self, k: int) -> None:
        """Greedy's placement at binding `k`, oriented, as one more candidate."""
        size = self.sizes[:, k]
        offsets = _greedy_static_first(self.start, self.end, size, self.dynamic)
        self.candidates.append(_orient(self.start, self.end, size, offsets, self.dynamic))
        self.arenas.append(_arenas(self.candidates[-1], self.sizes))
        self.sources.add(k)
        self._tighten([k])

    def run(self, limit: int, rounds: int) -> list[list[tuple[int, ...]]]:
        """The chosen versions, after up to `rounds` candidates added where they serve worst."""
        ratios, chosen = self._choose(limit)
        for _ in range(rounds):
            target = _next_source(ratios, chosen, self.sources)
            if target is None:
                break
            self.add_candidate(target)
            ratios, chosen = self._choose(limit)
        return [self.candidates[k] for k in chosen]

    def _choose(self, limit: int) -> tuple[np.ndarray, list[int]]:
        """The candidates' ratios and the chosen versions, once no ratio above the target rests
        on the peak bound alone."""
        while True:
            ratios = np.array(self.arenas) / np.maximum(self.reference, 1)
            chosen = _choose_versions(ratios, limit)
            loose = (ratios[chosen].min(axis=0) > VALIDATION_TARGET) & ~self.exact
            if not loose.any():
                return ratios, chosen
            self._tighten(np.flatnonzero(loose).tolist())

    def _tighten(self, bindings: Sequence[int]) -> None:
        """Greedy-by-size's arena as the reference at `bindings`."""
        for k in bindings:
            if not self.exact[k]:
                size = self.sizes[:, k]
                greedy = placement.greedy_by_size(self.start, self.end, size)
                self.reference[k] = placement.arena_size(greedy, size)
                self.exact[k] = True


def _next_source(ratios: np.ndarray, chosen: Sequence[int], sources: set[int]) -> int | None:
    """The binding a new candidate should come from: the worst served by any candidate, else
    the worst served by the chosen versions, above the target and not a source yet."""
    for served in (ratios.min(axis=0), ratios[list(chosen)].min(axis=0)):
        for k in np.argsort(-served, kind="stable").tolist():
            if served[k] <= VALIDATION_TARGET:
                break
            if k not in sources:
                return k
    return None


def _choose_versions(ratios: np.ndarray, limit: int) -> list[int]:
    """Up to `limit` candidates (rows) whose best at every binding (column) is closest to 1: the
    candidate with the lowest worst ratio first, then whichever lowers the total excess over
    `VALIDATION_TARGET` most (greedy cover), while one does."""
    chosen = [int(np.argmin(ratios.max(axis=1)))]
    best = ratios[chosen[0]]
    while len(chosen) < limit and best.max() > VALIDATION_TARGET:
        combined = np.minimum(ratios, best)
        excess = np.maximum(combined - VALIDATION_TARGET, 0).sum(axis=1)
        k = int(np.argmin(excess))
        if excess[k] >= np.maximum(best - VALIDATION_TARGET, 0).sum() - 1e-12:
            break
        chosen.append(k)
        best = combined[k]
    return chosen


def _greedy_static_first(
    start: np.ndarray, end: np.ndarray, size: np.ndarray, dynamic: np.ndarray
) -> np.ndarray:
    """Greedy-by-size with every static storage placed before (and below) every dynamic one."""
    order = np.lexsort((np.arange(len(size)), -size, dynamic))
    offsets = np.zeros(len(size), dtype=np.int64)
    floor = np.zeros(len(size), dtype=np.int64)
    static_offsets = placement.greedy_by_size(start, end, size, order=order[~dynamic[order]])
    offsets[~dynamic] = static_offsets[~dynamic]
    if dynamic.any():
        for b in np.flatnonzero(dynamic):
            mask = ~dynamic & placement.conflicts(start, end, b)
            floor[b] = int((offsets[mask] + size[mask]).max()) if mask.any() else 0
        placed = placement.greedy_by_size(start, end, size, floor=floor, order=order)
        offsets[dynamic] = placed[dynamic]
    return offsets


def _orient(
    start: np.ndarray, end: np.ndarray, size: np.ndarray, offsets: np.ndarray, dynamic: np.ndarray
) -> list[tuple[int, ...]]:
    """For each storage, the conflicting storages directly below it (transitive edges dropped)."""
    count = len(size)
    rank = np.lexsort((np.arange(count), offsets + size, offsets, dynamic)).astype(np.int64)
    counts, parents = _orient_loop(
        np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64), rank
    )
    bounds = np.concatenate(([0], np.cumsum(counts))).tolist()
    flat = parents.tolist()
    return [tuple(flat[bounds[b] : bounds[b + 1]]) for b in range(count)]


@numba.njit(cache=True)
def _orient_loop(start, end, rank):  # type: ignore[no-untyped-def]
    """`_orient`'s loop over storages in `rank` order (static first, then by offset): a storage's
    direct parents are the conflicting ones ranked below it that no higher one already implies
    (scanned from the highest down). Ancestor sets are bit rows of 64-bit words. Returns each
    storage's parent count and the parents (ascending) back to back, in storage order."""
    count = len(rank)
    words = (count + 63) // 64
    ancestors = np.zeros((count, words), dtype=np.uint64)
    direct = np.zeros(count, dtype=np.int64)
    starts = np.zeros(count, dtype=np.int64)  # each storage's first parent in `found`
    counts = np.zeros(count, dtype=np.int64)
    found = np.empty(max(count, 1), dtype=np.int64)
    used = 0
    one = np.uint64(1)
    for r in range(count):
        b = rank[r]
        implied = ancestors[b]
        n_direct = 0
        for q in range(r - 1, -1, -1):
            a = rank[q]
            if start[a] > end[b] or end[a] < start[b]:
                continue
            if (implied[a // 64] >> np.uint64(a % 64)) & one:
                continue
            direct[n_direct] = a
            n_direct += 1
            for w in range(words):
                implied[w] |= ancestors[a, w]
        for i in range(n_direct):
            a = direct[i]
            implied[a // 64] |= one << np.uint64(a % 64)
        if used + n_direct > len(found):
            grown = np.empty(max(2 * len(found), used + n_direct), dtype=np.int64)
            grown[:used] = found[:used]
            found = grown
        block = np.sort(direct[:n_direct])
        found[used : used + n_direct] = block
        starts[b] = used
        counts[b] = n_direct
        used += n_direct
    parents = np.empty(used, dtype=np.int64)
    at = 0
    for b in range(count):
        parents[at : at + counts[b]] = found[starts[b] : starts[b] + counts[b]]
        at += counts[b]
    return counts, parents


def _arenas(below: Sequence[tuple[int, ...]], sizes: np.ndarray) -> np.ndarray:
    """The arena of an above-DAG at every sample (longest paths, numerically)."""
    count = len(below)
    offsets = np.zeros_like(sizes)
    for b in _topological(below):
        if below[b]:
            parents = list(below[b])
            offsets[b] = (offsets[parents] + sizes[parents]).max(axis=0)
    return (offsets + sizes).max(axis=0) if count else np.zeros(sizes.shape[1], dtype=np.int64)


def _topological(below: Sequence[tuple[int, ...]]) -> list[int]:
    """Storages ordered so that each comes after those below it."""
    done: set[int] = set()
    order: list[int] = []
    for root in range(len(below)):
        stack = [(root, False)]
        while stack:
            b, expanded = stack.pop()
            if b in done:
                continue
            if expanded:
                done.add(b)
                order.append(b)
                continue
            stack.append((b, True))
            stack.extend((a, False) for a in below[b] if a not in done)
    return order


PYTHON_SIZE_STATEMENTS = 1000
"""Size programs up to this many statements run as plain Python under the "auto" backend: about
65 µs at most, no compile; a longer one is compiled with Numba (and cached on disk)."""


def size_evaluator(
    storages: Sequence[Storage],
    symbols: Sequence[sympy.Symbol] | None = None,
    *,
    backend: str = "python",
    skip: Sequence[bool] | None = None,
) -> Evaluator:
    """An evaluator of every storage's size in bytes; `symbols` defaults to those the sizes use;
    storages marked in `skip` read 0 (the dynamic ones, when only input symbols are bound)."""
    if symbols is None:
        found = set().union(*(_free(s.size) for s in storages)) if storages else set()
        symbols = sorted(found, key=lambda s: s.name)
    keep = [not (skip and skip[i]) for i in range(len(storages))]
    assignments: list[tuple[str, Dim]] = [("zero", 0)]
    assignments += [(f"z{i}", s.size) for i, s in enumerate(storages) if keep[i]]  # type: ignore[misc]
    names = [f"z{i}" if keep[i] else "zero" for i in range(len(storages))]
    return Evaluator(
        symbols, assignments, names, backend=backend, numba_above=PYTHON_SIZE_STATEMENTS
    )  # type: ignore[arg-type]


def _max(terms: Sequence[Dim]) -> Dim:
    """Max of `terms` (0 for none), unevaluated: sympy's simplification of Max compares every
    pair of arguments, which costs seconds on a plan and gains nothing the evaluator needs."""
    if not terms:
        return 0
    return terms[0] if len(terms) == 1 else sympy.Max(*terms, evaluate=False)


def _sinks(below: Sequence[tuple[int, ...]]) -> list[int]:
    """Storages with nothing above them: the arena's size is the Max of their tops."""
    covered = {a for parents in below for a in parents}
    return [b for b in range(len(below)) if b not in covered]


def _free(size: Dim | None) -> set[sympy.Symbol]:
    return set() if size is None or isinstance(size, int) else size.free_symbols  # type: ignore[return-value]


def schedule_problem(
    lv: Liveness, samples: np.ndarray, storages: Sequence[Storage] | None = None
) -> ScheduleProblem:
    """The order-search problem of `lv`'s graph: its nodes in `lv.order`, its planned storages
    (or `storages`, a subset of them) as buffers (allocated at their first step, freed after their
    last reader)."""
    step = {node: index for index, node in enumerate(lv.order)}
    preds = tuple(
        tuple(sorted({step[p] for p in lv.graph.predecessors(node)})) for node in lv.order
    )
    storages = lv.planned() if storages is None else storages
    return ScheduleProblem(
        names=tuple(node.name for node in lv.order),
        preds=preds,
        sizes=tuple(s.size for s in storages),  # type: ignore[misc]
        producer=tuple(s.start for s in storages),
        readers=tuple(tuple(r for r in lv.readers(s) if r != s.start) for s in storages),
        samples=samples,
    )
