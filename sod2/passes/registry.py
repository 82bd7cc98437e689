"""The registry of passes by name, so pipelines can be written as text.

A pass class joins the registry with the `@register_pass` decorator. The passes that ship with
sod2 are registered when their modules are imported; `registered_passes()` imports them first, so
the registry is complete whatever the caller imported before.
"""

from __future__ import annotations

import difflib
import importlib

from sod2.errors import PipelineError
from sod2.passes.base import Pass

_PASSES: dict[str, type[Pass]] = {}

# Modules whose import registers sod2's own passes.
_BUILTIN_MODULES = (
    "sod2.opt.dce",
    "sod2.opt.constant_folding",
    "sod2.opt.toposort",
    "sod2.opt.infer_shapes",
    "sod2.opt.fusion",
    "sod2.opt.fold_batchnorm",
    "sod2.opt.standardize",
)


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make `cls` callable from pipeline text by its `name`."""
    if not cls.name:
        raise PipelineError(f"pass class {cls.__name__} has no name")
    existing = _PASSES.get(cls.name)
    if existing is not None and existing is not cls:
        raise PipelineError(
            f"pass name {cls.name!r} is taken by {existing.__module__}.{existing.__name__}"
        )
    _PASSES[cls.name] = cls
    return cls


def registered_passes() -> dict[str, type[Pass]]:
    """Every registered pass by name, sorted by name."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(sorted(_PASSES.items()))


def pass_class(name: str) -> type[Pass]:
    """The pass registered as `name`; a `PipelineError` suggests close names otherwise."""
    passes = registered_passes()
    found = passes.get(name)
    if found is None:
        close = difflib.get_close_matches(name, passes, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise PipelineError(
            f"unknown pass {name!r}{hint} (known: {', '.join(passes)}; `sod2 passes` lists them)"
        )
    return found
