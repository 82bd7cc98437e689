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
bindings spread over the symbols' ranges, TFLite's greedy-by-size places the storages; each
placement orients every conflicting pair (lower offset below); the candidate whose arena stays
closest to a from-scratch greedy plan at *all* samples wins. Redundant edges (implied by a longer
path) are dropped, so each offset is a Max of a few terms.

Instantiation evaluates those expressions with generated straight-line code
(`sod2.opt.evaluator`): microseconds, not a re-plan.

Sizes that depend on symbols known only while running (EDO outputs such as a NonZero count, a
branch's result) make a storage *dynamic*. Dynamic storages are always placed above the static
ones they conflict with, so static offsets never depend on run-time symbols: `instantiate` with
the input symbols alone places every static storage; the dynamic ones are placed once their symbols
are bound, with the same expressions, without re-planning the rest. Without their value, a
dynamic symbol takes its proven upper bound (sizes and offsets grow monotonically with it, so the
placement stays valid for any smaller value).

The order is chosen first (SEP, `sod2.opt.ordering`), then the storages of that order are built
(views, in-place) and placed. Subgraphs (If branches, Loop and Scan bodies) get plans of their own;
their arena is the control-flow node's scratch storage, alive at its step only (an If's is the Max
of its branches').
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from sod2.analysis.facts import SymbolInfo, TensorFact
from sod2.analysis.liveness import Liveness, Storage, find_views, liveness
from sod2.analysis.rdp import RDPResult, propagate
from sod2.errors import Sod2Error
from sod2.ir.dims import Dim
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.opt import placement
from sod2.opt.evaluator import Evaluator, ref
from sod2.opt.ordering import OrderResult, ScheduleProblem, plan_order

DEFAULT_RANGE = (1, 1024)
"""The range assumed for an input symbol no range is given for."""


class PlanError(Sod2Error):
    """A memory plan could not be built or instantiated (names the symbol or tensor at fault)."""


@dataclass(frozen=True)
class PlanOptions:
    """How to plan: symbol ranges (default `DEFAULT_RANGE`), whether to search the order, apply
    in-place, how many sample bindings and plan versions at most, the evaluator backend."""

    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    search_order: bool = True
    inplace: bool = True
    samples: int = 48
    versions: int = 8
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


@dataclass
class GraphPlan:
    """The plan of one graph: order, storages, the above-DAG, and its evaluators."""

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
    evaluator: Evaluator
    static_evaluator: Evaluator
    sizes: Evaluator
    plan_seconds: float
    bounds: Evaluator
    addresses: dict[Tensor, tuple[int, Dim]] = field(default_factory=dict)

    # -- symbolic view -----------------------------------------------------------------------

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
        rows = self.evaluator(self.binding_values(binding)).reshape(len(self.versions), -1)
        k = _pick_version(rows)
        return ConcretePlan(self, rows[k, :-2], int(rows[k, -2]), k)

    def instantiate_static(self, binding: Mapping[str, int]) -> ConcretePlan:
        """The static storages placed from the input symbols alone (dynamic ones read -1,
        `arena_bytes` covers the static ones); `instantiate` later picks the same version and
        the same static offsets once run-time symbols are known."""
        values = {k: int(v) for k, v in binding.items()}
        rows = self.static_evaluator(values).reshape(len(self.versions), -1)
        k = _pick_version(rows)
        return ConcretePlan(self, rows[k, :-2], int(rows[k, -2]), k)


def _pick_version(rows: np.ndarray) -> int:
    """The version with the smallest static arena (a choice the input symbols alone decide),
    then the smallest arena."""
    if len(rows) == 1:
        return 0
    return int(np.lexsort((rows[:, -2], rows[:, -1]))[0])


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


def plan_memory(
    model: Model, rdp: RDPResult | None = None, options: PlanOptions | None = None
) -> MemoryPlan:
    """Plan the memory of `model` once, for every binding of its symbols (module docstring)."""
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
    samples = sample_bindings(
        [s.name for s in inputs], options.ranges, options.samples, options.seed
    )
    builder = _Builder(rdp, options, samples)
    return MemoryPlan(model, rdp, options, builder.plan(model.graph), samples)


class _Builder:
    def __init__(self, rdp: RDPResult, options: PlanOptions, samples: list[dict[str, int]]) -> None:
        self.rdp = rdp
        self.facts: Mapping[Tensor, TensorFact] = rdp.facts
        self.options = options
        self.inputs = tuple(sorted(rdp.input_symbols(), key=lambda s: s.name))
        self.samples = samples
        self.input_names = {s.name for s in self.inputs}

    def plan(self, graph: Graph) -> GraphPlan:
        began = time.perf_counter()
        subplans: dict[Node, dict[str, GraphPlan]] = {}
        scratch: dict[Node, Dim] = {}
        for node in graph.topological_order():
            if node.subgraphs:
                subplans[node] = {name: self.plan(sub) for name, sub in node.subgraphs}
                arenas = [p.arena_expr() for p in subplans[node].values()]
                arenas = [a for a in arenas if a != 0]
                if arenas:
                    scratch[node] = _max(arenas)
        views = find_views(graph, self.facts)
        default = tuple(graph.topological_order())
        order_result = None
        order: tuple[Node, ...] = default
        if self.options.search_order and len(default) > 1:
            order_result, order = self._search(graph, default, scratch, views)
        lv = liveness(
            graph, self.facts, order, scratch=scratch, inplace=self.options.inplace, views=views
        )
        default_lv = (
            lv
            if order == default
            else liveness(
                graph,
                self.facts,
                default,
                scratch=scratch,
                inplace=self.options.inplace,
                views=views,
            )
        )
        storages = lv.planned()
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
        assignments, outputs = _program(storages, versions, dynamic)
        static_assign, static_out = _program(storages, versions, dynamic, static_only=True)
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
            evaluator=Evaluator(all_symbols, assignments, outputs, backend=self.options.evaluator),
            static_evaluator=Evaluator(
                self.inputs, static_assign, static_out, backend=self.options.evaluator
            ),
            sizes=size_evaluator(storages, all_symbols),
            plan_seconds=0.0,
            bounds=Evaluator(
                self.inputs, *bound_program(runtime, self.rdp.symbols), backend="python"
            ),
            addresses=addresses,
        )
        plan.plan_seconds = time.perf_counter() - began
        return plan

    def _symbols(self, storages: Sequence[Storage]) -> list[sympy.Symbol]:
        found: set[sympy.Symbol] = set()
        for storage in storages:
            found |= _free(storage.size)
        return sorted(found, key=lambda s: s.name)

    def _sample_sizes(self, storages: Sequence[Storage]) -> np.ndarray:
        """Bytes of each storage (rows) at each sample binding (columns); run-time symbols at
        their upper bounds."""
        symbols = self._symbols(storages)
        runtime = [s for s in symbols if s.name not in self.input_names]
        sizes = size_evaluator(storages, (*self.inputs, *runtime))
        bounds = Evaluator(self.inputs, *bound_program(runtime, self.rdp.symbols), backend="python")
        columns = []
        for sample in self.samples:
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
        problem = schedule_problem(lv, self._sample_sizes(lv.planned()))
        result = plan_order(problem, time_limit_s=self.options.time_limit_s)
        return result, tuple(default[i] for i in result.order)

    # -- DMP ---------------------------------------------------------------------------------

    def _above_dag(
        self, lv: Liveness, storages: Sequence[Storage], sizes: np.ndarray, dynamic: Sequence[bool]
    ) -> list[list[tuple[int, ...]]]:
        """Above-DAGs (versions) whose best offsets stay closest to greedy-by-size at every sample:
        one candidate per sample (greedy's placement there, oriented), a few kept."""
        count = len(storages)
        if count == 0:
            return [[]]
        start = np.array([s.start for s in storages], dtype=np.int64)
        end = np.array([s.end for s in storages], dtype=np.int64)
        is_dynamic = np.array(dynamic, dtype=bool)
        greedy = np.array(
            [
                placement.arena_size(placement.greedy_by_size(start, end, sizes[:, k]), sizes[:, k])
                for k in range(sizes.shape[1])
            ]
        )
        candidates = []
        for k in range(sizes.shape[1]):
            offsets = _greedy_static_first(start, end, sizes[:, k], is_dynamic)
            candidates.append(_orient(start, end, sizes[:, k], offsets, is_dynamic))
        ratios = np.array([_arenas(c, sizes) / np.maximum(greedy, 1) for c in candidates])
        return [candidates[k] for k in _choose_versions(ratios, self.options.versions)]


