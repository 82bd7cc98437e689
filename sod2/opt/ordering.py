"""SEP, execution-order planning: a topological order that lowers the peak of live bytes.

The problem, free of the IR (`ScheduleProblem`): nodes `0..n-1` in the model's own order, their
dependencies, and buffers with a producer and readers. Memory model: while node `v` runs, the live
bytes are every buffer produced earlier and not yet freed, plus the buffers `v` produces (its
inputs are still live while it writes its outputs). After `v`, each buffer whose readers have all
run is freed (a buffer without readers right after its producer). An order's peak is the largest
step. Sizes are symbolic, so they are given both as expressions and at a few sample bindings.

Serenity's observation (Ahn et al., MLSys 2020) makes an exact search possible: the bytes alive
after a *set* of nodes has run depend only on the set, not on the order within it. A dynamic
program over scheduled sets keeps, for each set, the lowest peak reached so far; two orders that
reach the same set are merged, which prunes most of the n! orders. Two more ideas keep it small:

- cut nodes: a node that every other node precedes or follows (in any order, everything before it
  has run and nothing after it has). Graphs are chains of segments between cut nodes (a transformer
  block, a residual stage), each solved on its own: the bytes alive when a segment starts are the
  same for every order of the earlier ones, so the peak is the largest segment peak;
- bounds: a set whose peak already reaches the best order known (a greedy heuristic's) is dropped.

A segment whose search would exceed `state_limit` sets (or the time limit) keeps the best of the
heuristic orders. Across samples, a segment's new order is taken only when it is no worse than the
model's own order at *every* sample, so the result is never worse than the default anywhere in the
sampled range; `proof` says whether that was also proven on the symbolic sizes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from sod2.errors import Sod2Error


class ScheduleError(Sod2Error):
    """A schedule problem is malformed (names the node or buffer at fault)."""


@dataclass(frozen=True)
class ScheduleProblem:
    """Which order to run a graph's nodes in, to lower the peak of live bytes."""

    names: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]
    sizes: tuple[sympy.Expr | int, ...]
    producer: tuple[int, ...]
    readers: tuple[tuple[int, ...], ...]
    samples: np.ndarray

    def __post_init__(self) -> None:
        n, count = len(self.names), len(self.sizes)
        if len(self.preds) != n:
            raise ScheduleError(f"{len(self.preds)} predecessor lists for {n} nodes")
        if len(self.producer) != count or len(self.readers) != count:
            raise ScheduleError("sizes, producer and readers must have one entry per buffer")
        if self.samples.ndim != 2 or self.samples.shape[0] != count:
            raise ScheduleError(f"samples must have shape ({count}, S), not {self.samples.shape}")
        for node, preds in enumerate(self.preds):
            for p in preds:
                if not 0 <= p < node:
                    raise ScheduleError(
                        f"node {self.names[node]!r} depends on node {p}, which is not before it"
                    )
        for b, (producer, readers) in enumerate(zip(self.producer, self.readers, strict=True)):
            if not 0 <= producer < n:
                raise ScheduleError(f"buffer {b}: producer {producer} is not a node")
            late = [r for r in readers if not producer < r < n]
            if late:
                raise ScheduleError(
                    f"buffer {b} (made by {self.names[producer]!r}) is read by node {late[0]}, "
                    "which does not come after its producer"
                )

    @property
    def count(self) -> int:
        """Number of nodes."""
        return len(self.names)


@dataclass(frozen=True)
class OrderResult:
    """The chosen order and what it gains."""

    order: tuple[int, ...]
    peaks: np.ndarray
    default_peaks: np.ndarray
    exact: bool
    proof: str
    segments: int
    exact_segments: int
    seconds: float


def is_topological(problem: ScheduleProblem, order: Sequence[int]) -> bool:
    """True when `order` runs every node once, each after its predecessors."""
    if sorted(order) != list(range(problem.count)):
        return False
    position = {v: i for i, v in enumerate(order)}
    return all(position[p] < position[v] for v in order for p in problem.preds[v])


