"""Backends: the reference interpreter, and later generated code and its runtime."""

from sod2.backend.reference import (
    InputError,
    ReferenceInterpreter,
    RunResult,
    run_reference,
    unsupported_ops,
)

__all__ = ["InputError", "ReferenceInterpreter", "RunResult", "run_reference", "unsupported_ops"]
