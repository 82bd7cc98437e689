"""Planned execution: the reference interpreter with every planned tensor living in one arena.

This is how a memory plan is checked end to end. The model runs with the catalogue's reference
kernels, in the plan's order, but each intermediate that the plan places is copied into its slot of
a single `uint8` arena right after its node runs, and every later node reads it *from the arena*.
A plan that puts two tensors alive at the same time in overlapping bytes corrupts one of them, and
the outputs differ from a plain reference run. To catch reads after a storage's last planned use,
a storage's bytes are poisoned (all 0xFF) as soon as its lifetime ends; a control-flow node's
scratch storage is poisoned before its subgraphs run, and they run in it with their own plans.

Views write the same bytes at the same address (a no-op when the plan is right); in-place outputs
overwrite their input's bytes, as a kernel writing in place would. A value that is not planned
(a graph output, a subgraph's result) but is the arena's bytes, as when an If branch returns a
tensor of the enclosing graph, is copied out: its storage may be reused after its last read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sod2.analysis.rdp import RDPResult
from sod2.backend.reference import Environment, ReferenceInterpreter, RunResult
from sod2.errors import Sod2Error
from sod2.ir.graph import Graph, Node
from sod2.ir.model import Model
from sod2.ir.types import CONTAINER_TYPES
from sod2.opt.memory_plan import ConcretePlan, GraphPlan, MemoryPlan

POISON = 0xFF


def bind_symbols(model: Model, rdp: RDPResult, feeds: Mapping[str, Any]) -> dict[str, int]:
    """The value of every input symbol, read off the shapes of `feeds` (a symbol that several
    inputs share must get one value: a conflict is an error naming both)."""
    binding: dict[str, int] = {}
    where: dict[str, str] = {}
    for tensor in model.graph.inputs:
        if tensor.name not in feeds or isinstance(tensor.type, CONTAINER_TYPES):
            continue  # sequences and optionals bind no symbols of their own
        fact = rdp.facts.get(tensor)
        if fact is None or fact.shape.dims is None:
            continue
        shape = np.shape(feeds[tensor.name])
        if len(shape) != len(fact.shape.dims):
            raise Sod2Error(
                f"input {tensor.name!r} has rank {len(shape)}, the model expects {fact.shape}"
            )
        for axis, dim in enumerate(fact.shape.dims):
            if isinstance(dim, int) or not dim.is_Symbol:
                continue
            value = int(shape[axis])
            if binding.setdefault(dim.name, value) != value:
                raise Sod2Error(
                    f"symbol {dim.name} is {binding[dim.name]} in {where[dim.name]} but {value} in "
                    f"input {tensor.name!r} dim {axis}"
                )
            where.setdefault(dim.name, f"input {tensor.name!r} dim {axis}")
    return binding


def bindable_symbols(model: Model, rdp: RDPResult) -> set[str]:
    """The input symbols that `bind_symbols` reads off tensor inputs. Symbols that appear only in
    the element shapes of sequence or optional inputs are not among them: each element may have
    its own value."""
    names: set[str] = set()
    for tensor in model.graph.inputs:
        fact = rdp.facts.get(tensor)
        if isinstance(tensor.type, CONTAINER_TYPES) or fact is None or fact.shape.dims is None:
            continue
        names |= {d.name for d in fact.shape.dims if not isinstance(d, int) and d.is_Symbol}
    return names


class PlannedInterpreter(ReferenceInterpreter):
    """A reference interpreter whose planned tensors live in the plan's arena (module docstring)."""

    def __init__(self, model: Model, plan: MemoryPlan) -> None:
        super().__init__(model)
        self.plan = plan
        self._frames: dict[Graph, tuple[GraphPlan, ConcretePlan, int]] = {}
        self.arena = np.zeros(0, dtype=np.uint8)
        self._binding: dict[str, int] = {}

    def run(self, feeds: Mapping[str, Any], *, intermediates: bool = False) -> RunResult:
        """Run with the plan instantiated for the symbols `feeds` bind."""
        self._binding = bind_symbols(self.model, self.plan.rdp, feeds)
        top = self.plan.top
        concrete = top.instantiate(self._binding)
        self.arena = np.full(concrete.arena_bytes, POISON, dtype=np.uint8)
        self._frames = {self.model.graph: (top, concrete, 0)}
        return super().run(feeds, intermediates=intermediates)

    def _run_nodes(self, graph: Graph, env: Environment) -> None:
        frame = self._frames.get(graph)
        if frame is None:
            super()._run_nodes(graph, env)
            return
        plan, concrete, base = frame
        sizes = concrete.sizes(self._binding)
        ending: dict[int, list[int]] = {}
        for index, storage in enumerate(plan.storages):
            ending.setdefault(storage.end, []).append(index)
        for step, node in enumerate(plan.order):
            self._enter_subgraphs(plan, concrete, base, node, step, sizes)
            self._run_node(node, env)
            for tensor in node.outputs:
                if tensor is None:
                    continue
                located = plan.addresses.get(tensor)
                if located is None:
                    env[tensor] = self._own(env[tensor])
                    continue
                index = located[0]
                address = base + concrete.address(tensor, self._binding)  # type: ignore[operator]
                limit = base + int(concrete.offsets[index]) + int(sizes[index])
                env[tensor] = self._store(node, tensor.name, env[tensor], address, limit)  # type: ignore[index]
            for index in ending.get(step, ()):
                start = base + int(concrete.offsets[index])
                self.arena[start : start + int(sizes[index])] = POISON

    def _enter_subgraphs(
        self,
        plan: GraphPlan,
        concrete: ConcretePlan,
        base: int,
        node: Node,
        step: int,
        sizes: np.ndarray,
    ) -> None:
        """Poison `node`'s scratch storage and give each of its subgraphs its plan inside it."""
        if node not in plan.subplans:
            return
        scratch = [i for i, s in enumerate(plan.storages) if s.scratch_of is node]
        at = base + int(concrete.offsets[scratch[0]]) if scratch else base
        room = int(sizes[scratch[0]]) if scratch else 0
        self.arena[at : at + room] = POISON
        for subgraph, subplan in plan.subplans[node].items():
            inner = subplan.instantiate(self._binding)
            if inner.arena_bytes > room:
                raise Sod2Error(
                    f"node {node.name!r}: subgraph {subgraph!r} needs {inner.arena_bytes} bytes, "
                    f"its scratch storage has {room}"
                )
            self._frames[subplan.graph] = (subplan, inner, at)

    def _own(self, value: Any) -> Any:
        """`value`, copied out when it is the arena's bytes (an If that returns an outer tensor
        hands back that tensor's storage, which the plan may reuse after its last read)."""
        if isinstance(value, np.ndarray) and np.shares_memory(value, self.arena):
            return value.copy()
        return value

    def _store(self, node: Node, name: str, value: Any, address: int, limit: int) -> Any:
        """Copy `value` into the arena at `address` and return the arena's view of it."""
        if not isinstance(value, np.ndarray | np.generic):
            return value
        array = np.asarray(value).copy(order="C")  # (ascontiguousarray would make 0-d 1-d)
        if address + array.nbytes > limit:
            raise Sod2Error(
                f"node {node.name!r}: tensor {name!r} needs {array.nbytes} bytes at {address}, "
                f"beyond its storage's end {limit}"
            )
        self.arena[address : address + array.nbytes] = array.reshape(-1).view(np.uint8)
        stored = np.frombuffer(self.arena, dtype=array.dtype, count=array.size, offset=address)
        return stored.reshape(array.shape)


def run_planned(model: Model, plan: MemoryPlan, feeds: Mapping[str, Any]) -> RunResult:
    """Run `model` once with its intermediates in `plan`'s arena (module docstring)."""
    return PlannedInterpreter(model, plan).run(feeds)
