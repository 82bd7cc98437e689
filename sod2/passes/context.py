"""The context a pipeline runs in: its instruments and its analysis cache.

One `PassContext` is shared by every pass of a pipeline run (TVM's PassContext plays the same
role): passes read analyses from it, and the pass manager calls its instruments around each pass.
Keeping these here, not in pass constructors, is what lets any pipeline be timed, dumped or
verified unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sod2.passes.analysis import AnalysisManager
from sod2.passes.instruments import PassInstrument


@dataclass
class PassContext:
    """Instruments and the analysis cache for one pipeline run."""

    instruments: list[PassInstrument] = field(default_factory=list)
    analyses: AnalysisManager = field(default_factory=AnalysisManager)

    @classmethod
    def with_instruments(cls, instruments: Iterable[PassInstrument]) -> PassContext:
        """A fresh context with these instruments."""
        return cls(instruments=list(instruments))
