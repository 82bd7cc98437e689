"""The errors sod2 raises.

Every error that sod2 raises on purpose derives from `Sod2Error`, so a caller (and the CLI) can tell
"the input or the request is wrong" apart from a bug. Each message names the thing at fault: the file,
node, op, tensor, shape or option, and where possible says what to try instead.
"""

from __future__ import annotations


class Sod2Error(Exception):
    """Base class of every error sod2 raises on purpose."""


class ModelLoadError(Sod2Error):
    """A model file could not be read, parsed or checked."""


class OnnxImportError(Sod2Error):
    """A readable ONNX model could not be turned into sod2's IR (names the node or tensor)."""


class UnknownDomainError(OnnxImportError):
    """A node uses an operator domain that the model does not import."""


class OnnxExportError(Sod2Error):
    """The IR could not be written back as a valid ONNX model."""


class GraphEditError(Sod2Error):
    """An edit was refused because it would break an invariant of the IR; the graph is unchanged."""


class VerificationError(Sod2Error):
    """`verify()` found graphs that break the IR's invariants; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"IR verification failed ({len(self.problems)} problem(s)):\n{shown}{more}"
        )


class PipelineError(Sod2Error):
    """A pipeline text or a pass option is malformed, or names an unknown pass."""


class PassContractError(Sod2Error):
    """A pass broke its contract, e.g. said "unchanged" after it edited the graph."""


class UnsupportedOpError(Sod2Error):
    """An operator, type or attribute that sod2 does not implement."""