def _choose_versions(ratios: np.ndarray, limit: int) -> list[int]:
    """Up to `limit` candidates (rows) whose best at every sample (column) is closest to 1: the
    best single candidate first, then whichever lowers the worst sample most (greedy cover)."""
    chosen = [int(np.argmin(ratios.max(axis=1)))]
    best = ratios[chosen[0]]
    while len(chosen) < limit and best.max() > 1.005:
        combined = np.minimum(ratios, best)
        k = int(np.argmin(combined.max(axis=1)))
        if combined[k].max() >= best.max() - 1e-9:
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
    rank = sorted(
        range(count),
        key=lambda b: (bool(dynamic[b]), int(offsets[b]), int(offsets[b] + size[b]), b),
    )
    position = np.empty(count, dtype=np.int64)
    position[rank] = np.arange(count)
    ancestors = [0] * count
    below: list[tuple[int, ...]] = [()] * count
    for b in rank:
        mask = placement.conflicts(start, end, b) & (position < position[b])
        candidates = sorted(np.flatnonzero(mask).tolist(), key=lambda a: -int(position[a]))
        implied = 0
        direct = []
        for a in candidates:  # highest first: a lower one is often implied by a higher one
            if not (implied >> a) & 1:
                direct.append(a)
                implied |= ancestors[a]
        ancestors[b] = implied | sum(1 << a for a in direct)
        below[b] = tuple(sorted(direct))
    return below


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


