"""Text form of graphs and models, for terminals and golden tests.

The format, one statement per line, subgraphs indented under the node that holds them:

    graph main(%x: float32[N, 3, H, W], %s: int64[2]) {
      %w: float32[8, 3, 3, 3] = constant
      %y: float32[N, 8, H - 2, W - 2] = Conv(%x, %w) {kernel_shape=[3, 3]}
      %z: float32[N, 8, H - 2, W - 2] = If(%c)
        then_branch: graph then_0() {
          ...
          return %a
        }
      return %z
    }

Omitted optional inputs print as `_`. Types print only where known. Small constants show their
values. The output is deterministic: the same graph always prints the same text.
"""

from __future__ import annotations

import re

import numpy as np

from sod2.ir.attributes import Attribute, AttrKind, SparseTensor
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
_PREVIEW = 8


def format_graph(graph: Graph, *, types: bool = True) -> str:
    """The text form of `graph` and its subgraphs."""
    return "\n".join(_graph_lines(graph, "", types))


def format_model(model: Model, *, types: bool = True) -> str:
    """The text form of a model: an opset line, then its graph."""
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(model.opset_imports.items()))
    return f"# opsets: {opsets}\n" + format_graph(model.graph, types=types)


def format_tensor_ref(tensor: Tensor | None) -> str:
    """`%name` (quoted when the name has unusual characters), `_` for an omitted optional."""
    if tensor is None:
        return "_"
    name = tensor.name
    return f"%{name}" if _PLAIN_NAME.match(name) else f"%{name!r}"


def format_node(node: Node, *, types: bool = True) -> str:
    """One node as a single line (its subgraphs are not shown)."""
    return _node_line(node, types)


def _declaration(tensor: Tensor, types: bool) -> str:
    ref = format_tensor_ref(tensor)
    return f"{ref}: {tensor.type}" if types and tensor.type is not None else ref


def _graph_lines(graph: Graph, indent: str, types: bool) -> list[str]:
    params = []
    for tensor in graph.inputs:
        text = _declaration(tensor, types)
        if tensor.const_value is not None:
            text += f" = {_array_text(tensor.const_value)}"
        params.append(text)
    header = f"{indent}graph {graph.name}({', '.join(params)}) {{"
    lines = [header]
    inner = indent + "  "
    for tensor in graph.constants:
        lines.append(f"{inner}{_declaration(tensor, types)} = constant{_constant_preview(tensor)}")
    for node in graph.nodes:
        lines.append(inner + _node_line(node, types))
        for key, subgraph in node.subgraphs:
            sub_lines = _graph_lines(subgraph, inner + "  ", types)
            sub_lines[0] = f"{inner}  {key}: {sub_lines[0].lstrip()}"
            lines.extend(sub_lines)
    lines.append(f"{inner}return {', '.join(format_tensor_ref(t) for t in graph.outputs)}".rstrip())
    lines.append(f"{indent}}}")
    return lines


def _node_line(node: Node, types: bool) -> str:
    outputs = ", ".join(
        "_" if tensor is None else _declaration(tensor, types) for tensor in node.outputs
    )
    args = ", ".join(format_tensor_ref(t) for t in node.inputs)
    attrs = [f"{key}={_attr_text(attr)}" for key, attr in node.attrs.items() if not attr.graphs]
    attr_text = f" {{{', '.join(attrs)}}}" if attrs else ""
    lhs = f"{outputs} = " if node.outputs else ""
    return f"{lhs}{node.qualified_op}({args}){attr_text}"


def _attr_text(attr: Attribute) -> str:
    value = attr.value
    if attr.kind.is_list:
        return "[" + ", ".join(_scalar_text(attr.kind, item) for item in value) + "]"
    return _scalar_text(attr.kind, value)


def _scalar_text(kind: AttrKind, value: object) -> str:
    if isinstance(value, np.ndarray):
        return _array_text(value)
    if isinstance(value, SparseTensor):
        return f"sparse<{value.values.dtype}{list(value.dims)}, nnz={value.values.shape[0]}>"
    if isinstance(value, (str, bytes)):
        return repr(value) if isinstance(value, bytes) else '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Graph):
        return f"graph {value.name}"
    return str(value)


def _constant_preview(tensor: Tensor) -> str:
    value = tensor.const_value
    if value is None or value.size > _PREVIEW:
        return ""
    return " " + _values_text(value)


def _array_text(value: np.ndarray) -> str:
    shape = "x".join(str(d) for d in value.shape) or "scalar"
    if value.size <= _PREVIEW:
        return f"tensor<{value.dtype} {shape}: {_values_text(value)}>"
    return f"tensor<{value.dtype} {shape}>"


def _values_text(value: np.ndarray) -> str:
    if value.dtype == object:
        items = [repr(v) for v in value.reshape(-1)]
    else:
        items = [str(v) for v in value.reshape(-1).tolist()]
    flat = ", ".join(items)
    return flat if value.ndim == 0 else f"[{flat}]"
