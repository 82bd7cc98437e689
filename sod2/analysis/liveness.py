"""Liveness: when each tensor's memory is needed, and which tensors can share memory.

Steps are positions in an execution order of one graph's nodes (step `i` runs `order[i]`). A node
with subgraphs (If, Loop, Scan) is one step: everything its subgraphs read from the enclosing
graph is read *at that step*, so such a tensor stays alive across the whole control-flow node.

Every tensor of the graph gets a `Role`: a graph input, a constant, a graph output, or an
intermediate (produced by a node, not returned). Only intermediates are planned into the arena;
inputs and constants live in the caller's memory, outputs are handed to the caller.

Tensors are grouped into *storages*, the unit of memory planning:

- a view (`sod2.ops.memory.VIEW_OPS`, and a `Slice` whose selected block is contiguous) stores
  its output inside its input's storage, at a byte offset (0 except for slices). Views do not
  depend on the order, so they are found once (`find_views`);
- an elementwise op (`INPLACE_OPS`, or a fused elementwise group) writes over an input whose storage dies at that very step,
  when the output has the same size and element width. This depends on the order, so it is
  decided when the storages of an order are built (`storages`).

A storage holds its tensors' bytes from the step its first tensor is produced to the step its last
tensor is last read (inclusive at both ends: a node's inputs are alive while it writes its
outputs). A storage that contains a graph output is the caller's (role OUTPUT); one rooted at an
input or constant is external memory (role INPUT / CONSTANT); neither is planned.

Sizes are symbolic bytes from RDP: `prod(dims) * element size`, rounded up to `ALIGNMENT` unless
provably a multiple already. A tensor whose size RDP could not express (unknown rank, non-tensor
values such as sequences) is *unplanned*: the runtime allocates it, and the plan lists why. So is
a tensor that a node puts into a sequence or an optional (SequenceInsert, SequenceConstruct,
Optional, ...): the container keeps it, or a view of it, beyond the reads liveness can see.

Invariants: every tensor belongs to at most one storage; a storage's tensors have the same role;
a view's byte range lies inside its storage; an in-place pair has provably equal sizes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from sod2.analysis.facts import TensorFact
from sod2.analysis.rule_kit import facts_agree
from sod2.analysis.symbolic import ceil_div, provably_equal
from sod2.ir.dims import Dim
from sod2.ir.graph import Graph, Node, Tensor, anchor_node
from sod2.ir.types import CONTAINER_TYPES
from sod2.ops.memory import (
    CONTIGUOUS_VIEW_OPS,
    VIEW_OPS,
    may_write_in_place,
    overwritable_inputs,
    streamed_input,
)

ALIGNMENT = 64
"""Every storage starts at a multiple of this many bytes (a cache line; what SIMD loads like)."""


class Role(enum.Enum):
    """What a tensor is to its graph, which decides who owns its memory."""

    INPUT = "input"
    CONSTANT = "constant"
    OUTPUT = "output"
    INTERMEDIATE = "intermediate"


def role_of(tensor: Tensor) -> Role:
    """The role of `tensor` in its own graph."""
    if tensor.is_graph_output:
        return Role.OUTPUT
    if tensor.is_graph_input:
        return Role.INPUT
    if tensor.is_constant:
        return Role.CONSTANT
    return Role.INTERMEDIATE


def tensor_bytes(fact: TensorFact | None) -> Dim | None:
    """The exact number of bytes of a tensor with this fact, or None when unknown."""
    if fact is None or fact.dtype is None or fact.shape.dims is None:
        return None
    count: Dim = math.prod(fact.shape.dims, start=1)
    bits = fact.dtype.bits
    if bits % 8 == 0:
        return _as_dim(count * (bits // 8))
    return ceil_div(count * bits, 8)


def aligned(size: Dim) -> Dim:
    """`size` rounded up to a multiple of `ALIGNMENT` (unchanged when provably a multiple)."""
    if isinstance(size, int):
        return -(-size // ALIGNMENT) * ALIGNMENT
    if _whole_lines(size):
        return size
    terms = sympy.expand(size).as_coefficients_dict()
    if all(c.is_Integer and c % ALIGNMENT == 0 for c in terms.values()):
        return size
    return _as_dim(ceil_div(size, ALIGNMENT) * ALIGNMENT)


def _whole_lines(expr: Dim) -> bool:
    """Whether `expr` is a multiple of ALIGNMENT by its structure alone: an integer multiple, a
    product with such a factor, a sum, Max or Min of such terms. (A plan's Max and Min of sums
    of aligned sizes are checked so, without sympy's assumptions, which may evaluate them
    numerically and fail.)"""
    if isinstance(expr, int) or getattr(expr, "is_Integer", False):
        return int(expr) % ALIGNMENT == 0
    if isinstance(expr, sympy.Mul):
        return any(a.is_Integer and int(a) % ALIGNMENT == 0 for a in expr.args)
    if isinstance(expr, (sympy.Add, sympy.Max, sympy.Min)):
        return all(_whole_lines(a) for a in expr.args)
    return False


def _as_dim(value: int | sympy.Expr) -> Dim:
    if isinstance(value, int):
        return value
    value = sympy.expand(value)
    return int(value) if value.is_Integer else value


# -- views ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """`tensor` is stored inside `base`'s bytes, starting `offset` bytes in (`base` is a root:
    never itself a view)."""

    tensor: Tensor
    base: Tensor
    offset: Dim
    op_type: str


def find_views(graph: Graph, facts: Mapping[Tensor, TensorFact]) -> dict[Tensor, View]:
    """Every output of `graph`'s nodes that can alias its input, resolved to the root storage."""
    views: dict[Tensor, View] = {}
    for node in graph.topological_order():
        if node.op_type not in VIEW_OPS and node.op_type not in CONTIGUOUS_VIEW_OPS:
            continue
        source, result = node.inputs[0], node.outputs[0]
        if source is None or result is None:
            continue
        if source.graph is not graph or not _same_width(facts.get(source), facts.get(result)):
            continue
        offset: Dim | None = 0
        if node.op_type in CONTIGUOUS_VIEW_OPS:
            offset = contiguous_slice_offset(node, facts)
        if offset is None:
            continue
        parent = views.get(source)
        base = source if parent is None else parent.base
        total = offset if parent is None else _as_dim(parent.offset + offset)
        views[result] = View(result, base, total, node.op_type)
    return views


