"""RDP, Rank and Dimension Propagation: sound symbolic shape inference over a whole model.

RDP runs the graph on facts instead of values ("run the graph, but on shapes"): each node's shape
rule (registered per op in the catalogue) turns its inputs' `TensorFact`s (element type, shape, and
for small integer tensors their value) into its outputs'. Values let shape arithmetic flow:
`Shape -> Gather -> Concat -> Reshape` ends in a reshape to `[N, H*W]`, not to unknown dims.

The walk:
1. Model inputs start from their declared types; each dim_param is an INPUT symbol, each unnamed
   dim an ANONYMOUS one. Constants start from their values.
2. Nodes are visited in dependency order; subgraphs when their control-flow node asks
   (`ShapeContext.run_subgraph`): If joins its branches (equal dims stay, differing dims become a
   BRANCH symbol that records both), Loop iterates its body to a fixpoint over the carried facts.
3. Rules that need two extents equal (`ShapeContext.same`) may learn the value of an input symbol
   (an unnamed input dim fixed by a weight's shape). Learned values are substituted into the input
   facts and the walk runs again, until nothing new is learned: this is the backward direction,
   from uses to inputs, expressed as unification.

Soundness: a dim is only ever an expression proven to equal the extent at run time, under the
recorded assumptions (which the runtime checks) and the learned input values (which the runtime
checks against the input shapes). What RDP cannot express becomes a fresh symbol, never a guess.
An op without a shape rule gets outputs of unknown rank and is listed in `RDPResult.unsupported`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy

from sod2.analysis.facts import (
    Assumption,
    SymbolInfo,
    SymbolOrigin,
    TensorFact,
    constant_fact,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.errors import Sod2Error
from sod2.ir.dims import Dim, as_dim, extent_symbol
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ir.types import OptionalType, SequenceType, Shape, TensorType
from sod2.ops.registry import OpClass, lookup_shape_rule
from sod2.passes.analysis import Analysis, AnalysisManager

MAX_ROUNDS = 4
"""Walks over the model at most: each round may learn input symbols for the next."""


@dataclass
class RDPResult:
    """Facts per tensor, the symbols they use, and what the runtime must check."""

    facts: dict[Tensor, TensorFact]
    symbols: dict[sympy.Symbol, SymbolInfo]
    assumptions: list[Assumption]
    classes: dict[Node, OpClass]
    learned: dict[sympy.Symbol, Dim]
    unsupported: list[str] = field(default_factory=list)

    def fact(self, tensor: Tensor) -> TensorFact:
        """The fact of `tensor` (KeyError for a tensor RDP never reached)."""
        return self.facts[tensor]

    def shape(self, tensor: Tensor) -> Shape:
        """The symbolic shape of `tensor`."""
        return self.facts[tensor].shape

    def is_resolved(self, dim: Dim) -> bool:
        """True when `dim` is known once the input shapes are: an int or an expression over
        input symbols only."""
        if isinstance(dim, int):
            return True
        return all(
            (info := self.symbols.get(s)) is not None and info.origin.from_inputs
            for s in dim.free_symbols
        )

    def input_symbols(self) -> list[sympy.Symbol]:
        """Symbols bound by the model's input shapes, by name."""
        return sorted(
            (s for s, i in self.symbols.items() if i.origin.from_inputs), key=lambda s: s.name
        )


class RDP(Analysis[RDPResult]):
    """Rank and Dimension Propagation over a model (see the module docstring)."""

    name = "rdp"

    def run(self, target: Model, analyses: AnalysisManager) -> RDPResult:  # type: ignore[override]
        if not isinstance(target, Model):
            raise Sod2Error("RDP analyses a Model (it needs the opset imports)")
        return propagate(target)


def propagate(model: Model) -> RDPResult:
    """Run RDP over `model` until it learns nothing more about its input symbols."""
    learned: dict[sympy.Symbol, Dim] = {}
    for _ in range(MAX_ROUNDS):
        walk = _Walk(model, learned)
        walk.run()
        new = {s: v for s, v in walk.learned.items() if s not in learned}
        if not new:
            return walk.result()
        learned = _compose(learned, new)
    return walk.result()


def _compose(old: dict[sympy.Symbol, Dim], new: dict[sympy.Symbol, Dim]) -> dict[sympy.Symbol, Dim]:
    """Substitutions `old` then `new`, as one map whose values use no substituted symbol."""
    combined = {s: _substitute(v, new) for s, v in old.items()}
    combined.update(new)
    return {s: _substitute(v, combined) for s, v in combined.items()}


def _substitute(dim: Dim, mapping: dict[sympy.Symbol, Dim]) -> Dim:
    if isinstance(dim, int) or not mapping or not (dim.free_symbols & mapping.keys()):
        return dim
    return as_dim(
        dim.xreplace({s: sympy.Integer(v) if isinstance(v, int) else v for s, v in mapping.items()})
    )


