"""Passes: small frozen dataclasses that transform a model.

A pass has a `name` (how pipelines call it), typed options (its dataclass fields, each with a
default and a `help` text in the field metadata) and one `run(model, context)` method. It keeps no
state between runs: everything it learns about the graph comes from analyses (`context.analyses`).

`run` returns a `PassResult`: whether the graph changed and which analyses stay valid. The pass
manager checks the first claim against the graph's edit counter, so a pass that says "unchanged"
after an edit is caught.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sod2.passes.analysis import AnalysisType, PreservedAnalyses

if TYPE_CHECKING:
    from sod2.ir.model import Model
    from sod2.passes.context import PassContext


@dataclass(frozen=True, slots=True)
class PassResult:
    """What a pass did: `changed` the graph or not, and which analyses it `preserved`."""

    changed: bool
    preserved: PreservedAnalyses

    @classmethod
    def unchanged(cls) -> PassResult:
        """Nothing changed; every analysis stays valid."""
        return cls(False, PreservedAnalyses.all())

    @classmethod
    def modified(cls, preserved: Iterable[AnalysisType] = ()) -> PassResult:
        """The graph changed; only the analyses listed stay valid."""
        return cls(True, PreservedAnalyses(preserved))


@dataclass(frozen=True)
class Pass:
    """Base class of passes. Subclasses are frozen dataclasses that set `name` and `run`."""

    name: ClassVar[str] = ""

    def run(self, model: Model, context: PassContext) -> PassResult:
        """Transform `model` in place and say what changed."""
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[PassOption]:
        """The typed options of this pass, in declaration order."""
        return [
            PassOption(
                f.name,
                _type_name(f.type),
                f.default,
                f.metadata.get("help", ""),
                f.metadata.get("choices", ()),
            )
            for f in dataclasses.fields(cls)
        ]

    @classmethod
    def summary(cls) -> str:
        """The first line of the pass's docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def spec(self) -> str:
        """The pipeline text that rebuilds this pass with its options: `name{key=value}`."""
        changed = [
            f"{f.name}={_format_value(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"{self.name}{{{','.join(changed)}}}" if changed else self.name


@dataclass(frozen=True, slots=True)
class PassOption:
    """One option of a pass: its name, type name, default, help text and allowed values."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()


def option(default: Any, help: str, *, choices: Iterable[str] = ()) -> Any:
    """Declare a pass option: `max_size: int = option(1024, "largest ...")`.

    Options are int, float, bool or str; `choices` restricts a str option to those values.
    """
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices)})


def _type_name(annotation: Any) -> str:
    return (
        annotation
        if isinstance(annotation, str)
        else getattr(annotation, "__name__", str(annotation))
    )


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
