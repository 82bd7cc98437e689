"""The mutable dataflow graph: tensors, nodes, graphs with nested subgraphs.

`Tensor`, `Node` and `Graph` are entities, compared by identity. A graph holds:
- its inputs, its constants and the outputs of its nodes: every tensor it defines;
- its nodes, in program order, inside a networkx `DiGraph` whose edges are data dependencies;
- its outputs: tensors visible in its scope;
- subgraphs (bodies of If, Loop, Scan), held as attributes of its nodes. A subgraph sees the tensors
  of every enclosing graph (outer scope); a node reading an outer tensor makes the control-flow node
  that encloses it depend on that tensor's producer.

Invariants, kept by every method here and checked by `sod2.ir.verify`:
- a tensor is defined once: it is a graph input, a constant, or an output of exactly one node;
- `tensor.uses` lists exactly the (node, input slot) and (graph, output slot) pairs that read it;
- a node reads only tensors visible in its scope: its own graph's or an enclosing graph's;
- tensor names are unique across a model, subgraphs included;
- the dependency edges of each DiGraph are exactly those the uses imply, and they form no cycle.

Passes never touch the DiGraph; they use the editing API (`add_node`, `Node.set_input`,
`Tensor.replace_all_uses_with`, `Graph.erase` ...). An edit that would break an invariant raises
`GraphEditError` and leaves the graph as it was.

Building a subgraph is a transaction. `outer.new_subgraph()` makes a graph that sees the outer scope
but is not yet part of the model: its names live in a table of its own and its reads of outer
tensors are held as pending. Only when a node takes it as an attribute do its names join the
model (renamed where they clash) and its reads become uses of the outer tensors. A subgraph that is
never attached leaves no trace in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from sod2.errors import GraphEditError
from sod2.ir.attributes import Attribute
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape, TensorType, Type

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Use:
    """One read of a tensor: input slot `index` of a node, or output slot `index` of a graph."""

    user: Node | Graph
    index: int

    @property
    def node(self) -> Node | None:
        """The reading node, or None when the tensor is read as a graph output."""
        return self.user if isinstance(self.user, Node) else None


class _Names:
    """The tensor and node names of one model (shared by a graph and all its subgraphs)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.nodes: dict[str, Node] = {}
        self._counters: dict[str, int] = {}

    def fresh(self, hint: str, taken: Callable[[str], bool]) -> str:
        """A name for which `taken` is false: `hint`, else `hint_1`, `hint_2` ..."""
        hint = hint or "t"
        if not taken(hint):
            return hint
        counter = self._counters.get(hint, 0)
        while True:
            counter += 1
            candidate = f"{hint}_{counter}"
            if not taken(candidate):
                self._counters[hint] = counter
                return candidate