def _program(
    storages: Sequence[Storage],
    versions: Sequence[Sequence[tuple[int, ...]]],
    dynamic: Sequence[bool],
    *,
    static_only: bool = False,
) -> tuple[list[tuple[str, Dim]], list[str]]:
    """Evaluator assignments and outputs: per version, every storage's offset (longest path in
    the above-DAG), the arena, and the static storages' arena (`static_only`: dynamic storages
    read -1 and the arena is the static one)."""
    count = len(storages)
    keep = [not (static_only and dynamic[b]) for b in range(count)]
    assignments: list[tuple[str, Dim]] = [("missing", -1)]
    assignments += [(f"z{b}", storages[b].size) for b in range(count) if keep[b]]  # type: ignore[misc]
    outputs: list[str] = []
    static = [b for b in range(count) if not dynamic[b]]
    for k, below in enumerate(versions):
        for b in _topological(below):
            if keep[b]:
                terms = [ref(f"v{k}o{a}") + ref(f"z{a}") for a in below[b]]
                assignments.append((f"v{k}o{b}", _max(terms)))
        static_below = [tuple(a for a in below[b] if not dynamic[a]) for b in range(count)]
        tops = [ref(f"v{k}o{b}") + ref(f"z{b}") for b in _sinks(static_below) if b in static]
        assignments.append((f"v{k}static", _max(tops)))
        tops = [ref(f"v{k}o{b}") + ref(f"z{b}") for b in _sinks(below)]
        assignments.append((f"v{k}arena", f"v{k}static" if static_only else _max(tops)))
        outputs += [f"v{k}o{b}" if keep[b] else "missing" for b in range(count)]
        outputs += [f"v{k}arena", f"v{k}static"]
    return assignments, outputs


def size_evaluator(
    storages: Sequence[Storage], symbols: Sequence[sympy.Symbol] | None = None
) -> Evaluator:
    """An evaluator of every storage's size (for reports and samples; plain Python); `symbols`
    defaults to those the sizes use."""
    if symbols is None:
        found = set().union(*(_free(s.size) for s in storages)) if storages else set()
        symbols = sorted(found, key=lambda s: s.name)
    names = [f"z{i}" for i in range(len(storages))]
    return Evaluator(
        symbols,
        [(n, s.size) for n, s in zip(names, storages, strict=True)],
        names,
        backend="python",
    )  # type: ignore[misc]


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


def schedule_problem(lv: Liveness, samples: np.ndarray) -> ScheduleProblem:
    """The order-search problem of `lv`'s graph: its nodes in `lv.order`, its planned storages as
    buffers (allocated at their first step, freed after their last reader)."""
    step = {node: index for index, node in enumerate(lv.order)}
    preds = tuple(
        tuple(sorted({step[p] for p in lv.graph.predecessors(node)})) for node in lv.order
    )
    storages = lv.planned()
    return ScheduleProblem(
        names=tuple(node.name for node in lv.order),
        preds=preds,
        sizes=tuple(s.size for s in storages),  # type: ignore[misc]
        producer=tuple(s.start for s in storages),
        readers=tuple(tuple(r for r in lv.readers(s) if r != s.start) for s in storages),
        samples=samples,
    )
