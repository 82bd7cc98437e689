"""The operator catalogue: what sod2 knows per (domain, op type, first opset version).

Two tables, filled by the family modules of `sod2.ops`, one family module per group of operators:
- kernels (`@register`): the op's reference kernel, written on numpy (`OpDef`);
- shape rules (`@shape_rule`): the op's SoD2 class and its RDP transfer function (`ShapeDef`).
Entries are versioned like ONNX schemas: an entry registered `since=13` serves models importing
opset 13 and later, until a newer entry takes over.

`lookup(...)` and `lookup_shape_rule(...)` return the entry for a node, or raise
`UnsupportedOpError` naming the op, its domain, the opset and the node: an unknown op is never
silently skipped.

Kernels receive a `KernelContext` (the node, its attributes, the opset, a way to run subgraphs)
and the input values in slot order (None for omitted optional inputs), and return the output
values in slot order. Values are numpy arrays, lists of arrays (sequences) or None (empty optional).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from sod2.errors import Sod2Error, UnsupportedOpError

if TYPE_CHECKING:
    from sod2.analysis.facts import TensorFact
    from sod2.analysis.shape_context import ShapeContext
    from sod2.ir.graph import Graph, Node

Value = Any
"""A runtime value: `numpy.ndarray`, a list of them (sequence), or None (empty optional)."""

Kernel = Callable[["KernelContext", Sequence[Value]], Sequence[Value]]
GraphRunner = Callable[["Graph", Sequence[Value]], list[Value]]
ShapeRule = Callable[["ShapeContext", Sequence["TensorFact"]], Sequence["TensorFact"]]

STANDARD = ""


@dataclass(frozen=True, slots=True)
class OpDef:
    """What sod2 knows about one version range of one operator."""

    op_type: str
    domain: str
    since: int
    kernel: Kernel
    deterministic: bool = True
    """False for ops whose outputs vary between runs (RandomNormal ...): never constant-folded."""


class OpClass(enum.Enum):
    """SoD2's classes of operators, by what determines the output SHAPE."""

    ISDO = "input shape determined output"
    """Output shape and value come from input shapes alone: Shape, Size."""
    ISDOS = "input shape determined output shape"
    """Output shape comes from input shapes; values from input values: Add, Conv, MatMul ..."""
    ISVDOS = "input shape and value determined output shape"
    """Output shape also needs some input values (shape tensors): Reshape, Expand, Slice ..."""
    EDO = "execution determined output"
    """Output shape known only after running: NonZero, Unique, control flow."""


@dataclass(frozen=True, slots=True)
class ShapeDef:
    """RDP's knowledge of one version range of one operator: its class and shape rule."""

    op_type: str
    domain: str
    since: int
    op_class: OpClass
    rule: ShapeRule


@dataclass(frozen=True)
class KernelContext:
    """What a kernel may read besides its inputs."""

    node: Node
    opset: int
    run_graph: GraphRunner | None = None

    def attr(self, name: str, default: Any = None) -> Any:
        """The node's attribute `name` as a plain value, or `default`."""
        return self.node.attr(name, default)

    def fail(self, message: str) -> Sod2Error:
        """An error for this node: `raise ctx.fail("...")`."""
        return Sod2Error(f"node {self.node.name!r} ({self.node.op_type}): {message}")

    def unsupported(self, message: str) -> UnsupportedOpError:
        """An unsupported-feature error for this node: `raise ctx.unsupported("...")`."""
        return UnsupportedOpError(
            f"node {self.node.name!r} ({self.node.qualified_op}, opset {self.opset}): {message}"
        )


def _normal_domain(domain: str) -> str:
    return STANDARD if domain in ("", "ai.onnx") else domain


class _Entry(Protocol):
    op_type: str
    domain: str
    since: int


EntryT = TypeVar("EntryT", bound=_Entry)