class Tensor:
    """A value in the graph: a graph input, a constant, or a node output.

    Compared by identity. `type` may be None where the type is not known.
    """

    __slots__ = ("_name", "_uses", "const_value", "graph", "producer", "type")

    def __init__(self, name: str, type: Type | None, graph: Graph) -> None:
        self._name = name
        self.type = type
        self.graph: Graph | None = graph
        self.producer: Node | None = None
        self.const_value: np.ndarray | None = None
        self._uses: dict[Use, None] = {}

    # -- reading -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The tensor's name, unique in its model. Change it with `rename`."""
        return self._name

    @property
    def uses(self) -> tuple[Use, ...]:
        """Every (node, input slot) and (graph, output slot) reading this tensor."""
        return tuple(self._uses)

    @property
    def users(self) -> list[Node]:
        """The distinct nodes that read this tensor, in the order they started reading it."""
        return list(dict.fromkeys(use.user for use in self._uses if isinstance(use.user, Node)))

    def has_uses(self) -> bool:
        """True while some node or graph output reads this tensor."""
        return bool(self._uses)

    @property
    def is_graph_input(self) -> bool:
        """True for an input of its graph (including inputs with a default value)."""
        return self.graph is not None and self in self.graph._input_set

    @property
    def is_constant(self) -> bool:
        """True for a constant (an initializer or a folded value), not overridable by the caller."""
        return self.const_value is not None and not self.is_graph_input

    @property
    def is_graph_output(self) -> bool:
        """True when its own graph returns it as an output."""
        return any(use.user is self.graph for use in self._uses)

    @property
    def tensor_type(self) -> TensorType | None:
        """The type if it is a tensor type, else None."""
        return self.type if isinstance(self.type, TensorType) else None

    @property
    def dtype(self) -> DType | None:
        """Element type when the tensor has a tensor type, else None."""
        tensor_type = self.tensor_type
        return None if tensor_type is None else tensor_type.dtype

    @property
    def shape(self) -> Shape:
        """Shape when known, else `Shape.unknown()`."""
        tensor_type = self.tensor_type
        return Shape.unknown() if tensor_type is None else tensor_type.shape

    # -- editing -----------------------------------------------------------------------------

    def rename(self, name: str) -> None:
        """Give the tensor a new name, unique in its model."""
        if name == self._name:
            return
        graph = self._owner("rename")
        if graph._tensor_name_taken(name):
            raise GraphEditError(f"cannot rename {self._name!r} to {name!r}: the name is taken")
        del graph._names.tensors[self._name]
        graph._names.tensors[name] = self
        self._name = name
        graph._touch()

    def replace_all_uses_with(self, new: Tensor) -> None:
        """Make every reader of this tensor read `new` instead.

        Graph outputs are replaced too. The outputs of the top-level graph are the model's interface,
        so their names are kept: `new` takes this tensor's name (this one gets a fresh name). That
        is refused when `new` is itself an input or output of the top-level graph, whose name is
        part of the interface too; insert an Identity node then.
        """
        if new is self:
            return
        graph = self._owner("replace its uses")
        new._owner("be used")
        for use in self._uses:
            _check_can_read(use, new)
        interface = graph.root is graph and self.is_graph_output
        if interface and (new.is_graph_input or new.is_graph_output or new.graph is not graph):
            raise GraphEditError(
                f"cannot replace model output {self._name!r} by {new._name!r}: the output name is "
                f"part of the model's interface; insert an Identity node from {new._name!r} instead"
            )
        for use in list(self._uses):
            _unlink(self, use)
            _replace_slot(use, new)
            _link(new, use)
        if interface:
            old_name = self._name
            self.rename(graph.fresh_name(old_name + "_replaced"))
            new.rename(old_name)
        graph._touch()

    def _owner(self, action: str) -> Graph:
        if self.graph is None:
            raise GraphEditError(
                f"cannot {action}: tensor {self._name!r} was removed from its graph"
            )
        return self.graph

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self.type})"