def _same_width(a: TensorFact | None, b: TensorFact | None) -> bool:
    return (
        a is not None
        and b is not None
        and a.dtype is not None
        and a.dtype == b.dtype
        and a.shape.dims is not None
        and b.shape.dims is not None
    )


def contiguous_slice_offset(node: Node, facts: Mapping[Tensor, TensorFact]) -> Dim | None:
    """The byte offset of a `Slice` output inside its input when the selected block is one
    contiguous range of the input's bytes, else None.

    Contiguous when every sliced axis has step 1 and, with `k` the outermost sliced axis, every axis
    before `k` has extent 1 and every axis after `k` is whole (not sliced). Needs constant
    starts/axes/steps (values known to RDP) and nonnegative or negative-from-end integer starts.
    """
    data = facts.get(node.inputs[0]) if node.inputs[0] is not None else None
    if data is None or data.shape.dims is None or data.dtype is None:
        return None
    dims = data.shape.dims
    starts = _int_values(node, 1, facts)
    if starts is None:
        return None
    axes = _int_values(node, 3, facts) or list(range(len(starts)))
    steps = _int_values(node, 4, facts) or [1] * len(starts)
    if len(axes) != len(starts) or len(steps) != len(starts) or any(s != 1 for s in steps):
        return None
    axes = [a + len(dims) if a < 0 else a for a in axes]
    if len(set(axes)) != len(axes) or not all(0 <= a < len(dims) for a in axes):
        return None
    output = facts.get(node.outputs[0]) if node.outputs[0] is not None else None
    if output is None or output.shape.dims is None:
        return None
    sliced = [a for a in axes if not provably_equal(output.shape.dims[a], dims[a])]
    if not sliced:
        return 0
    if len(sliced) > 1 or any(dims[a] != 1 for a in range(sliced[0])):
        return None
    axis = sliced[0]
    start = starts[axes.index(axis)]
    extent = dims[axis]
    first = sympy.Max(0, sympy.Min(start, extent)) if start >= 0 else sympy.Max(0, extent + start)
    inner = math.prod(dims[axis + 1 :], start=1)
    return _as_dim(first * inner * (data.dtype.bits // 8)) if data.dtype.bits % 8 == 0 else None


def _int_values(node: Node, index: int, facts: Mapping[Tensor, TensorFact]) -> list[int] | None:
    if index >= len(node.inputs) or node.inputs[index] is None:
        return None
    fact = facts.get(node.inputs[index])  # type: ignore[arg-type]
    if fact is None or fact.value is None or not all(isinstance(v, int) for v in fact.value):
        return None
    return [int(v) for v in fact.value]  # type: ignore[arg-type]


# -- reads and storages -----------------------------------------------------------------------


def read_steps(graph: Graph, order: Sequence[Node]) -> dict[Tensor, list[int]]:
    """For each tensor defined in `graph` or an enclosing scope, the steps of `order` that read it
    (a read inside a subgraph counts as a read by the control-flow node that holds it)."""
    step = {node: index for index, node in enumerate(order)}
    reads: dict[Tensor, list[int]] = {}
    seen: set[Tensor] = set()
    for tensor in _defined_or_read(graph):
        if tensor in seen:
            continue
        seen.add(tensor)
        steps = []
        for use in tensor.uses:
            node = anchor_node(use, graph)
            if node is not None and node in step:
                steps.append(step[node])
        reads[tensor] = steps
    return reads


def _defined_or_read(graph: Graph) -> Iterable[Tensor]:
    yield from graph.tensors()
    for node in graph.nodes:
        yield from (t for t in node.inputs if t is not None)


@dataclass
class Storage:
    """Bytes that one or more tensors occupy, from `start` to `end` (steps, inclusive)."""

    index: int
    tensors: list[Tensor]
    size: Dim | None
    start: int
    end: int
    role: Role
    offsets: dict[Tensor, Dim] = field(default_factory=dict)
    scratch_of: Node | None = None

    @property
    def name(self) -> str:
        """The root tensor's name, or `<node>.scratch` for a control-flow node's workspace."""
        return f"{self.scratch_of.name}.scratch" if self.scratch_of else self.tensors[0].name

    @property
    def planned(self) -> bool:
        """True when the arena must hold it: an intermediate of known size."""
        return self.role is Role.INTERMEDIATE and self.size is not None


@dataclass(frozen=True, slots=True)
class InPlace:
    """`node` writes `output` over `input`'s bytes."""

    node: Node
    input: Tensor
    output: Tensor


@dataclass
class Liveness:
    """The storages of one graph under one execution order."""

    graph: Graph
    order: tuple[Node, ...]
    storages: list[Storage]
    storage_of: dict[Tensor, Storage]
    views: dict[Tensor, View]
    inplace: list[InPlace]
    unplanned: dict[Tensor, str]
    reads: dict[Tensor, list[int]]

    def readers(self, storage: Storage) -> list[int]:
        """The steps that read any tensor of `storage`, sorted, without repeats."""
        return sorted({s for t in storage.tensors for s in self.reads.get(t, ())})

    def planned(self) -> list[Storage]:
        """The storages the arena holds, in index order."""
        return [s for s in self.storages if s.planned]


def liveness(
    graph: Graph,
    facts: Mapping[Tensor, TensorFact],
    order: Sequence[Node] | None = None,
    *,
    scratch: Mapping[Node, Dim] | None = None,
    inplace: bool = True,
    views: Mapping[Tensor, View] | None = None,
    results_in_place: bool = False,
    captured: Mapping[Node, Mapping[Tensor, Tensor]] | None = None,
    slots: Mapping[Tensor, tuple[Tensor, Dim]] | None = None,
) -> Liveness:
    """Group `graph`'s tensors into storages with lifetimes under `order` (default: the graph's
    topological order). `scratch` gives control-flow nodes a workspace alive at their step only.

    `results_in_place` lets a graph output be written over an intermediate input that dies at
    its producer (an If branch's result over the residual its last node adds): that
    intermediate then lives in the output's storage, which the caller provides (the If's output,
    `Role.OUTPUT`), and takes no bytes of this graph's arena. Only an intermediate that is the
    sole tensor of its storage qualifies, so the caller's bytes hold nothing else.

    `captured` gives an If node's outputs the outer tensors its branches write them over
    (`branch_overwrites`): such an output shares that tensor's storage when the tensor dies at
    the If.

    `slots` places Concat inputs in their Concat's output (`concat_slots`, the default where
    `inplace`; `{}` for none): the storage of the output's root then begins where its first
    input is made."""
    order = tuple(graph.topological_order() if order is None else order)
    if views is None:
        views = find_views(graph, facts)
    reads = read_steps(graph, order)
    returned = _returned(views)
    if slots is None:
        slots = concat_slots(graph, facts, views) if inplace else {}
    storages: list[Storage] = []
    storage_of: dict[Tensor, Storage] = {}
    unplanned: dict[Tensor, str] = {}
    done: list[InPlace] = []

    def new_storage(tensor: Tensor, start: int) -> Storage:
        size = tensor_bytes(facts.get(tensor))
        role = role_of(tensor)
        if size is None and role is Role.INTERMEDIATE:
            fact = facts.get(tensor)
            unplanned[tensor] = "size unknown" if fact is not None else "no shape fact"
        storage = Storage(
            len(storages), [tensor], None if size is None else aligned(size), start, start, role
        )
        storage.offsets[tensor] = 0
        storages.append(storage)
        storage_of[tensor] = storage
        return storage

    def extend(storage: Storage, tensor: Tensor) -> None:
        last = max(reads.get(tensor, []), default=storage.start)
        storage.end = max(storage.end, last)
        if tensor.is_graph_output:
            storage.role = Role.OUTPUT

    for tensor in [*graph.inputs, *graph.constants]:
        extend(new_storage(tensor, -1), tensor)
    for index, node in enumerate(order):
        if node in (scratch or {}):
            storage = Storage(
                len(storages),
                [],
                aligned(scratch[node]),
                index,
                index,
                Role.INTERMEDIATE,
                scratch_of=node,
            )  # type: ignore[index]
            storages.append(storage)
        for tensor in node.outputs:
            if tensor is None:
                continue
            if tensor in storage_of:  # a Concat's output, its storage made by its first input
                extend(storage_of[tensor], tensor)
                continue
            slot = slots.get(tensor)
            if slot is not None:  # written straight into its place in a Concat's output
                root, offset = slot
                storage = storage_of.get(root) or new_storage(root, index)
                storage.tensors.append(tensor)
                storage.offsets[tensor] = offset
                storage_of[tensor] = storage
                extend(storage, tensor)
                continue
            view = views.get(tensor)
            if view is not None and view.base in storage_of:
                storage = storage_of[view.base]
                storage.tensors.append(tensor)
                storage.offsets[tensor] = _as_dim(storage.offsets[view.base] + view.offset)
                storage_of[tensor] = storage
                extend(storage, tensor)
                continue
            target = None
            if inplace and tensor not in returned:
                target = _inplace_target(
                    node,
                    tensor,
                    index,
                    facts,
                    storage_of,
                    results=results_in_place,
                    captured=None if captured is None else captured.get(node),
                )
            if target is not None:
                storage = storage_of[target]
                storage.tensors.append(tensor)
                storage.offsets[tensor] = 0
                storage_of[tensor] = storage
                extend(storage, tensor)
                done.append(InPlace(node, target, tensor))
                continue
            extend(new_storage(tensor, index), tensor)
    # views found later extend their base: make every storage end at its last member's last read
    for storage in storages:
        for tensor in storage.tensors:
            storage.end = max([storage.end, *reads.get(tensor, ())])
        if any(t.is_graph_output for t in storage.tensors):
            storage.role = Role.OUTPUT
    for node in order:  # a tensor put into a sequence or optional outlives every read we see
        if not any(t is not None and isinstance(t.type, CONTAINER_TYPES) for t in node.outputs):
            continue
        for tensor in node.inputs:
            storage = storage_of.get(tensor) if tensor is not None else None
            if (
                storage is not None
                and storage.role is Role.INTERMEDIATE
                and storage.size is not None
            ):
                storage.size = None
                for member in storage.tensors:
                    unplanned[member] = f"escapes into the {node.op_type} value of {node.name!r}"
    for tensor in list(unplanned):
        if storage_of[tensor].role is not Role.INTERMEDIATE:
            del unplanned[tensor]
    return Liveness(graph, order, storages, storage_of, dict(views), done, unplanned, reads)


def _returned(views: Mapping[Tensor, View]) -> set[Tensor]:
    """The tensors that a graph output is a view of."""
    return {v.base for v in views.values() if v.tensor.is_graph_output}


def concat_slots(
    graph: Graph, facts: Mapping[Tensor, TensorFact], views: Mapping[Tensor, View]
) -> dict[Tensor, tuple[Tensor, Dim]]:
    """The inputs of `graph`'s Concats that can be computed in their place in the output: input
    -> (the storage's root tensor, byte offset in it). The root is the last Concat of a chain
    (a dense block's features, each Concat an input of the next), so a feature map is written
    once, where every later Concat reads it, instead of copied at each Concat.

    A Concat qualifies when every axis before its axis has extent 1 (each input is then one
    contiguous run of the output's bytes), its output is an intermediate, and its inputs share
    its element width. An input qualifies when this graph's node makes it (not a graph input,
    constant or outer value), it is no view and has none, and it is read by no other Concat
    that claims it; the rest are copied as before."""
    parents: dict[Tensor, tuple[Tensor, Dim]] = {}
    viewed = {v.base for v in views.values()}
    returned = _returned(views)
    for node in graph.topological_order():
        output = node.outputs[0] if node.outputs else None
        if node.op_type != "Concat" or node.domain not in ("", "ai.onnx") or output is None:
            continue
        fact = facts.get(output)
        if (
            fact is None
            or fact.dtype is None
            or fact.dtype.bits % 8
            or fact.shape.dims is None
            or output.is_graph_output
            or output in returned
            or tensor_bytes(fact) is None
        ):
            continue
        dims = fact.shape.dims
        axis = int(node.attr("axis", 0))
        axis = axis + len(dims) if axis < 0 else axis
        if not 0 <= axis < len(dims) or any(not provably_equal(d, 1) for d in dims[:axis]):
            continue
        offset: Dim = 0
        seen: set[Tensor] = set()
        for tensor in node.inputs:
            mine = facts.get(tensor) if tensor is not None else None
            if mine is None or mine.shape.dims is None or mine.dtype != fact.dtype:
                break
            size = _as_dim(math.prod(mine.shape.dims, start=1) * (fact.dtype.bits // 8))
            if (
                tensor not in seen
                and tensor not in parents
                and tensor.producer is not None
                and tensor.graph is graph
                and not tensor.is_graph_output
                and tensor not in views
                and tensor not in viewed
                and role_of(tensor) is Role.INTERMEDIATE
            ):
                parents[tensor] = (output, offset)
            seen.add(tensor)
            offset = _as_dim(offset + size)
    slots: dict[Tensor, tuple[Tensor, Dim]] = {}
    for tensor, (parent, offset) in parents.items():
        while parent in parents:  # a Concat's output that is itself an input of the next
            parent, more = parents[parent]
            offset = _as_dim(offset + more)
        slots[tensor] = (parent, offset)
    return slots


def _overwritable(
    node: Node,
    output: Tensor,
    facts: Mapping[Tensor, TensorFact],
    captured: Mapping[Tensor, Tensor] | None,
) -> list[Tensor | None]:
    """The tensors `node` may write `output` over, if they die at it (`_inplace_target`)."""
    if captured is not None:
        found = captured.get(output)
        return [] if found is None else [found]
    if not may_write_in_place(node):
        return []
    allowed = overwritable_inputs(node)
    streamed = streamed_input(node)
    if streamed is not None:
        source = facts.get(node.inputs[streamed])  # type: ignore[arg-type]
        if source is None or not facts_agree(source, facts[output]):
            streamed = None
    return [
        tensor
        for position, tensor in enumerate(node.inputs)
        if allowed is None or position in allowed or position == streamed
    ]


def branch_overwrites(
    node: Node, branches: Mapping[str, Liveness], facts: Mapping[Tensor, TensorFact]
) -> dict[Tensor, Tensor]:
    """For an If `node`, each output that every branch writes over one same tensor of the
    enclosing graph (a tensor the branch reads from outside, as the residual block of a gated
    network writes its result over its input): output -> that tensor. `branches` are the
    branches' liveness, under the order they run in.

    A branch writes result k over outer tensor c when it returns c itself, or when the node
    that makes result k may overwrite c (`_overwritable`: an elementwise group, a chain over its
    X), is the last reader of c in the branch, and the result's storage holds nothing else.
    The outer liveness then merges the output with c's storage if c dies at the If, and the
    runtime hands each branch's result the output's bytes (`CompiledModel._add_views`)."""
    if node.op_type != "If" or node.domain not in ("", "ai.onnx") or not branches:
        return {}
    found: dict[Tensor, Tensor] = {}
    for k, output in enumerate(node.outputs):
        if output is None:
            continue
        common: set[Tensor] | None = None
        for name, branch in node.subgraphs:
            lv = branches.get(name)
            if lv is None or k >= len(branch.outputs):
                common = set()
                break
            over = _result_over(branch.outputs[k], branch, lv, node.graph, facts)
            common = over if common is None else common & over
        for tensor in common or ():
            if tensor not in found.values():
                found[output] = tensor
                break
    return found


def _result_over(
    result: Tensor, branch: Graph, lv: Liveness, outer: Graph, facts: Mapping[Tensor, TensorFact]
) -> set[Tensor]:
    """The tensors of graph `outer` that `branch` writes its `result` over (`branch_overwrites`)."""
    if result.graph is outer:
        return {result}
    producer = result.producer
    storage = lv.storage_of.get(result)
    if producer is None or result.graph is not branch or storage is None:
        return set()
    if storage.tensors != [result] or producer not in lv.order:
        return set()
    step = lv.order.index(producer)
    size = tensor_bytes(facts.get(result))
    over = set()
    for tensor in _overwritable(producer, result, facts, None):
        if tensor is None or tensor.graph is not outer:
            continue
        mine = tensor_bytes(facts.get(tensor))
        if size is None or mine is None or not provably_equal(mine, size):
            continue
        if facts[tensor].dtype.bits != facts[result].dtype.bits:  # type: ignore[union-attr]
            continue
        reads = lv.reads.get(tensor, [])
        if max(reads, default=-1) == step and reads.count(step) == 1:
            over.add(tensor)
    return over


def _inplace_target(
    node: Node,
    output: Tensor,
    index: int,
    facts: Mapping[Tensor, TensorFact],
    storage_of: Mapping[Tensor, Storage],
    *,
    results: bool = False,
    captured: Mapping[Tensor, Tensor] | None = None,
) -> Tensor | None:
    """An input of `node` whose storage `output` may overwrite, or None. A graph output (or an
    output whose view is one) is refused unless `results`: the merged storage then becomes the
    caller's, which only a caller that gives those bytes to the intermediate too can accept
    (`liveness(results_in_place=True)`). An If's output may overwrite the outer tensor its
    branches write it over (`captured`, from `branch_overwrites`)."""
    if output.is_graph_output and not results:
        return None
    size = tensor_bytes(facts.get(output))
    if size is None:
        return None
    for tensor in _overwritable(node, output, facts, captured):
        if tensor is None or tensor.graph is not node.graph:
            continue
        storage = storage_of.get(tensor)
        if storage is None or not storage.planned or storage.end != index:
            continue
        if storage.offsets.get(tensor) != 0 or storage.scratch_of is not None:
            continue
        if output.is_graph_output and len(storage.tensors) != 1:
            continue
        mine = tensor_bytes(facts.get(tensor))
        if (
            mine is None
            or not provably_equal(mine, size)
            or not provably_equal(aligned(mine), storage.size)
        ):
            continue
        if facts[tensor].dtype.bits != facts[output].dtype.bits:  # type: ignore[union-attr]
            continue
        return tensor
    return None
