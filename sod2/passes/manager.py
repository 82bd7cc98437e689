"""The pass manager: run a pipeline of passes over a model.

    manager = PassManager.parse("dce,fold-constants,toposort")
    report = manager.run(model, PassContext.with_instruments([TimingInstrument()]))

For each pass the manager calls the instruments, runs the pass, checks its claim (a pass that says
"unchanged" must not have edited the graph: `PassContractError` otherwise), and invalidates the
cached analyses the pass did not preserve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sod2.errors import PassContractError
from sod2.ir.model import Model
from sod2.passes.base import Pass, PassResult
from sod2.passes.context import PassContext
from sod2.passes.pipeline import parse_pipeline


@dataclass(frozen=True, slots=True)
class PipelineReport:
    """What a pipeline run did: one (pass spec, result) pair per pass."""

    results: tuple[tuple[str, PassResult], ...]

    @property
    def changed(self) -> bool:
        """True when some pass changed the graph."""
        return any(result.changed for _, result in self.results)


class PassManager:
    """An ordered list of passes, runnable over a model."""

    def __init__(self, passes: Sequence[Pass]) -> None:
        self.passes = tuple(passes)

    @classmethod
    def parse(cls, text: str) -> PassManager:
        """The pass manager for pipeline text such as `"dce,fold-constants{max_elements=64}"`."""
        return cls(parse_pipeline(text))

    def spec(self) -> str:
        """The pipeline text that rebuilds this manager."""
        return ",".join(p.spec() for p in self.passes)

    def run(self, model: Model, context: PassContext | None = None) -> PipelineReport:
        """Run every pass in order over `model` (in place)."""
        context = context or PassContext()
        for instrument in context.instruments:
            instrument.before_pipeline(model)
        results = []
        for pass_ in self.passes:
            results.append((pass_.spec(), self._run_one(pass_, model, context)))
        for instrument in context.instruments:
            instrument.after_pipeline(model)
        return PipelineReport(tuple(results))

    def _run_one(self, pass_: Pass, model: Model, context: PassContext) -> PassResult:
        for instrument in context.instruments:
            instrument.before_pass(pass_, model)
        graph, version = model.graph, model.graph.version
        result = pass_.run(model, context)
        if not isinstance(result, PassResult):
            raise PassContractError(
                f"pass {pass_.spec()!r} returned {type(result).__name__}, not a PassResult"
            )
        edited = model.graph is not graph or model.graph.version != version
        if edited and not result.changed:
            raise PassContractError(
                f"pass {pass_.spec()!r} edited the graph but reported it unchanged; "
                f"return PassResult.modified(...) so cached analyses are invalidated"
            )
        if result.changed:
            if model.graph is not graph:
                context.analyses.clear()
            context.analyses.invalidate(model.graph, result.preserved)
        for instrument in context.instruments:
            instrument.after_pass(pass_, model, result)
        return result

    def __repr__(self) -> str:
        return f"PassManager({self.spec()!r})"