class Node:
    """One operator application: op type and domain, typed attributes, inputs, outputs.

    Compared by identity. Omitted optional inputs and outputs are None. Subgraphs live in GRAPH and
    GRAPHS attributes (`subgraphs` lists them).
    """

    __slots__ = (
        "_attrs",
        "_inputs",
        "_name",
        "_outputs",
        "doc_string",
        "domain",
        "graph",
        "op_type",
    )

    def __init__(self, op_type: str, domain: str, name: str, graph: Graph) -> None:
        self.op_type = op_type
        self.domain = domain
        self._name = name
        self.graph: Graph | None = graph
        self.doc_string = ""
        self._inputs: list[Tensor | None] = []
        self._outputs: list[Tensor | None] = []
        self._attrs: dict[str, Attribute] = {}

    @property
    def name(self) -> str:
        """The node's name, unique in its model. Change it with `rename`."""
        return self._name

    def rename(self, name: str) -> None:
        """Give the node a new name, unique among the model's nodes."""
        graph = self._owner()
        if name == self._name:
            return
        if graph._node_name_taken(name):
            raise GraphEditError(
                f"cannot rename node {self._name!r} to {name!r}: the name is taken"
            )
        del graph._names.nodes[self._name]
        graph._names.nodes[name] = self
        self._name = name
        graph._touch()

    @property
    def inputs(self) -> tuple[Tensor | None, ...]:
        """Input tensors in slot order; None marks an omitted optional input."""
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Tensor | None, ...]:
        """Output tensors in slot order; None marks an omitted optional output."""
        return tuple(self._outputs)

    @property
    def attrs(self) -> Mapping[str, Attribute]:
        """The typed attributes, read-only (change them with `set_attr`)."""
        return dict(self._attrs)

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        """The plain value of attribute `name`, or `default` when absent."""
        found = self._attrs.get(name)
        if found is not None:
            return found.value
        if default is _MISSING:
            raise GraphEditError(f"node {self.name!r} ({self.op_type}) has no attribute {name!r}")
        return default

    @property
    def subgraphs(self) -> list[tuple[str, Graph]]:
        """(attribute name, subgraph) pairs, in attribute order."""
        return [(key, graph) for key, attr in self._attrs.items() for graph in attr.graphs]

    @property
    def qualified_op(self) -> str:
        """`op_type` with its domain when the domain is not the standard one."""
        return self.op_type if self.domain in ("", "ai.onnx") else f"{self.domain}::{self.op_type}"

    # -- editing -----------------------------------------------------------------------------

    def set_input(self, index: int, tensor: Tensor | None) -> None:
        """Make input slot `index` read `tensor` (None: omit an optional input)."""
        graph = self._owner()
        if not 0 <= index < len(self._inputs):
            raise GraphEditError(
                f"node {self.name!r} ({self.op_type}) has {len(self._inputs)} inputs; "
                f"no slot {index}; use set_inputs to change the count"
            )
        use = Use(self, index)
        if tensor is not None:
            _check_can_read(use, tensor)
        old = self._inputs[index]
        if old is not None:
            _unlink(old, use)
        self._inputs[index] = tensor
        if tensor is not None:
            _link(tensor, use)
        graph._touch()

    def set_inputs(self, tensors: Sequence[Tensor | None]) -> None:
        """Replace all inputs at once (the count may change)."""
        graph = self._owner()
        for index, tensor in enumerate(tensors):
            if tensor is not None:
                _check_can_read(Use(self, index), tensor)
        for index, old in enumerate(self._inputs):
            if old is not None:
                _unlink(old, Use(self, index))
        self._inputs = list(tensors)
        for index, tensor in enumerate(self._inputs):
            if tensor is not None:
                _link(tensor, Use(self, index))
        graph._touch()

    def set_attr(self, name: str, value: Any) -> None:
        """Set attribute `name` (a plain value or an `Attribute`); subgraphs get attached."""
        graph = self._owner()
        attr = Attribute.infer(value)
        old = self._attrs.get(name)
        new_graphs = [g for g in attr.graphs if not (old and g in old.graphs)]
        for subgraph in new_graphs:
            subgraph._check_attachable(graph, self)
        if old is not None:
            for subgraph in old.graphs:
                if subgraph not in attr.graphs:
                    subgraph._detach()
        self._attrs[name] = attr
        for subgraph in new_graphs:
            subgraph._attach(self)
        graph._touch()

    def remove_attr(self, name: str) -> None:
        """Remove attribute `name` (its subgraphs, if any, are dropped)."""
        graph = self._owner()
        old = self._attrs.pop(name, None)
        if old is None:
            raise GraphEditError(f"node {self.name!r} ({self.op_type}) has no attribute {name!r}")
        for subgraph in old.graphs:
            subgraph._detach()
        graph._touch()

    def _owner(self) -> Graph:
        if self.graph is None:
            raise GraphEditError(f"node {self.name!r} ({self.op_type}) was erased from its graph")
        return self.graph

    def __repr__(self) -> str:
        return f"Node({self.qualified_op} {self.name!r})"


