"""Pass infrastructure: passes, analyses, the pass manager and its instruments.

from sod2.passes import PassManager, PassContext, TimingInstrument
PassManager.parse("dce,fold-constants,toposort").run(model, PassContext([TimingInstrument()]))
"""

from sod2.passes.analysis import Analysis, AnalysisManager, PreservedAnalyses
from sod2.passes.base import Pass, PassOption, PassResult, option
from sod2.passes.context import PassContext
from sod2.passes.instruments import (
    DumpIRInstrument,
    PassInstrument,
    TimingInstrument,
    VerifyInstrument,
)
from sod2.passes.manager import PassManager, PipelineReport
from sod2.passes.pipeline import parse_pipeline, parse_steps
from sod2.passes.registry import pass_class, register_pass, registered_passes

__all__ = [
    "Analysis",
    "AnalysisManager",
    "DumpIRInstrument",
    "Pass",
    "PassContext",
    "PassInstrument",
    "PassManager",
    "PassOption",
    "PassResult",
    "PipelineReport",
    "PreservedAnalyses",
    "TimingInstrument",
    "VerifyInstrument",
    "option",
    "parse_pipeline",
    "parse_steps",
    "pass_class",
    "register_pass",
    "registered_passes",
]
