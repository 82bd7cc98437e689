"""Instruments: observers that the pass manager calls around every pass.

Instruments live in the `PassContext`, not in passes, so any pipeline can be timed, dumped or
verified without changing a pass. Each hook receives the pass and the model:

- `TimingInstrument`: wall time per pass (and per analysis computed inside it);
- `DumpIRInstrument`: the IR text after the named passes (or all), to a stream or a folder;
- `VerifyInstrument`: `verify()` before the first and after every pass; a pass that breaks an
  invariant is named in the error.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sod2.errors import VerificationError
from sod2.ir.printer import format_model
from sod2.ir.verifier import find_problems

if TYPE_CHECKING:
    from sod2.ir.model import Model
    from sod2.passes.base import Pass, PassResult


class PassInstrument:
    """Base class: override the hooks you need."""

    def before_pipeline(self, model: Model) -> None:
        """Called once before the first pass."""

    def before_pass(self, pass_: Pass, model: Model) -> None:
        """Called before each pass runs."""

    def after_pass(self, pass_: Pass, model: Model, result: PassResult) -> None:
        """Called after each pass returns."""

    def after_pipeline(self, model: Model) -> None:
        """Called once after the last pass."""


@dataclass(frozen=True, slots=True)
class PassTiming:
    """Time one pass took and whether it changed the graph."""

    index: int
    spec: str
    seconds: float
    changed: bool


@dataclass
class TimingInstrument(PassInstrument):
    """Record the wall time of every pass; `report()` formats a table."""

    timings: list[PassTiming] = field(default_factory=list)
    _started: float = 0.0

    def before_pass(self, pass_: Pass, model: Model) -> None:
        self._started = time.perf_counter()

    def after_pass(self, pass_: Pass, model: Model, result: PassResult) -> None:
        elapsed = time.perf_counter() - self._started
        self.timings.append(PassTiming(len(self.timings), pass_.spec(), elapsed, result.changed))

    def report(self) -> str:
        """A table: one row per pass with its time in milliseconds, then the total."""
        width = max([len(t.spec) for t in self.timings] + [4])
        rows = [f"{'pass':<{width}}  {'ms':>10}  changed"]
        for timing in self.timings:
            changed = "yes" if timing.changed else "no"
            rows.append(f"{timing.spec:<{width}}  {timing.seconds * 1e3:>10.3f}  {changed}")
        total = sum(t.seconds for t in self.timings)
        rows.append(f"{'total':<{width}}  {total * 1e3:>10.3f}")
        return "\n".join(rows)


@dataclass
class DumpIRInstrument(PassInstrument):
    """Print the IR after the passes named in `after` (every pass when empty).

    The text goes to `stream` (stderr by default), or, when `directory` is set, into one file per
    dump there: `03-fold-constants.ir`.
    """

    after: frozenset[str] = frozenset()
    stream: TextIO | None = None
    directory: Path | None = None
    _count: int = 0

    def after_pass(self, pass_: Pass, model: Model, result: PassResult) -> None:
        self._count += 1
        if self.after and pass_.name not in self.after:
            return
        text = f"// IR after {pass_.spec()}\n{format_model(model)}\n"
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{self._count:02d}-{pass_.name}.ir").write_text(text)
        else:
            (self.stream or sys.stderr).write(text)


class VerifyInstrument(PassInstrument):
    """Run `verify()` before the pipeline and after every pass; name the pass that broke the IR."""

    def before_pipeline(self, model: Model) -> None:
        problems = list(find_problems(model))
        if problems:
            raise VerificationError(["before the first pass:", *problems])

    def after_pass(self, pass_: Pass, model: Model, result: PassResult) -> None:
        problems = list(find_problems(model))
        if problems:
            raise VerificationError([f"after pass {pass_.spec()!r}:", *problems])