class Graph:
    """A graph: inputs, constants, nodes in program order, outputs; possibly nested in a node.

    Build a top-level graph with `Graph(name)`; a subgraph with `outer.new_subgraph(name)`, then give
    it to a node as a GRAPH attribute.
    """

    def __init__(self, name: str = "main", *, _scope: Graph | None = None) -> None:
        self.name = name
        self.doc_string = ""
        self.parent: Node | None = None
        self._scope = _scope
        self._names = _Names()  # shared with the model once attached (see _attach)
        self._pending: dict[Use, Tensor] = {}  # reads of outer tensors while not attached
        self._dag: nx.DiGraph = nx.DiGraph()
        self._inputs: list[Tensor] = []
        self._input_set: set[Tensor] = set()
        self._constants: dict[Tensor, None] = {}
        self._outputs: list[Tensor] = []
        self._version = 0

    # -- structure ---------------------------------------------------------------------------

    @property
    def outer(self) -> Graph | None:
        """The enclosing graph (None for a top-level graph)."""
        return self.parent.graph if self.parent is not None else self._scope

    @property
    def root(self) -> Graph:
        """The top-level graph this graph is nested in (itself if top-level)."""
        graph = self
        while graph.outer is not None:
            graph = graph.outer
        return graph

    def scopes(self) -> Iterator[Graph]:
        """This graph, then each enclosing graph outwards."""
        graph: Graph | None = self
        while graph is not None:
            yield graph
            graph = graph.outer

    def sees(self, tensor: Tensor) -> bool:
        """True when `tensor` is in scope here: defined in this graph or an enclosing one."""
        return tensor.graph is not None and any(g is tensor.graph for g in self.scopes())

    @property
    def version(self) -> int:
        """A counter that every edit of this graph or of any graph nested in it increases."""
        return self._version

    def _touch(self) -> None:
        for graph in self.scopes():
            graph._version += 1

    # -- reading -----------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[Tensor, ...]:
        """The graph inputs in order."""
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        """The graph outputs in order (a tensor may appear more than once)."""
        return tuple(self._outputs)

    @property
    def constants(self) -> tuple[Tensor, ...]:
        """Constant tensors defined in this graph (not inputs with defaults)."""
        return tuple(self._constants)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in program order (see `topological_order` for a dependency order)."""
        return tuple(self._dag.nodes)

    def __len__(self) -> int:
        return self._dag.number_of_nodes()

    def __iter__(self) -> Iterator[Node]:
        return iter(tuple(self._dag.nodes))

    def tensors(self) -> Iterator[Tensor]:
        """Every tensor this graph defines: inputs, constants, then node outputs in order."""
        yield from self._inputs
        yield from self._constants
        for node in self._dag.nodes:
            yield from (t for t in node._outputs if t is not None)

    def walk(self) -> Iterator[Node]:
        """Every node of this graph and, depth-first, of its subgraphs."""
        for node in self._dag.nodes:
            yield node
            for _, subgraph in node.subgraphs:
                yield from subgraph.walk()

    def subgraphs(self) -> Iterator[Graph]:
        """Every graph nested in this one, at any depth."""
        for node in self._dag.nodes:
            for _, subgraph in node.subgraphs:
                yield subgraph
                yield from subgraph.subgraphs()

    def tensor(self, name: str) -> Tensor:
        """The tensor called `name` in this model (raises `KeyError` with the name)."""
        found = self.find_tensor(name)
        if found is None:
            raise KeyError(f"no tensor named {name!r} in this model")
        return found

    def find_tensor(self, name: str) -> Tensor | None:
        """The tensor called `name` in this model (or in this graph's scope), or None."""
        for table in self._tables():
            found = table.tensors.get(name)
            if found is not None:
                return found
        return None

    def fresh_name(self, hint: str) -> str:
        """A tensor name not yet taken, based on `hint`."""
        return self._names.fresh(hint, self._tensor_name_taken)

    def predecessors(self, node: Node) -> list[Node]:
        """Nodes of this graph that `node` depends on (outer-scope reads of subgraphs included)."""
        return list(self._dag.predecessors(node))

    def successors(self, node: Node) -> list[Node]:
        """Nodes of this graph that depend on `node`."""
        return list(self._dag.successors(node))

    def topological_order(self) -> list[Node]:
        """The nodes in an order where each comes after those it depends on.

        Deterministic, and as close to program order as dependencies allow: among ready nodes the
        earliest in program order goes first. Raises `GraphEditError` naming a cycle if there is one.
        """
        position = {node: index for index, node in enumerate(self._dag.nodes)}
        try:
            return list(nx.lexicographical_topological_sort(self._dag, key=position.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(self._dag)
            names = " -> ".join(f"{u.name}({u.op_type})" for u, _ in cycle)
            raise GraphEditError(f"graph {self.name!r} has a cycle: {names}") from None

    def is_topologically_ordered(self) -> bool:
        """True when program order already respects every dependency."""
        position = {node: index for index, node in enumerate(self._dag.nodes)}
        return all(position[u] < position[v] for u, v in self._dag.edges)

    # -- building ----------------------------------------------------------------------------

    def add_input(
        self, name: str, type: Type | None, *, default: np.ndarray | None = None
    ) -> Tensor:
        """Append a graph input; `default` is a value the caller may override (ONNX initializer)."""
        tensor = self._new_tensor(name, type)
        tensor.const_value = None if default is None else np.asarray(default)
        self._inputs.append(tensor)
        self._input_set.add(tensor)
        self._touch()
        return tensor

    def add_constant(self, value: np.ndarray | Any, name: str | None = None) -> Tensor:
        """Add a constant tensor holding `value`, called `name` (a fresh name when None)."""
        array = np.asarray(value)
        type = TensorType(DType.from_numpy(array.dtype), Shape(array.shape))
        tensor = self._new_tensor(self.fresh_name("const") if name is None else name, type)
        tensor.const_value = array
        self._constants[tensor] = None
        self._touch()
        return tensor

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Tensor | None] = (),
        *,
        outputs: int | Sequence[str | None] = 1,
        attrs: Mapping[str, Any] | None = None,
        domain: str = "",
        name: str | None = None,
        output_types: Sequence[Type | None] | None = None,
    ) -> Node:
        """Append a node reading `inputs`; returns it (its outputs are `node.outputs`).

        `outputs` is a count (names are made from the node name) or a list of names, None omitting
        an optional output. `attrs` maps names to plain values or `Attribute`s; GRAPH attributes
        must be subgraphs made by `self.new_subgraph`.
        """
        node_name = self._names.fresh(name or op_type.lower(), self._node_name_taken)
        node = Node(op_type, domain, node_name, self)
        built = {key: Attribute.infer(value) for key, value in (attrs or {}).items()}
        explicit = not isinstance(outputs, int)
        output_names: list[str | None] = (
            list(outputs)  # type: ignore[arg-type]
            if explicit
            else [
                f"{node_name}_out{i}" if outputs > 1 else f"{node_name}_out"  # type: ignore[operator]
                for i in range(outputs)
            ]  # type: ignore[arg-type]
        )
        self._check_new_node(
            node, inputs, built, output_names if explicit else [], output_types, len(output_names)
        )
        self._dag.add_node(node)
        self._names.nodes[node_name] = node
        node._attrs = built
        for attr in built.values():
            for subgraph in attr.graphs:
                subgraph._attach(node)
        for index, out_name in enumerate(output_names):
            tensor = None
            if out_name is not None:
                out_type = output_types[index] if output_types else None
                tensor = self._new_tensor(
                    out_name if explicit else self.fresh_name(out_name), out_type
                )
                tensor.producer = node
            node._outputs.append(tensor)
        node._inputs = list(inputs)
        for index, tensor in enumerate(node._inputs):
            if tensor is not None:
                _link(tensor, Use(node, index))
        self._touch()
        return node

    def new_subgraph(self, name: str) -> Graph:
        """A new empty graph nested in this one's scope, to attach to a node of this graph."""
        return Graph(name, _scope=self)

    def set_outputs(self, tensors: Sequence[Tensor]) -> None:
        """Make `tensors` the graph outputs, in order."""
        for index, tensor in enumerate(tensors):
            _check_can_read(Use(self, index), tensor)
        for index, old in enumerate(self._outputs):
            _unlink(old, Use(self, index))
        self._outputs = list(tensors)
        for index, tensor in enumerate(self._outputs):
            _link(tensor, Use(self, index))
        self._touch()

    def add_output(self, tensor: Tensor) -> None:
        """Append `tensor` to the graph outputs."""
        self.set_outputs([*self._outputs, tensor])

    # -- removing ----------------------------------------------------------------------------

    def erase(self, node: Node) -> None:
        """Remove `node`; refused while any of its outputs is still read."""
        if node.graph is not self:
            raise GraphEditError(
                f"node {node.name!r} ({node.op_type}) is not in graph {self.name!r}"
            )
        for tensor in node._outputs:
            if tensor is not None and tensor._uses:
                readers = ", ".join(_describe(use) for use in list(tensor._uses)[:5])
                raise GraphEditError(
                    f"cannot erase node {node.name!r} ({node.op_type}): its output "
                    f"{tensor.name!r} is still read by {readers}; replace those uses first"
                )
        for index, tensor in enumerate(node._inputs):
            if tensor is not None:
                _unlink(tensor, Use(node, index))
        for attr in node._attrs.values():
            for subgraph in attr.graphs:
                subgraph._detach()
        for tensor in node._outputs:
            if tensor is not None:
                self._drop_tensor(tensor)
        self._dag.remove_node(node)
        self._names.nodes.pop(node.name, None)
        node.graph = None
        self._touch()

    def remove_input(self, tensor: Tensor) -> None:
        """Remove a graph input; refused while it is read."""
        if tensor not in self._input_set:
            raise GraphEditError(f"{tensor.name!r} is not an input of graph {self.name!r}")
        self._refuse_if_read(tensor, "remove input")
        self._inputs.remove(tensor)
        self._input_set.discard(tensor)
        self._drop_tensor(tensor)
        self._touch()

    def remove_constant(self, tensor: Tensor) -> None:
        """Remove a constant; refused while it is read."""
        if tensor not in self._constants:
            raise GraphEditError(f"{tensor.name!r} is not a constant of graph {self.name!r}")
        self._refuse_if_read(tensor, "remove constant")
        del self._constants[tensor]
        self._drop_tensor(tensor)
        self._touch()

    def reorder(self, order: Sequence[Node]) -> None:
        """Set program order to `order`, a permutation of the nodes (dependencies not required)."""
        if len(order) != len(self) or set(order) != set(self._dag.nodes):
            raise GraphEditError(f"reorder of graph {self.name!r} must list each node exactly once")
        dag = nx.DiGraph()
        dag.add_nodes_from(order)
        dag.add_edges_from(self._dag.edges(data=True))
        self._dag = dag
        self._touch()

    # -- internals ---------------------------------------------------------------------------

    def _tables(self) -> list[_Names]:
        """The name tables in scope here: this graph's, then enclosing ones (no repeats)."""
        tables: list[_Names] = []
        for graph in self.scopes():
            if not any(t is graph._names for t in tables):
                tables.append(graph._names)
        return tables

    def _tensor_name_taken(self, name: str) -> bool:
        return any(name in table.tensors for table in self._tables())

    def _node_name_taken(self, name: str) -> bool:
        return any(name in table.nodes for table in self._tables())

    def _new_tensor(self, name: str, type: Type | None) -> Tensor:
        if self._tensor_name_taken(name):
            raise GraphEditError(f"tensor name {name!r} is already taken in this model")
        tensor = Tensor(name, type, self)
        self._names.tensors[name] = tensor
        return tensor

    def _drop_tensor(self, tensor: Tensor) -> None:
        self._names.tensors.pop(tensor.name, None)
        tensor.graph = None

    def _refuse_if_read(self, tensor: Tensor, action: str) -> None:
        if tensor._uses:
            readers = ", ".join(_describe(use) for use in list(tensor._uses)[:5])
            raise GraphEditError(f"cannot {action} {tensor.name!r}: still read by {readers}")

    def _check_new_node(
        self,
        node: Node,
        inputs: Sequence[Tensor | None],
        attrs: Mapping[str, Attribute],
        explicit_names: Sequence[str | None],
        output_types: Sequence[Type | None] | None,
        output_count: int,
    ) -> None:
        for index, tensor in enumerate(inputs):
            if tensor is not None:
                _check_can_read(Use(node, index), tensor)
        for attr in attrs.values():
            for subgraph in attr.graphs:
                subgraph._check_attachable(self, node)
        named = [n for n in explicit_names if n is not None]
        taken = [n for n in named if self._tensor_name_taken(n)]
        if taken or len(set(named)) != len(named):
            raise GraphEditError(
                f"node {node.name!r} ({node.op_type}): output names must be new and distinct; "
                f"taken or repeated: {taken or named}"
            )
        if output_types is not None and len(output_types) != output_count:
            raise GraphEditError(
                f"node {node.name!r} ({node.op_type}): {len(output_types)} output types for "
                f"{output_count} outputs"
            )

    def _check_attachable(self, outer: Graph, node: Node) -> None:
        """Refuse to attach this subgraph to `node` (of `outer`) if it is taken or would cycle."""
        if self.parent is not None:
            raise GraphEditError(
                f"subgraph {self.name!r} already belongs to node {self.parent.name!r}"
            )
        if self._scope is not outer:
            raise GraphEditError(
                f"subgraph {self.name!r} was not made by graph {outer.name!r}.new_subgraph(); "
                f"a subgraph can only be attached to a node of the graph that made it"
            )
        for tensor in self._pending.values():
            _check_can_read(Use(node, 0), tensor)  # the node will read what its subgraph reads

    def _attach(self, node: Node) -> None:
        """Make this subgraph part of `node`'s graph: join its names, turn pending reads into uses."""
        self.parent = node
        assert node.graph is not None
        self._merge_names(node.graph._names)
        pending, self._pending = self._pending, {}
        for use, tensor in pending.items():
            _link(tensor, use)

    def _merge_names(self, table: _Names) -> None:
        own = self._names
        if own is table:
            return
        for name, tensor in own.tensors.items():
            if name in table.tensors:
                tensor._name = table.fresh(name, lambda n: n in table.tensors or n in own.tensors)
            table.tensors[tensor._name] = tensor
        for name, node in own.nodes.items():
            if name in table.nodes:
                node._name = table.fresh(name, lambda n: n in table.nodes or n in own.nodes)
            table.nodes[node._name] = node
        for graph in [self, *self.subgraphs()]:
            graph._names = table

    def _detach(self) -> None:
        """Drop this subgraph: its reads of outer tensors end, its names leave the model."""
        inside = [self, *self.subgraphs()]
        for tensor, use in _crossing_reads(inside):
            _unlink(tensor, use)
        for graph in inside:
            for tensor in list(graph.tensors()):
                graph._drop_tensor(tensor)
            for node in graph._dag.nodes:
                graph._names.nodes.pop(node.name, None)
                node.graph = None
        self.parent = None
        self._scope = None

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes)"


