"""The operator catalogue: one entry per (domain, op type, first opset version).

An `OpDef` is the single place where sod2 keeps what it knows about an operator; today that is its
reference kernel, written on numpy. Entries are versioned like ONNX schemas: an entry registered
`since=13` serves models importing opset 13 and later, until a newer entry takes over.

`lookup(node, opset)` returns the entry for a node, or raises `UnsupportedOpError` naming the op,
its domain, the opset and the node: an unknown op is never silently skipped.

Kernels receive a `KernelContext` (the node, its attributes, the opset, a way to run subgraphs)
and the input values in slot order (None for omitted optional inputs), and return the output
values in slot order. Values are numpy arrays, lists of arrays (sequences) or None (empty optional).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sod2.errors import Sod2Error, UnsupportedOpError

if TYPE_CHECKING:
    from sod2.ir.graph import Graph, Node

Value = Any
"""A runtime value: `numpy.ndarray`, a list of them (sequence), or None (empty optional)."""

Kernel = Callable[["KernelContext", Sequence[Value]], Sequence[Value]]
GraphRunner = Callable[["Graph", Sequence[Value]], list[Value]]

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


_CATALOGUE: dict[tuple[str, str], list[OpDef]] = {}


def _normal_domain(domain: str) -> str:
    return STANDARD if domain in ("", "ai.onnx") else domain


def register(
    op_type: str, *, since: int = 1, domain: str = STANDARD, deterministic: bool = True
) -> Callable[[Kernel], Kernel]:
    """Decorator: register `kernel` as `op_type`'s reference kernel from opset `since` on."""

    def decorate(kernel: Kernel) -> Kernel:
        entry = OpDef(op_type, _normal_domain(domain), since, kernel, deterministic)
        versions = _CATALOGUE.setdefault((entry.domain, op_type), [])
        if any(v.since == since for v in versions):
            raise Sod2Error(f"{op_type} since opset {since} is registered twice")
        bisect.insort(versions, entry, key=lambda v: v.since)
        return kernel

    return decorate


def lookup(op_type: str, domain: str, opset: int, *, node_name: str = "") -> OpDef:
    """The catalogue entry for `op_type` in `domain` at `opset`; `UnsupportedOpError` if none."""
    domain = _normal_domain(domain)
    versions = _CATALOGUE.get((domain, op_type))
    where = f" (node {node_name!r})" if node_name else ""
    qualified = op_type if domain == STANDARD else f"{domain}::{op_type}"
    if not versions:
        raise UnsupportedOpError(
            f"operator {qualified} (domain {domain or 'ai.onnx'!r}, opset {opset}) is not in sod2's "
            f"catalogue{where}"
        )
    index = bisect.bisect_right([v.since for v in versions], opset) - 1
    if index < 0:
        raise UnsupportedOpError(
            f"operator {qualified} at opset {opset}{where}: sod2 supports it from opset "
            f"{versions[0].since}"
        )
    return versions[index]


def lookup_node(node: Node, opset: int) -> OpDef:
    """The catalogue entry for `node` at `opset`."""
    return lookup(node.op_type, node.domain, opset, node_name=node.name)


def catalogue() -> dict[tuple[str, str], tuple[OpDef, ...]]:
    """Every registered entry, by (domain, op type)."""
    return {key: tuple(versions) for key, versions in sorted(_CATALOGUE.items())}


def as_array(value: Value, ctx: KernelContext, what: str) -> np.ndarray:
    """`value` as an array; a clear error when a sequence or nothing was given instead."""
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        raise ctx.fail(f"{what} is missing")
    if isinstance(value, (np.generic, int, float, bool)):
        return np.asarray(value)
    raise ctx.fail(f"{what} must be a tensor, got {type(value).__name__}")
