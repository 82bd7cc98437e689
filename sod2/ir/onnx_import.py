"""ONNX import: `ModelProto` -> `Model`.

What becomes what:
- graph inputs -> graph inputs; an initializer of the same name becomes the input's default value;
- other initializers and `Constant` nodes -> constants (sparse ones made dense);
- each `dim_param` -> `parse_dim` (a name is a symbol, `2*H` an expression); a dim with neither a
  value nor a param -> a fresh symbol `unk__N`, chosen so it equals no name the model uses;
- `value_info` -> the types of intermediate tensors;
- GRAPH attributes -> subgraphs nested in the node, reading outer tensors by scope;
- model-local functions -> inlined at their call sites, so the IR holds only primitive ops.

Nodes are added in a dependency order (the ONNX file order when it is one). A name reused in a
subgraph (shadowing) is renamed there, since the IR keeps tensor names unique per model; the
top-level graph keeps all its names, so the model's interface never changes.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sod2 import cache
from sod2.errors import ModelLoadError, OnnxImportError, Sod2Error, UnknownDomainError
from sod2.ir.attributes import Attribute, AttrKind, SparseTensor
from sod2.ir.dims import Dim, parse_dim, symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Tensor
from sod2.ir.model import STANDARD_DOMAINS, Model
from sod2.ir.types import (
    MapType,
    OptionalType,
    SequenceType,
    Shape,
    SparseTensorType,
    TensorType,
    Type,
)

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def load(source: ModelSource, *, check: bool = True, external: list[Path] | None = None) -> Model:
    """Read an ONNX model (a path, serialized bytes or a `ModelProto`) into sod2's IR.

    `check` runs `onnx.checker` first, so a malformed model fails with the checker's reason.
    `external`, when given, receives the external data files a model file reads.
    Raises `ModelLoadError` (naming the file) or `OnnxImportError` (naming the node or tensor).
    """
    proto, where = read_model_proto(source, external=external)
    if check:
        if isinstance(source, (str, os.PathLike)):
            _check_file(Path(source), where)
        else:
            _check(proto, where)
    return from_onnx(proto, where=where)


def read_model_proto(
    source: ModelSource, *, external: list[Path] | None = None
) -> tuple[onnx.ModelProto, str]:
    """Parse `source` into a `ModelProto` with external data loaded; also return a label for it.
    `external`, when given, receives the external data files a model file reads."""
    if isinstance(source, onnx.ModelProto):
        return source, "<ModelProto>"
    if isinstance(source, bytes):
        try:
            return onnx.load_from_string(source), "<bytes>"
        except Exception as error:  # protobuf raises its own DecodeError types
            raise ModelLoadError(f"<bytes>: not a serialized ONNX model ({error})") from error
    path = Path(source)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        files = external_data_files(proto, path.parent)
        if files:
            onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as error:
        raise ModelLoadError(
            f"{path}: cannot read as an ONNX model ({type(error).__name__}: {error})"
        ) from error
    if external is not None:
        external.extend(files)
    return proto, str(path)


def external_data_files(proto: onnx.ModelProto, base: Path) -> list[Path]:
    """The files (relative to `base`) that `proto`'s tensors keep their data in, each once."""
    files: dict[Path, None] = {}
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)
                tensors.extend([attribute.t] if attribute.HasField("t") else [])
                tensors.extend(attribute.tensors)
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                for entry in tensor.external_data:
                    if entry.key == "location":
                        files[base / entry.value] = None
    return list(files)


CHECKED = "checked"
"""The cache kind (`sod2.cache`) recording model files that passed `onnx.checker` unchanged."""