class _VersionedTable(Generic[EntryT]):
    """Entries by (domain, op type), each serving opsets from its `since` to the next entry's."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[tuple[str, str], list[EntryT]] = {}

    def add(self, entry: EntryT) -> None:
        versions = self._entries.setdefault((entry.domain, entry.op_type), [])
        if any(v.since == entry.since for v in versions):
            raise Sod2Error(
                f"{self.what} of {entry.op_type} since opset {entry.since} is registered twice"
            )
        bisect.insort(versions, entry, key=lambda v: v.since)

    def find(self, op_type: str, domain: str, opset: int, node_name: str) -> EntryT:
        domain = _normal_domain(domain)
        versions = self._entries.get((domain, op_type))
        where = f" (node {node_name!r})" if node_name else ""
        qualified = op_type if domain == STANDARD else f"{domain}::{op_type}"
        if not versions:
            raise UnsupportedOpError(
                f"operator {qualified} (domain {domain or 'ai.onnx'!r}, opset {opset}) has no "
                f"{self.what} in sod2's catalogue{where}"
            )
        index = bisect.bisect_right([v.since for v in versions], opset) - 1
        if index < 0:
            raise UnsupportedOpError(
                f"operator {qualified} at opset {opset}{where}: sod2's {self.what} starts at opset "
                f"{versions[0].since}"
            )
        return versions[index]

    def all(self) -> dict[tuple[str, str], tuple[EntryT, ...]]:
        return {key: tuple(versions) for key, versions in sorted(self._entries.items())}


_KERNELS: _VersionedTable[OpDef] = _VersionedTable("kernel")
_SHAPE_RULES: _VersionedTable[ShapeDef] = _VersionedTable("shape rule")


def register(
    op_type: str, *, since: int = 1, domain: str = STANDARD, deterministic: bool = True
) -> Callable[[Kernel], Kernel]:
    """Decorator: register `kernel` as `op_type`'s reference kernel from opset `since` on."""

    def decorate(kernel: Kernel) -> Kernel:
        _KERNELS.add(OpDef(op_type, _normal_domain(domain), since, kernel, deterministic))
        return kernel

    return decorate


def lookup(op_type: str, domain: str, opset: int, *, node_name: str = "") -> OpDef:
    """The catalogue entry for `op_type` in `domain` at `opset`; `UnsupportedOpError` if none."""
    return _KERNELS.find(op_type, domain, opset, node_name)


def lookup_node(node: Node, opset: int) -> OpDef:
    """The catalogue entry for `node` at `opset`."""
    return lookup(node.op_type, node.domain, opset, node_name=node.name)


def catalogue() -> dict[tuple[str, str], tuple[OpDef, ...]]:
    """Every registered kernel entry, by (domain, op type)."""
    return _KERNELS.all()


def shape_rule(
    op_type: str, *, op_class: OpClass, since: int = 1, domain: str = STANDARD
) -> Callable[[ShapeRule], ShapeRule]:
    """Decorator: register `rule` as `op_type`'s RDP shape rule from opset `since` on."""

    def decorate(rule: ShapeRule) -> ShapeRule:
        _SHAPE_RULES.add(ShapeDef(op_type, _normal_domain(domain), since, op_class, rule))
        return rule

    return decorate


def lookup_shape_rule(op_type: str, domain: str, opset: int, *, node_name: str = "") -> ShapeDef:
    """The shape rule of `op_type` at `opset`; `UnsupportedOpError` if none."""
    return _SHAPE_RULES.find(op_type, domain, opset, node_name)


def shape_rules() -> dict[tuple[str, str], tuple[ShapeDef, ...]]:
    """Every registered shape rule, by (domain, op type)."""
    return _SHAPE_RULES.all()


def as_array(value: Value, ctx: KernelContext, what: str) -> np.ndarray:
    """`value` as an array; a clear error when a sequence or nothing was given instead."""
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        raise ctx.fail(f"{what} is missing")
    if isinstance(value, (np.generic, int, float, bool)):
        return np.asarray(value)
    raise ctx.fail(f"{what} must be a tensor, got {type(value).__name__}")