class _Walk:
    """One pass over the model with a fixed set of learned input values."""

    def __init__(self, model: Model, learned: dict[sympy.Symbol, Dim]) -> None:
        self.model = model
        self.substitutions = learned
        self.learned: dict[sympy.Symbol, Dim] = {}
        self.facts: dict[Tensor, TensorFact] = {}
        self.symbols: dict[sympy.Symbol, SymbolInfo] = {}
        self.assumptions: list[Assumption] = []
        self.classes: dict[Node, OpClass] = {}
        self.unsupported: list[str] = []
        self._counter = itertools.count()
        self._taken = _symbol_names(model)

    def result(self) -> RDPResult:
        return RDPResult(
            self.facts,
            self.symbols,
            self.assumptions,
            self.classes,
            dict(self.substitutions),
            self.unsupported,
        )

    # -- the walk ----------------------------------------------------------------------------

    def run(self) -> None:
        graph = self.model.graph
        for tensor in graph.inputs:
            self.facts[tensor] = self._input_fact(tensor)
        self._walk(graph)

    def _walk(self, graph: Graph) -> None:
        for tensor in graph.constants:
            self.facts[tensor] = constant_fact(tensor.const_value)  # type: ignore[arg-type]
        for node in graph.topological_order():
            self._visit(node)

    def _visit(self, node: Node) -> None:
        opset = self.model.opset(node.domain)
        try:
            entry = lookup_shape_rule(node.op_type, node.domain, opset, node_name=node.name)
        except Sod2Error as error:
            self.unsupported.append(str(error))
            self._unknown_outputs(node, "no shape rule")
            return
        context = ShapeContext(
            node,
            opset,
            fresh_symbol=self._fresh,
            learn=self._learn,
            assume=self.assumptions.append,
            origin_of=self._origin,
            run_subgraph=self._run_subgraph,
        )
        inputs = [None if t is None else self.facts[t] for t in node.inputs]
        outputs = list(entry.rule(context, inputs))
        if len(outputs) < len(node.outputs):
            outputs += [TensorFact(None)] * (len(node.outputs) - len(outputs))
        self.classes[node] = context.op_class or entry.op_class
        for tensor, fact in zip(node.outputs, outputs, strict=False):
            if tensor is not None:
                self.facts[tensor] = fact

    def _unknown_outputs(self, node: Node, note: str) -> None:
        for tensor in node.outputs:
            if tensor is None:
                continue
            declared = tensor.tensor_type
            rank = None if declared is None else declared.shape.rank
            dims = (
                None
                if rank is None
                else [self._fresh(node, SymbolOrigin.UNKNOWN, note=note) for _ in range(rank)]
            )
            self.facts[tensor] = TensorFact(
                None if declared is None else declared.dtype, Shape(dims)
            )

    def _run_subgraph(self, graph: Graph, inputs: Sequence[TensorFact]) -> list[TensorFact]:
        if len(inputs) != len(graph.inputs):
            raise Sod2Error(
                f"subgraph {graph.name!r} takes {len(graph.inputs)} inputs, got {len(inputs)}"
            )
        for tensor, fact in zip(graph.inputs, inputs, strict=True):
            self.facts[tensor] = fact
        self._walk(graph)
        return [self.facts[t] for t in graph.outputs]

    # -- symbols -----------------------------------------------------------------------------

    def _input_fact(self, tensor: Tensor) -> TensorFact:
        declared = _described_type(tensor)
        if declared is None:
            return TensorFact(None)
        if tensor.const_value is not None and declared.shape.dims is None:
            return constant_fact(tensor.const_value)
        dims = declared.shape.dims
        if dims is not None:
            for dim in dims:
                for symbol in () if isinstance(dim, int) else dim.free_symbols:
                    origin = (
                        SymbolOrigin.ANONYMOUS
                        if symbol.name.startswith("unk__")
                        else SymbolOrigin.INPUT
                    )
                    self.symbols.setdefault(
                        symbol, SymbolInfo(symbol, origin, note=f"input {tensor.name!r}")
                    )
            dims = [_substitute(d, self.substitutions) for d in dims]
        return TensorFact(declared.dtype, Shape(dims))

    def _origin(self, symbol: sympy.Symbol) -> SymbolOrigin | None:
        info = self.symbols.get(symbol)
        return None if info is None else info.origin

    def _fresh(
        self,
        node: Node,
        origin: SymbolOrigin,
        *,
        upper_bound: Dim | None = None,
        note: str = "",
        possible_values: tuple[Dim, ...] = (),
    ) -> sympy.Symbol:
        prefix = {"EXECUTION": "e", "BRANCH": "b", "UNKNOWN": "u"}.get(origin.name, "s")
        name = f"{prefix}{next(self._counter)}"
        while name in self._taken:
            name = f"{prefix}{next(self._counter)}"
        symbol = extent_symbol(name)  # execution may give 0 elements
        self.symbols[symbol] = SymbolInfo(
            symbol, origin, node.name, upper_bound, possible_values, note
        )
        return symbol

    def _learn(self, symbol: sympy.Symbol, value: Dim) -> None:
        if symbol not in self.learned:
            self.learned[symbol] = value


# -- facts of values ---------------------------------------------------------------------------


def _symbol_names(model: Model) -> set[str]:
    """Every symbol name the model's declared types use (fresh symbols must not collide)."""
    names: set[str] = set()
    for graph in [model.graph, *model.graph.subgraphs()]:
        for tensor in graph.tensors():
            if isinstance(tensor.type, TensorType):
                names.update(s.name for s in tensor.type.shape.symbols)
    return names


def _described_type(tensor: Tensor) -> TensorType | None:
    """The tensor type a fact describes: the tensor's own, or its elements' for a sequence or an
    optional (see sod2.ops.sequence)."""
    declared = tensor.type
    while isinstance(declared, (SequenceType, OptionalType)):
        declared = declared.element
    return declared if isinstance(declared, TensorType) else None
