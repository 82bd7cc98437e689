"""Analyses: facts about a graph, computed on demand, cached, and invalidated by edits.

An analysis is a class with a `name` and a `run(graph, analyses)` method returning its result. It
never changes the graph. Results are cached per graph by an `AnalysisManager`:

- `analyses.get(Liveness, graph)` runs the analysis once; later calls return the cached result;
- an analysis may ask for others while it runs; the manager records that it depends on them, so
  invalidating one also invalidates everything computed from it;
- after a pass, the pass manager calls `invalidate(graph, preserved)`: results the pass declared
  preserved stay (the pass vouches for them), all others are dropped;
- independently of what passes declare, a cached result is used only while the graph's edit
  counter (`Graph.version`) is the one it was computed or vouched for at, so an edit made outside
  the pass manager can never serve a stale result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from sod2.ir.graph import Graph
from sod2.ir.model import Model

Result = TypeVar("Result")


class Analysis(Generic[Result]):
    """Base class of analyses. Subclasses set `name` and implement `run`.

    Analyses are stateless: everything they compute is returned by `run` and cached by the manager.
    """

    name: ClassVar[str] = ""

    def run(self, graph: Graph, analyses: AnalysisManager) -> Result:
        """Compute the result for `graph` (or the `Model` it was asked for); may call
        `analyses.get` for other analyses."""
        raise NotImplementedError


AnalysisType = type[Analysis[Any]]


class PreservedAnalyses:
    """What a pass keeps valid: all analyses, none, or a set of analysis classes."""

    __slots__ = ("_all", "_kept")

    def __init__(self, kept: Iterable[AnalysisType] = (), *, all: bool = False) -> None:
        self._all = all
        self._kept = frozenset(kept)

    @classmethod
    def all(cls) -> PreservedAnalyses:
        """Every analysis stays valid (the pass changed nothing, or nothing they read)."""
        return cls(all=True)

    @classmethod
    def none(cls) -> PreservedAnalyses:
        """No analysis stays valid."""
        return cls()

    def keeps(self, analysis: AnalysisType) -> bool:
        """True when results of `analysis` stay valid."""
        return self._all or analysis in self._kept

    @property
    def is_all(self) -> bool:
        """True when every analysis is preserved."""
        return self._all

    def __repr__(self) -> str:
        if self._all:
            return "PreservedAnalyses.all()"
        names = ", ".join(sorted(a.name or a.__name__ for a in self._kept))
        return f"PreservedAnalyses({{{names}}})"


@dataclass
class _Entry:
    result: Any
    version: int


_Key = tuple[AnalysisType, Graph]


class AnalysisManager:
    """Caches analysis results per graph and drops them when they may be stale."""

    def __init__(self) -> None:
        self._cache: dict[Graph, dict[AnalysisType, _Entry]] = {}
        self._dependents: dict[_Key, set[_Key]] = {}
        self._running: list[_Key] = []
        self.computed: list[str] = []
        """Names of analyses computed (not served from cache), in order: for tests and tracing."""

    def get(self, analysis: type[Analysis[Result]], target: Graph | Model) -> Result:
        """The result of `analysis` on `target`, computed now or taken from the cache.

        Analyses that need a model's opset imports (RDP) take the `Model`; their results are
        cached on its graph like any other.
        """
        graph = target.graph if isinstance(target, Model) else target
        key = (analysis, graph)
        if self._running:
            self._dependents.setdefault(key, set()).add(self._running[-1])
        entries = self._cache.setdefault(graph, {})
        entry = entries.get(analysis)
        if entry is not None and entry.version == graph.version:
            return entry.result
        if entry is not None:
            self._drop(key)
        if key in self._running:
            chain = " -> ".join(a.name or a.__name__ for a, _ in self._running)
            raise RecursionError(f"analyses depend on each other in a cycle: {chain}")
        self._running.append(key)
        try:
            result = analysis().run(target, self)  # type: ignore[arg-type]
        finally:
            self._running.pop()
        entries[analysis] = _Entry(result, graph.version)
        self.computed.append(analysis.name or analysis.__name__)
        return result

    def cached(self, analysis: AnalysisType, graph: Graph) -> bool:
        """True when a valid result of `analysis` on `graph` is cached."""
        entry = self._cache.get(graph, {}).get(analysis)
        return entry is not None and entry.version == graph.version

    def invalidate(self, graph: Graph, preserved: PreservedAnalyses) -> None:
        """After an edit of `graph`: drop results not in `preserved`, and what was computed from them.

        Results on the subgraphs of `graph` are treated the same way, since they changed with it.
        """
        graphs = {graph, *graph.subgraphs()}
        for current in [g for g in self._cache if g in graphs]:
            for analysis in [a for a in self._cache.get(current, {}) if not preserved.keeps(a)]:
                self._drop((analysis, current))
        for current in graphs:
            for entry in self._cache.get(current, {}).values():
                entry.version = current.version  # the pass vouches for what it preserved

    def clear(self) -> None:
        """Forget every cached result."""
        self._cache.clear()
        self._dependents.clear()

    def _drop(self, key: _Key) -> None:
        analysis, graph = key
        if self._cache.get(graph, {}).pop(analysis, None) is None:
            return
        for dependent in self._dependents.get(key, ()):
            self._drop(dependent)