def _check_file(path: Path, where: str) -> None:
    """`onnx.checker` on a model file, skipped when this very file (same path, inode, size and
    modification time, same onnx version) passed before: checking a large model costs about a
    second, as much as the rest of its import. The checker reads the file itself, in C++: about
    3x faster than checking the parsed proto, which it would first serialize again."""
    try:
        key = cache.file_stamp(path, onnx.__version__)
    except OSError:
        key = None
    if key is not None and cache.has_mark(CHECKED, key):
        return
    _check(str(path), where)
    if key is not None:
        cache.mark(CHECKED, key)


def _check(model: onnx.ModelProto | str, where: str) -> None:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as error:
        message = str(error).strip().splitlines()
        raise ModelLoadError(
            f"{where}: rejected by onnx.checker: {' '.join(message)[:2000]}"
        ) from error


def from_onnx(proto: onnx.ModelProto, *, where: str = "<ModelProto>") -> Model:
    """Build a `Model` from a parsed `ModelProto` (no checker run; see `load`)."""
    opsets = {entry.domain: entry.version for entry in proto.opset_import}
    if proto.functions:
        proto = _inline_functions(proto, where)
    symbols = _FreshSymbols(_dim_params(proto.graph))
    root = Graph(proto.graph.name or "main")
    builder = _GraphBuilder(opsets, symbols, where, reserved=_defined_names(proto.graph))
    builder.build(proto.graph, root, scope=[])
    return Model(
        graph=root,
        opset_imports=opsets,
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=proto.model_version,
        doc_string=proto.doc_string,
        metadata={entry.key: entry.value for entry in proto.metadata_props},
    )