# -- use bookkeeping ---------------------------------------------------------------------------


def _user_graph(use: Use) -> Graph | None:
    """The graph in which the use happens."""
    return use.user if isinstance(use.user, Graph) else use.user.graph


def anchor_node(use: Use, scope: Graph) -> Node | None:
    """The node of `scope` that contains `use`: the reading node itself, or the control-flow node
    whose subgraph reads (None: the use is `scope`'s own output, or outside `scope`)."""
    user: Node | Graph | None = use.user
    while user is not None:
        if isinstance(user, Node):
            if user.graph is scope:
                return user
            user = user.graph
        else:
            if user is scope:
                return None
            user = user.parent
    return None


def _add_edge(tensor: Tensor, use: Use) -> None:
    """Record the dependency edge producer -> anchor that `use` of `tensor` implies."""
    owner = tensor.graph
    if tensor.producer is None or owner is None:
        return
    anchor = anchor_node(use, owner)
    if anchor is None:
        return
    dag = owner._dag
    if dag.has_edge(tensor.producer, anchor):
        dag.edges[tensor.producer, anchor]["links"] += 1
    else:
        dag.add_edge(tensor.producer, anchor, links=1)


def _remove_edge(tensor: Tensor, use: Use) -> None:
    owner = tensor.graph
    if tensor.producer is None or owner is None:
        return
    anchor = anchor_node(use, owner)
    if anchor is None or not owner._dag.has_edge(tensor.producer, anchor):
        return
    data = owner._dag.edges[tensor.producer, anchor]
    data["links"] -= 1
    if data["links"] == 0:
        owner._dag.remove_edge(tensor.producer, anchor)