def _lifetimes(problem: ScheduleProblem, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    position = np.empty(problem.count, dtype=np.int64)
    position[list(order)] = np.arange(problem.count)
    start = position[list(problem.producer)] if problem.producer else np.zeros(0, np.int64)
    end = np.array(
        [
            max((position[r] for r in readers), default=s)
            for readers, s in zip(problem.readers, start, strict=True)
        ],
        dtype=np.int64,
    )
    return start, end


def step_bytes(problem: ScheduleProblem, order: Sequence[int]) -> np.ndarray:
    """Live bytes during each step of `order` at every sample, shape (n, S)."""
    n, samples = problem.count, problem.samples.shape[1]
    if len(problem.sizes) == 0:
        return np.zeros((n, samples), dtype=np.int64)
    start, end = _lifetimes(problem, order)
    delta = np.zeros((n + 1, samples), dtype=np.int64)
    np.add.at(delta, start, problem.samples)
    np.add.at(delta, end + 1, -problem.samples)
    return np.cumsum(delta, axis=0)[:n]


def peak_bytes(problem: ScheduleProblem, order: Sequence[int]) -> np.ndarray:
    """The peak of `order` at every sample, shape (S,)."""
    steps = step_bytes(problem, order)
    return steps.max(axis=0) if len(steps) else np.zeros(problem.samples.shape[1], np.int64)


def _step_sums(problem: ScheduleProblem, order: Sequence[int]) -> list[sympy.Expr]:
    start, end = _lifetimes(problem, order)
    sums: dict[sympy.Expr, None] = {}
    for step in range(problem.count):
        alive = np.flatnonzero((start <= step) & (end >= step))
        sums[sympy.expand(sum((problem.sizes[b] for b in alive), sympy.Integer(0)))] = None
    return list(sums)


def peak_expr(problem: ScheduleProblem, order: Sequence[int]) -> sympy.Expr:
    """The symbolic peak of `order`: Max over its distinct step sums, dominated ones dropped."""
    sums = _step_sums(problem, order)
    kept = [s for s in sums if not any(t is not s and _dominates(t, s) for t in sums)]
    return sympy.Max(*kept) if kept else sympy.Integer(0)


def _dominates(big: sympy.Expr, small: sympy.Expr) -> bool:
    """True only when `big - small >= 0` for every binding of the positive symbols: after
    expansion, every monomial is a product of symbols with a nonnegative coefficient."""
    difference = sympy.expand(big - small)
    if difference == 0:
        return True
    for term, coefficient in difference.as_coefficients_dict().items():
        if coefficient < 0:
            return False
        if term != 1 and not all(
            f.is_Symbol or (f.is_Pow and f.base.is_Symbol) for f in sympy.Mul.make_args(term)
        ):
            return False
    return True


# -- the search --------------------------------------------------------------------------------


class _Graph:
    """Per-node facts the search needs, at one vector of sample sizes."""

    def __init__(self, problem: ScheduleProblem) -> None:
        n = problem.count
        self.problem = problem
        self.succs: list[list[int]] = [[] for _ in range(n)]
        for v, preds in enumerate(problem.preds):
            for p in preds:
                self.succs[p].append(v)
        self.produces: list[list[int]] = [[] for _ in range(n)]
        self.reads: list[list[int]] = [[] for _ in range(n)]
        for b, producer in enumerate(problem.producer):
            self.produces[producer].append(b)
            for r in set(problem.readers[b]):
                self.reads[r].append(b)

    def segments(self) -> list[list[int]]:
        """Consecutive runs of nodes ending at each cut node (the last may end without one)."""
        n = self.problem.count
        ancestors = [0] * n
        for v in range(n):
            for p in self.problem.preds[v]:
                ancestors[v] |= ancestors[p] | (1 << p)
        descendants = [0] * n
        for v in reversed(range(n)):
            for s in self.succs[v]:
                descendants[v] |= descendants[s] | (1 << s)
        segments, current = [], []
        for v in range(n):
            current.append(v)
            if (ancestors[v] | descendants[v]).bit_count() == n - 1:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        return segments


def _simulate(
    graph: _Graph,
    suborder: Sequence[int],
    entry: np.ndarray,
    sizes: np.ndarray,
    done_after: np.ndarray,
    remaining: np.ndarray,
) -> np.ndarray:
    """Peak (per sample column of `sizes`) of running `suborder` from live bytes `entry`.
    `remaining[b]`: readers of buffer b inside the segment; `done_after[b]`: no readers after it."""
    left = remaining.copy()
    live = entry.copy()
    peak = np.zeros_like(entry)
    for v in suborder:
        made = graph.produces[v]
        during = live + (sizes[made].sum(axis=0) if made else 0)
        peak = np.maximum(peak, during)
        live = during
        for b in made:
            if not graph.problem.readers[b]:
                live = live - sizes[b]
        for b in graph.reads[v]:
            left[b] -= 1
            if left[b] == 0 and done_after[b]:
                live = live - sizes[b]
    return peak


def plan_order(
    problem: ScheduleProblem, *, time_limit_s: float = 2.0, state_limit: int = 50_000
) -> OrderResult:
    """A topological order no worse than the default at any sample (module docstring)."""
    began = time.perf_counter()
    n = problem.count
    default = tuple(range(n))
    default_peaks = peak_bytes(problem, default)
    if n <= 1 or len(problem.sizes) == 0:
        return OrderResult(
            default,
            default_peaks,
            default_peaks,
            True,
            "default",
            1,
            1,
            time.perf_counter() - began,
        )
    graph = _Graph(problem)
    sizes = problem.samples.astype(np.int64)
    samples = sizes.shape[1]
    search = sorted(
        {int(np.argmin(sizes.sum(axis=0))), int(np.argmax(sizes.sum(axis=0))), samples // 2}
    )
    segments = graph.segments()
    position_end = {}
    for index, segment in enumerate(segments):
        for v in segment:
            position_end[v] = index
    last_reader_segment = [
        max((position_end[r] for r in readers), default=-1) for readers in problem.readers
    ]
    order: list[int] = []
    exact_segments = 0
    for index, segment in enumerate(segments):
        members = set(segment)
        entry = np.zeros(samples, dtype=np.int64)
        for b, producer in enumerate(problem.producer):
            if position_end[producer] < index and last_reader_segment[b] >= index:
                entry += sizes[b]
        remaining = np.zeros(len(problem.sizes), dtype=np.int64)
        for v in segment:
            for b in graph.reads[v]:
                remaining[b] += 1
        done_after = np.array(
            [last_reader_segment[b] <= index for b in range(len(problem.sizes))], dtype=bool
        )
        candidates = [list(segment)]
        solved = len(segment) <= 2
        if len(segment) > 2 and time.perf_counter() - began < time_limit_s:
            for k in search:
                candidates.append(_greedy(graph, segment, members, sizes[:, k], done_after))
            for k in search:
                budget = time_limit_s - (time.perf_counter() - began)
                if budget <= 0:
                    break
                found = _exact(
                    graph,
                    segment,
                    members,
                    sizes[:, k],
                    done_after,
                    state_limit,
                    began + time_limit_s,
                    upper=int(
                        min(
                            _simulate(
                                graph,
                                c,
                                entry[k : k + 1],
                                sizes[:, k : k + 1],
                                done_after,
                                remaining,
                            )[0]
                            - entry[k]
                            for c in candidates
                        )
                    )
                    + 1,
                )
                if found is not None:
                    candidates.append(found)
                    solved = True
                else:
                    solved = False
                    break
        exact_segments += solved
        base = _simulate(graph, segment, entry, sizes, done_after, remaining)
        best, best_score = list(segment), 1.0
        for candidate in candidates[1:]:
            peaks = _simulate(graph, candidate, entry, sizes, done_after, remaining)
            if np.all(peaks <= base):
                score = float(np.max(peaks / np.maximum(base, 1)))
                if score < best_score:
                    best, best_score = candidate, score
        order.extend(best)
    result = tuple(order)
    peaks = peak_bytes(problem, result)
    if np.any(peaks > default_peaks) or not is_topological(problem, result):  # never worse
        result, peaks = default, default_peaks
    proof = (
        "default" if result == default else _prove(problem, result, default, began, time_limit_s)
    )
    return OrderResult(
        result,
        peaks,
        default_peaks,
        exact_segments == len(segments),
        proof,
        len(segments),
        exact_segments,
        time.perf_counter() - began,
    )


def _prove(
    problem: ScheduleProblem,
    order: Sequence[int],
    default: Sequence[int],
    began: float,
    limit: float,
) -> str:
    """ "proved" when every step sum of `order` is dominated by a step sum of `default`."""
    if problem.count > 400 or time.perf_counter() - began > limit:
        return "sampled"
    mine, theirs = _step_sums(problem, order), _step_sums(problem, default)
    if all(any(_dominates(t, s) for t in theirs) for s in mine):
        return "proved"
    return "sampled"


def _greedy(
    graph: _Graph,
    segment: Sequence[int],
    members: set[int],
    sizes: np.ndarray,
    done_after: np.ndarray,
) -> list[int]:
    """List scheduling: run the ready node whose step needs the fewest bytes, then frees most."""
    indegree = {v: sum(1 for p in graph.problem.preds[v] if p in members) for v in segment}
    left = {b: 0 for v in segment for b in graph.reads[v]}
    for v in segment:
        for b in graph.reads[v]:
            left[b] += 1
    ready = [v for v in segment if indegree[v] == 0]
    order = []
    while ready:

        def cost(v: int) -> tuple[int, int, int]:
            made = int(sizes[graph.produces[v]].sum()) if graph.produces[v] else 0
            freed = sum(int(sizes[b]) for b in graph.reads[v] if left[b] == 1 and done_after[b])
            return (made - freed, made, v)

        v = min(ready, key=cost)
        ready.remove(v)
        order.append(v)
        for b in graph.reads[v]:
            left[b] -= 1
        for s in graph.succs[v]:
            if s in members:
                indegree[s] -= 1
                if indegree[s] == 0:
                    ready.append(s)
    return order


def _exact(
    graph: _Graph,
    segment: Sequence[int],
    members: set[int],
    sizes: np.ndarray,
    done_after: np.ndarray,
    state_limit: int,
    deadline: float,
    upper: int,
) -> list[int] | None:
    """The order of `segment` with the lowest peak above the entry bytes (DP over scheduled
    sets), or None past `state_limit` states or the deadline. Peaks at or above `upper` are cut."""
    local = {v: i for i, v in enumerate(segment)}
    pred_mask = [
        sum(1 << local[p] for p in graph.problem.preds[v] if p in members) for v in segment
    ]
    readers_mask = {}
    for v in segment:
        for b in graph.reads[v]:
            readers_mask[b] = readers_mask.get(b, 0) | (1 << local[v])
    made = [int(sizes[graph.produces[v]].sum()) if graph.produces[v] else 0 for v in segment]
    unread = [
        sum(int(sizes[b]) for b in graph.produces[v] if not graph.problem.readers[b])
        for v in segment
    ]
    frees = [
        [(readers_mask[b], int(sizes[b])) for b in graph.reads[v] if done_after[b]] for v in segment
    ]
    full = (1 << len(segment)) - 1
    # state -> (peak, live, parent, node)
    level: dict[int, tuple[int, int, int, int]] = {0: (0, 0, -1, -1)}
    history: list[dict[int, tuple[int, int, int, int]]] = [level]
    states = 0
    for _ in range(len(segment)):
        nxt: dict[int, tuple[int, int, int, int]] = {}
        for state, (peak, live, _, _) in level.items():
            for i in range(len(segment)):
                if (state >> i) & 1 or pred_mask[i] & ~state:
                    continue
                during = live + made[i]
                new_peak = max(peak, during)
                if new_peak >= upper:
                    continue
                after = state | (1 << i)
                new_live = during - unread[i] - sum(s for mask, s in frees[i] if mask & ~after == 0)
                old = nxt.get(after)
                if old is None or new_peak < old[0]:
                    nxt[after] = (new_peak, new_live, state, i)
            states += len(nxt)
            if states > state_limit or time.perf_counter() > deadline:
                return None
        if not nxt:
            return None  # everything pruned: nothing beats the upper bound
        level = nxt
        history.append(level)
    order, state = [], full
    for depth in range(len(segment), 0, -1):
        _, _, parent, i = history[depth][state]
        order.append(segment[i])
        state = parent
    return order[::-1]


def optimal_peak(
    problem: ScheduleProblem, sample: int, *, state_limit: int = 200_000, time_limit_s: float = 10.0
) -> int | None:
    """The exact minimum peak over all topological orders at one sample, or None when the search
    does not finish within the limits."""
    began = time.perf_counter()
    n = problem.count
    if n == 0 or len(problem.sizes) == 0:
        return 0
    graph = _Graph(problem)
    sizes = problem.samples[:, sample : sample + 1].astype(np.int64)
    segments = graph.segments()
    position_end = {v: index for index, segment in enumerate(segments) for v in segment}
    last_reader_segment = [
        max((position_end[r] for r in readers), default=-1) for readers in problem.readers
    ]
    best = 0
    for index, segment in enumerate(segments):
        members = set(segment)
        entry = sum(
            int(sizes[b, 0])
            for b, p in enumerate(problem.producer)
            if position_end[p] < index and last_reader_segment[b] >= index
        )
        done_after = np.array(
            [last_reader_segment[b] <= index for b in range(len(problem.sizes))], dtype=bool
        )
        remaining = np.zeros(len(problem.sizes), dtype=np.int64)
        for v in segment:
            for b in graph.reads[v]:
                remaining[b] += 1
        heuristic = min(
            int(_simulate(graph, c, np.array([entry]), sizes, done_after, remaining)[0])
            for c in (list(segment), _greedy(graph, segment, members, sizes[:, 0], done_after))
        )
        if len(segment) <= 1:
            best = max(best, heuristic)
            continue
        found = _exact(
            graph,
            segment,
            members,
            sizes[:, 0],
            done_after,
            state_limit,
            began + time_limit_s,
            upper=heuristic - entry + 1,
        )
        if found is None:
            return None
        best = max(
            best, int(_simulate(graph, found, np.array([entry]), sizes, done_after, remaining)[0])
        )
    return best