def _inline_functions(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    import onnx.inliner

    try:
        inlined = onnx.inliner.inline_local_functions(proto)
    except Exception as error:
        raise OnnxImportError(
            f"{where}: cannot inline the model's local functions: {error}"
        ) from error
    del inlined.functions[:]
    return inlined


# -- types -----------------------------------------------------------------------------------


class _FreshSymbols:
    """Fresh `unk__N` symbols that collide with no dim_param of the model."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = taken
        self._counter = itertools.count()

    def new(self) -> Dim:
        while True:
            name = f"unk__{next(self._counter)}"
            if name not in self._taken:
                self._taken.add(name)
                return symbol(name)


def _dim_params(graph: onnx.GraphProto) -> set[str]:
    found: set[str] = set()
    for info in itertools.chain(graph.input, graph.output, graph.value_info):
        found.update(_type_dim_params(info.type))
    for node in graph.node:
        for attr in node.attribute:
            for sub in _attribute_graphs(attr):
                found |= _dim_params(sub)
    return found


def _type_dim_params(type_proto: onnx.TypeProto) -> Iterator[str]:
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        inner = getattr(type_proto, kind)
        if inner.HasField("shape"):
            yield from (d.dim_param for d in inner.shape.dim if d.dim_param)
    elif kind == "sequence_type":
        yield from _type_dim_params(type_proto.sequence_type.elem_type)
    elif kind == "optional_type":
        yield from _type_dim_params(type_proto.optional_type.elem_type)
    elif kind == "map_type":
        yield from _type_dim_params(type_proto.map_type.value_type)


def type_from_onnx(type_proto: onnx.TypeProto, fresh: _FreshSymbols | None = None) -> Type | None:
    """The IR type of an ONNX `TypeProto`; unnamed dims become fresh symbols (`fresh` given)."""
    kind = type_proto.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("tensor_type", "sparse_tensor_type"):
        inner = getattr(type_proto, kind)
        dtype = DType.from_onnx(inner.elem_type) if inner.elem_type else None
        shape = _shape_from_onnx(inner, fresh)
        return TensorType(dtype, shape) if kind == "tensor_type" else SparseTensorType(dtype, shape)
    if kind == "sequence_type":
        return SequenceType(_element(type_proto.sequence_type, fresh))
    if kind == "optional_type":
        return OptionalType(_element(type_proto.optional_type, fresh))
    if kind == "map_type":
        value = type_from_onnx(type_proto.map_type.value_type, fresh)
        return MapType(DType.from_onnx(type_proto.map_type.key_type), value)
    raise Sod2Error(f"unsupported ONNX type kind {kind!r}")


def _element(
    container: onnx.TypeProto.Sequence | onnx.TypeProto.Optional, fresh: _FreshSymbols | None
) -> Type | None:
    return type_from_onnx(container.elem_type, fresh) if container.HasField("elem_type") else None


def _shape_from_onnx(inner: onnx.TypeProto.Tensor, fresh: _FreshSymbols | None) -> Shape:
    if not inner.HasField("shape"):
        return Shape.unknown()
    dims: list[Dim] = []
    for dim in inner.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param") and dim.dim_param.strip():
            dims.append(parse_dim(dim.dim_param))
        elif fresh is not None:
            dims.append(fresh.new())
        else:
            return Shape.unknown()
    return Shape(dims)


# -- values ----------------------------------------------------------------------------------


def array_from_onnx(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    """The numpy value of a `TensorProto` (external data must already be loaded)."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:
        raise OnnxImportError(
            f"{where}: cannot read tensor value {tensor.name!r}: {error}"
        ) from error


def sparse_from_onnx(sparse: onnx.SparseTensorProto, where: str) -> SparseTensor:
    """The `SparseTensor` of a `SparseTensorProto`."""
    values = array_from_onnx(sparse.values, where)
    indices = array_from_onnx(sparse.indices, where).astype(np.int64)
    return SparseTensor(values, indices, tuple(int(d) for d in sparse.dims))


def _constant_node_value(node: onnx.NodeProto, where: str) -> np.ndarray:
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        raise OnnxImportError(
            f"{where}: Constant node {node.name!r} needs exactly one value attribute"
        )
    match attr.name:
        case "value":
            return array_from_onnx(attr.t, where)
        case "sparse_value":
            return sparse_from_onnx(attr.sparse_tensor, where).to_dense()
        case "value_float":
            return np.array(attr.f, dtype=np.float32)
        case "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        case "value_int":
            return np.array(attr.i, dtype=np.int64)
        case "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
        case "value_string":
            return np.array(attr.s, dtype=object)
        case "value_strings":
            return np.array(list(attr.strings), dtype=object)
    raise OnnxImportError(
        f"{where}: Constant node {node.name!r} has unknown attribute {attr.name!r}"
    )


# -- graphs ----------------------------------------------------------------------------------


def _attribute_graphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def _defined_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    names |= {t.values.name for t in graph.sparse_initializer}
    names |= {out for node in graph.node for out in node.output if out}
    return names


def _read_names(node: onnx.NodeProto) -> set[str]:
    """Names `node` reads: its inputs and the outer-scope names its subgraphs read."""
    names = {name for name in node.input if name}
    for attr in node.attribute:
        for sub in _attribute_graphs(attr):
            inner_defined = _defined_names(sub)
            for inner in sub.node:
                names |= _read_names(inner) - inner_defined
            names |= {out.name for out in sub.output} - inner_defined
    return names


def _dependency_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in file order if that is a dependency order, else a stable topological order.

    Names that no node defines are left for the builder to report as dangling.
    """
    nodes = list(graph.node)
    reads = [_read_names(node) for node in nodes]
    producer = {out: index for index, node in enumerate(nodes) for out in node.output if out}
    needs = [
        {producer[name] for name in names if name in producer} - {index}
        for index, names in enumerate(reads)
    ]
    if all(max(need, default=-1) < index for index, need in enumerate(needs)):
        return nodes
    dependents: list[list[int]] = [[] for _ in nodes]
    for index, need in enumerate(needs):
        for before in need:
            dependents[before].append(index)
    waiting = [len(need) for need in needs]
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for after in dependents[index]:
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, after)
    placed = set(order)
    order.extend(
        index for index in range(len(nodes)) if index not in placed
    )  # cycles: reported later
    return [nodes[index] for index in order]


class _GraphBuilder:
    def __init__(
        self, opsets: dict[str, int], symbols: _FreshSymbols, where: str, reserved: set[str]
    ) -> None:
        self.opsets = opsets
        self.symbols = symbols
        self.where = where
        self.reserved = reserved
        self.standard_imported = any(d in opsets for d in STANDARD_DOMAINS)

    def build(self, proto: onnx.GraphProto, graph: Graph, scope: list[dict[str, Tensor]]) -> None:
        local: dict[str, Tensor] = {}
        scopes = [local, *scope]
        graph.doc_string = proto.doc_string
        types = {info.name: info.type for info in itertools.chain(proto.value_info, proto.output)}
        initializers = {t.name: t for t in proto.initializer}
        for sparse in proto.sparse_initializer:
            initializers[sparse.values.name] = sparse  # type: ignore[assignment]
        top_level = graph.outer is None
        for info in proto.input:
            value_type = type_from_onnx(info.type, self.symbols)
            default = initializers.pop(info.name, None)
            local[info.name] = graph.add_input(
                self._name(graph, info.name, top_level),
                value_type,
                default=None if default is None else self._initializer_value(default),
            )
        for name, initializer in initializers.items():
            local[name] = graph.add_constant(
                self._initializer_value(initializer), self._name(graph, name, top_level)
            )
        for node in _dependency_order(proto):
            self._add_node(node, graph, scopes, types, top_level)
        outputs = []
        for info in proto.output:
            tensor = self._resolve(
                info.name, scopes, f"output {info.name!r} of graph {graph.name!r}"
            )
            if tensor.type is None and tensor.graph is graph:
                tensor.type = type_from_onnx(info.type, self.symbols)
            outputs.append(tensor)
        graph.set_outputs(outputs)

    def _initializer_value(
        self, initializer: onnx.TensorProto | onnx.SparseTensorProto
    ) -> np.ndarray:
        if isinstance(initializer, onnx.SparseTensorProto):
            return sparse_from_onnx(initializer, self.where).to_dense()
        return array_from_onnx(initializer, self.where)

    def _name(self, graph: Graph, name: str, top_level: bool) -> str:
        """`name` itself, unless a subgraph reuses a name taken elsewhere in the model."""
        if top_level:
            if graph.find_tensor(name) is not None:
                raise OnnxImportError(f"{self.where}: tensor name {name!r} is defined twice")
            return name
        candidate, counter = name, 0
        while graph.find_tensor(candidate) is not None or candidate in self.reserved:
            counter += 1
            candidate = f"{name}_{counter}"
        return candidate

    def _resolve(self, name: str, scopes: list[dict[str, Tensor]], reader: str) -> Tensor:
        for table in scopes:
            found = table.get(name)
            if found is not None:
                return found
        raise OnnxImportError(
            f"{self.where}: {reader} reads tensor {name!r}, which is not defined in its graph or an "
            f"enclosing one (dangling reference)"
        )

    def _add_node(
        self,
        node: onnx.NodeProto,
        graph: Graph,
        scopes: list[dict[str, Tensor]],
        types: dict[str, onnx.TypeProto],
        top_level: bool,
    ) -> None:
        label = f"node {node.name!r} ({node.op_type})"
        self._check_domain(node, label)
        local = scopes[0]
        inputs = [self._resolve(n, scopes, label) if n else None for n in node.input]
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and len(node.output) == 1:
            value = _constant_node_value(node, f"{self.where}: {label}")
            local[node.output[0]] = graph.add_constant(
                value, self._name(graph, node.output[0], top_level)
            )
            return
        attrs = {attr.name: self._attribute(attr, graph, scopes, label) for attr in node.attribute}
        output_names = [self._name(graph, n, top_level) if n else None for n in node.output]
        output_types = [
            type_from_onnx(types[n], self.symbols) if n in types else None for n in node.output
        ]
        built = graph.add_node(
            node.op_type,
            inputs,
            outputs=output_names,
            attrs=attrs,
            domain=node.domain,
            name=node.name or None,
            output_types=output_types,
        )
        built.doc_string = node.doc_string
        for original, tensor in zip(node.output, built.outputs, strict=True):
            if tensor is not None:
                local[original] = tensor

    def _check_domain(self, node: onnx.NodeProto, label: str) -> None:
        if node.domain in STANDARD_DOMAINS:
            if self.standard_imported:
                return
        elif node.domain in self.opsets:
            return
        imported = ", ".join(repr(d) for d in self.opsets) or "none"
        raise UnknownDomainError(
            f"{self.where}: {label} is in domain {node.domain or 'ai.onnx'!r}, which the model does "
            f"not import (opset imports: {imported}); add an opset_import entry for it"
        )

    def _attribute(
        self, attr: onnx.AttributeProto, graph: Graph, scopes: list[dict[str, Tensor]], label: str
    ) -> Attribute:
        where = f"{self.where}: attribute {attr.name!r} of {label}"
        kind = AttrKind(attr.type) if attr.type else _guess_kind(attr, where)
        match kind:
            case AttrKind.FLOAT:
                value: object = float(attr.f)
            case AttrKind.INT:
                value = int(attr.i)
            case AttrKind.STRING:
                value = _text(attr.s)
            case AttrKind.TENSOR:
                value = array_from_onnx(attr.t, where)
            case AttrKind.GRAPH:
                value = self._subgraph(attr.g, graph, scopes)
            case AttrKind.SPARSE_TENSOR:
                value = sparse_from_onnx(attr.sparse_tensor, where)
            case AttrKind.TYPE_PROTO:
                value = type_from_onnx(attr.tp)
            case AttrKind.FLOATS:
                value = tuple(float(v) for v in attr.floats)
            case AttrKind.INTS:
                value = tuple(int(v) for v in attr.ints)
            case AttrKind.STRINGS:
                value = tuple(_text(v) for v in attr.strings)
            case AttrKind.TENSORS:
                value = tuple(array_from_onnx(t, where) for t in attr.tensors)
            case AttrKind.GRAPHS:
                value = tuple(self._subgraph(g, graph, scopes) for g in attr.graphs)
            case AttrKind.SPARSE_TENSORS:
                value = tuple(sparse_from_onnx(t, where) for t in attr.sparse_tensors)
            case AttrKind.TYPE_PROTOS:
                value = tuple(type_from_onnx(t) for t in attr.type_protos)
        return Attribute(kind, value)

    def _subgraph(
        self, proto: onnx.GraphProto, graph: Graph, scopes: list[dict[str, Tensor]]
    ) -> Graph:
        subgraph = graph.new_subgraph(proto.name or "body")
        self.build(proto, subgraph, scopes)
        return subgraph


def _guess_kind(attr: onnx.AttributeProto, where: str) -> AttrKind:
    """Attribute kind for old models that leave `type` unset: the one field that is filled."""
    filled = [
        kind
        for kind, present in (
            (AttrKind.FLOAT, attr.HasField("f")),
            (AttrKind.INT, attr.HasField("i")),
            (AttrKind.STRING, attr.HasField("s")),
            (AttrKind.TENSOR, attr.HasField("t")),
            (AttrKind.GRAPH, attr.HasField("g")),
            (AttrKind.FLOATS, bool(attr.floats)),
            (AttrKind.INTS, bool(attr.ints)),
            (AttrKind.STRINGS, bool(attr.strings)),
            (AttrKind.TENSORS, bool(attr.tensors)),
            (AttrKind.GRAPHS, bool(attr.graphs)),
        )
        if present
    ]
    if len(filled) != 1:
        raise OnnxImportError(f"{where}: attribute has no type and {len(filled)} filled fields")
    return filled[0]


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