def _pending_holder(use: Use, owner: Graph | None) -> Graph | None:
    """The unattached graph holding `use` apart from `owner`'s model; None once attached."""
    graph = _user_graph(use)
    while graph is not None and graph is not owner:
        if graph.parent is None:
            return graph
        graph = graph.parent.graph
    return None


def _link(tensor: Tensor, use: Use) -> None:
    holder = _pending_holder(use, tensor.graph)
    if holder is not None:
        holder._pending[use] = tensor
        return
    tensor._uses[use] = None
    _add_edge(tensor, use)


def _unlink(tensor: Tensor, use: Use) -> None:
    if use in tensor._uses:
        _remove_edge(tensor, use)
        del tensor._uses[use]
        return
    holder = _pending_holder(use, tensor.graph)
    if holder is not None:
        holder._pending.pop(use, None)


def _crossing_reads(inside: list[Graph]) -> list[tuple[Tensor, Use]]:
    """(tensor, use) pairs where a graph of `inside` reads a tensor defined outside them."""
    members = set(inside)
    found = []
    for graph in inside:
        for node in graph._dag.nodes:
            for index, tensor in enumerate(node._inputs):
                if tensor is not None and tensor.graph not in members:
                    found.append((tensor, Use(node, index)))
        for index, tensor in enumerate(graph._outputs):
            if tensor.graph not in members:
                found.append((tensor, Use(graph, index)))
    return found


