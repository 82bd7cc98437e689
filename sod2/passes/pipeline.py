"""Pipeline text: `"dce,fold-constants{max_elements=4096},toposort"`.

Grammar (whitespace is free between tokens):

    pipeline := step ("," step)*
    step     := NAME ("{" [option ("," option)*] "}")?
    option   := KEY "=" VALUE
    NAME     := letters, digits, "-" and "_", starting with a letter
    VALUE    := text up to the next "," or "}", or a double-quoted string

Option values are converted to the type the pass declares (int, float, bool, str). Every error
names the pass and option at fault and points at the column of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sod2.errors import PipelineError
from sod2.passes.base import Pass, PassOption
from sod2.passes.registry import pass_class

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class PipelineStep:
    """One parsed step: a pass name and its option texts, with where they stood in the text."""

    name: str
    options: tuple[tuple[str, str], ...]
    column: int


def parse_pipeline(text: str) -> list[Pass]:
    """Build the passes that `text` names, with their options converted and checked."""
    return [build_pass(step, text) for step in parse_steps(text)]


def parse_steps(text: str) -> list[PipelineStep]:
    """Split pipeline text into steps without looking up the passes."""
    parser = _Parser(text)
    steps = [parser.step()]
    while parser.accept(","):
        steps.append(parser.step())
    parser.skip_space()
    if parser.pos != len(text):
        parser.fail("expected ',' between passes")
    return steps


def build_pass(step: PipelineStep, text: str = "") -> Pass:
    """Instantiate the pass of `step`, converting each option to its declared type."""
    cls = pass_class(step.name)
    declared = {opt.name: opt for opt in cls.options()}
    values = {}
    for key, raw in step.options:
        opt = declared.get(key)
        if opt is None:
            known = ", ".join(declared) or "none"
            raise PipelineError(f"pass {step.name!r} has no option {key!r} (its options: {known})")
        if key in values:
            raise PipelineError(f"pass {step.name!r}: option {key!r} is given twice")
        values[key] = convert_option(step.name, opt, raw)
    return cls(**values)


def convert_option(pass_name: str, opt: PassOption, raw: str) -> object:
    """Convert the text `raw` to the type of `opt`; `PipelineError` if it does not fit."""
    where = f"pass {pass_name!r}, option {opt.name!r}"
    if opt.type == "bool":
        lowered = raw.lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise PipelineError(f"{where}: expected true or false, got {raw!r}")
    if opt.type == "int":
        try:
            return int(raw.replace("_", ""), 0)
        except ValueError:
            raise PipelineError(f"{where}: expected an integer, got {raw!r}") from None
    if opt.type == "float":
        try:
            return float(raw)
        except ValueError:
            raise PipelineError(f"{where}: expected a number, got {raw!r}") from None
    if opt.choices and raw not in opt.choices:
        raise PipelineError(f"{where}: expected one of {', '.join(opt.choices)}; got {raw!r}")
    return raw


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> None:
        caret = " " * self.pos + "^"
        raise PipelineError(
            f"bad pipeline text at column {self.pos + 1}: {message}\n  {self.text}\n  {caret}"
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def accept(self, token: str) -> bool:
        self.skip_space()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def name(self, what: str) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            self.fail(f"expected {what}")
        assert match is not None
        self.pos = match.end()
        return match.group()

    def step(self) -> PipelineStep:
        self.skip_space()
        column = self.pos
        name = self.name("a pass name")
        options: list[tuple[str, str]] = []
        if self.accept("{") and not self.accept("}"):
            options.append(self.option())
            while self.accept(","):
                options.append(self.option())
            if not self.accept("}"):
                self.fail("expected ',' or '}' after an option")
        return PipelineStep(name, tuple(options), column)

    def option(self) -> tuple[str, str]:
        key = self.name("an option name")
        if not self.accept("="):
            self.fail(f"expected '=' after option {key!r}")
        self.skip_space()
        if self.accept('"'):
            end = self.text.find('"', self.pos)
            if end < 0:
                self.fail("unterminated quoted value")
            value = self.text[self.pos : end]
            self.pos = end + 1
            return key, value
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",}":
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            self.fail(f"option {key!r} has no value")
        return key, value
