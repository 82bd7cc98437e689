"""What a shape rule may use while RDP runs it on one node.

A shape rule (registered per op in the catalogue with `@shape_rule`) receives a `ShapeContext` and
the `TensorFact`s of the node's inputs, and returns the facts of its outputs. The context gives it:

- the node's attributes and opset (`attr`, `opset`);
- `same(a, b, why)`: two extents the op needs equal. Proven equal: nothing to do. An input symbol
  against a more specific extent: RDP learns the symbol's value (a *substitution*, e.g. an
  unnamed input dim that a MatMul with constant weights fixes to 64). Otherwise the equality is
  recorded as an assumption for the runtime to check. Two constants that differ: the model is
  invalid, a `ShapeError` names the node and the extents;
- `broadcast(*shapes)`: ONNX multidirectional broadcasting. Dims of 1 give way; equal dims stay;
  two unrelated symbolic dims give `Max(a, b)`, exact under the assumption (recorded) that they
  are equal or one of them is 1;
- `fresh(origin, ...)`: a new symbol for an extent the analysis cannot express (EDO outputs, values
  it could not follow), with what is known of it (an upper bound);
- `run_subgraph(graph, input_facts)`: the facts of a subgraph's outputs, for control flow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sympy

from sod2.analysis.facts import Assumption, SymbolOrigin, TensorFact
from sod2.analysis.symbolic import dim_max, provably_equal
from sod2.errors import Sod2Error
from sod2.ir.dims import Dim
from sod2.ir.types import Shape

if TYPE_CHECKING:
    from sod2.ir.graph import Graph, Node
    from sod2.ops.registry import OpClass


class ShapeError(Sod2Error):
    """The model cannot be valid: an op's shape requirement fails for every input."""


class ShapeContext:
    """The helpers a shape rule uses; one per node visit (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        opset: int,
        *,
        fresh_symbol: Callable[..., sympy.Symbol],
        learn: Callable[[sympy.Symbol, Dim], None],
        assume: Callable[[Assumption], None],
        origin_of: Callable[[sympy.Symbol], SymbolOrigin | None],
        run_subgraph: Callable[[Graph, Sequence[TensorFact]], list[TensorFact]],
    ) -> None:
        self.node = node
        self.opset = opset
        self._fresh_symbol = fresh_symbol
        self._learn = learn
        self._assume = assume
        self._origin_of = origin_of
        self._run_subgraph = run_subgraph
        self.op_class: OpClass | None = None
        """Set by rules whose class depends on what RDP proves (control flow); else the
        registered class holds."""

    # -- reading -----------------------------------------------------------------------------

    def attr(self, name: str, default: Any = None) -> Any:
        """The node's attribute `name` as a plain value, or `default`."""
        return self.node.attr(name, default)

    def output_count(self) -> int:
        """How many outputs the node has (omitted optional outputs included)."""
        return len(self.node.outputs)

    # -- symbols -----------------------------------------------------------------------------

    def fresh(
        self,
        origin: SymbolOrigin = SymbolOrigin.UNKNOWN,
        *,
        upper_bound: Dim | None = None,
        note: str = "",
        possible_values: tuple[Dim, ...] = (),
    ) -> sympy.Symbol:
        """A new symbol for an extent only execution (or nothing) can tell."""
        return self._fresh_symbol(
            self.node, origin, upper_bound=upper_bound, note=note, possible_values=possible_values
        )

    def unknown_shape(self, rank: int | None, note: str) -> Shape:
        """A shape of `rank` (None: unknown rank) whose dims are fresh UNKNOWN symbols."""
        if rank is None:
            return Shape.unknown()
        return Shape([self.fresh(SymbolOrigin.UNKNOWN, note=note) for _ in range(rank)])

    # -- relations ---------------------------------------------------------------------------

    def same(self, left: Dim, right: Dim, why: str) -> Dim:
        """Two extents the op needs equal; returns the one to use (see the module docstring)."""
        if provably_equal(left, right):
            return left
        if isinstance(left, int) and isinstance(right, int):
            raise self.fail(f"{why}: {left} != {right}")
        for symbol, other in ((left, right), (right, left)):
            if self._learnable(symbol, other):
                self._learn(symbol, other)  # type: ignore[arg-type]
                return other
        self.assume(sympy.Eq(left, right), why)
        return left

    def _learnable(self, candidate: Dim, other: Dim) -> bool:
        """May RDP conclude `candidate := other`? Only for an input symbol, towards an extent at
        least as specific: an int, or an expression over input symbols that are not anonymous
        unless `candidate` is anonymous itself."""
        origin = self._origin_of(candidate) if isinstance(candidate, sympy.Symbol) else None
        if origin is None or not origin.from_inputs:
            return False
        if isinstance(other, int):
            return True
        if candidate in other.free_symbols:
            return False
        origins = [self._origin_of(symbol) for symbol in other.free_symbols]
        if not all(o is not None and o.from_inputs for o in origins):
            return False
        return origin is SymbolOrigin.ANONYMOUS or SymbolOrigin.ANONYMOUS not in origins

    def broadcast(self, *shapes: Shape) -> Shape:
        """The multidirectional broadcast of `shapes` (unknown rank if any rank is unknown)."""
        if any(s.dims is None for s in shapes):
            return Shape.unknown()
        rank = max((len(s.dims) for s in shapes), default=0)  # type: ignore[arg-type]
        padded = [(1,) * (rank - len(s.dims)) + tuple(s.dims) for s in shapes]  # type: ignore[arg-type]
        return Shape(
            [self._broadcast_dims([p[axis] for p in padded], axis) for axis in range(rank)]
        )

    def _broadcast_dims(self, dims: list[Dim], axis: int) -> Dim:
        distinct: list[Dim] = []
        for dim in dims:
            if dim == 1 or any(provably_equal(dim, seen) for seen in distinct):
                continue
            distinct.append(dim)
        if not distinct:
            return 1
        constants = {d for d in distinct if isinstance(d, int)}
        if len(constants) > 1:
            raise self.fail(f"dims {sorted(constants)} at axis {axis} do not broadcast")
        if len(distinct) == 1:
            return distinct[0]
        holds = sympy.And(
            *(
                sympy.Eq(a, b) | sympy.Eq(a, 1) | sympy.Eq(b, 1)
                for i, a in enumerate(distinct)
                for b in distinct[i + 1 :]
            )
        )
        self.assume(holds, f"broadcast at axis {axis}")
        return dim_max(*distinct)

    def assume(self, holds: sympy.Basic, reason: str) -> None:
        """Record a relation the op needs and RDP cannot prove (the runtime checks it)."""
        if holds is sympy.true:
            return
        if holds is sympy.false:
            raise self.fail(f"{reason} can never hold")
        self._assume(Assumption(self.node.name, self.node.op_type, holds, reason))

    # -- subgraphs and errors ----------------------------------------------------------------

    def run_subgraph(self, graph: Graph, inputs: Sequence[TensorFact]) -> list[TensorFact]:
        """The facts of `graph`'s outputs when its inputs have `inputs`."""
        return self._run_subgraph(graph, inputs)

    def classify(self, op_class: OpClass) -> None:
        """Give this node `op_class` instead of its registered class."""
        self.op_class = op_class

    def fail(self, message: str) -> ShapeError:
        """An error for an impossible shape: `raise ctx.fail("...")`."""
        return ShapeError(f"node {self.node.name!r} ({self.node.op_type}): {message}")