def _replace_slot(use: Use, new: Tensor) -> None:
    if isinstance(use.user, Node):
        use.user._inputs[use.index] = new
    else:
        use.user._outputs[use.index] = new


def _check_can_read(use: Use, tensor: Tensor) -> None:
    """Refuse a read of `tensor` at `use` that is out of scope or would close a cycle."""
    where = _user_graph(use)
    if tensor.graph is None:
        raise GraphEditError(
            f"tensor {tensor.name!r} was removed from its graph and cannot be read"
        )
    if where is None or not where.sees(tensor):
        raise GraphEditError(
            f"{_describe(use)} cannot read tensor {tensor.name!r}: it is defined in graph "
            f"{tensor.graph.name!r}, which is not in scope there"
        )
    if tensor.producer is None:
        return
    anchor = anchor_node(use, tensor.graph)
    dag = tensor.graph._dag
    if anchor is None or anchor not in dag:  # a node being added has no dependents yet
        return
    if anchor is tensor.producer or nx.has_path(dag, anchor, tensor.producer):
        raise GraphEditError(
            f"{_describe(use)} cannot read tensor {tensor.name!r}: its producer "
            f"{tensor.producer.name!r} depends on that node, so the graph would have a cycle"
        )


def _describe(use: Use) -> str:
    if isinstance(use.user, Node):
        return f"input {use.index} of node {use.user.name!r} ({use.user.op_type})"
    return f"output {use.index} of graph {use.user.name!r}"


def iter_tensors(graphs: Iterable[Graph]) -> Iterator[Tensor]:
    """Every tensor defined by the given graphs."""
    for graph in graphs:
        yield from graph.tensors()
