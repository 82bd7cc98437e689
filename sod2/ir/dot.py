"""Graphviz pictures of graphs.

`to_dot(graph, ...)` writes the graph as Graphviz dot text: one box per node, one arrow per data
dependency labelled with the tensor (and, when given, its shape), model inputs and outputs as
ellipses, subgraphs as nested clusters. Callers choose a colour per node (`sod2 inspect --graph`
colours by SoD2 class, like the paper's Figure 1). `render(dot_text, path)` turns it into SVG or PNG
when the Graphviz `dot` program is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sod2.errors import Sod2Error
from sod2.ir.graph import Graph, Node, Tensor

NodeColour = Callable[[Node], str]
TensorLabel = Callable[[Tensor], str]


def to_dot(
    graph: Graph,
    *,
    colour: NodeColour | None = None,
    label: TensorLabel | None = None,
    legend: dict[str, str] | None = None,
) -> str:
    """The dot text of `graph` (and its subgraphs); `legend` maps a caption to a colour."""
    lines = [
        "digraph sod2 {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", '
        'fillcolor=white, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    ids: dict[object, str] = {}
    _graph_body(graph, lines, ids, colour, label, "  ")
    if legend:
        lines.append('  subgraph cluster_legend { label="legend"; fontsize=10;')
        for index, (caption, fill) in enumerate(legend.items()):
            lines.append(f'    legend{index} [label="{_escape(caption)}", fillcolor="{fill}"];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _graph_body(
    graph: Graph,
    lines: list[str],
    ids: dict[object, str],
    colour: NodeColour | None,
    label: TensorLabel | None,
    indent: str,
) -> None:
    for tensor in graph.inputs:
        ids[tensor] = f"t{len(ids)}"
        lines.append(f'{indent}{ids[tensor]} [label="{_escape(tensor.name)}", shape=ellipse];')
    for node in graph.nodes:
        ids[node] = f"n{len(ids)}"
        fill = colour(node) if colour else "white"
        lines.append(
            f'{indent}{ids[node]} [label="{_escape(node.qualified_op)}\\n'
            f'{_escape(node.name)}", fillcolor="{fill}"];'
        )
        for key, subgraph in node.subgraphs:
            lines.append(
                f'{indent}subgraph cluster_{ids[node]}_{key} {{ label="{_escape(key)}"; '
                f"style=dashed;"
            )
            _graph_body(subgraph, lines, ids, colour, label, indent + "  ")
            lines.append(f"{indent}}}")
    for node in graph.nodes:
        for tensor in node.inputs:
            if tensor is not None and not tensor.is_constant:
                _edge(lines, ids, tensor, ids[node], label, indent)
    if graph.outer is None:
        for tensor in graph.outputs:
            out = f"o{len(ids)}"
            ids[out] = out
            lines.append(f'{indent}{out} [label="{_escape(tensor.name)}", shape=ellipse];')
            _edge(lines, ids, tensor, out, label, indent)


def _edge(
    lines: list[str],
    ids: dict[object, str],
    tensor: Tensor,
    target: str,
    label: TensorLabel | None,
    indent: str,
) -> None:
    source = ids.get(tensor.producer) if tensor.producer is not None else ids.get(tensor)
    if source is None:
        return
    text = label(tensor) if label else tensor.name
    lines.append(f'{indent}{source} -> {target} [label="{_escape(text)}"];')


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(dot_text: str, path: Path) -> None:
    """Write `dot_text` to `path`: as is for .dot/.gv, else rendered by Graphviz (svg, png, pdf)."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("dot", "gv"):
        path.write_text(dot_text)
        return
    program = shutil.which("dot")
    if program is None:
        raise Sod2Error(
            f"{path}: rendering .{suffix} needs Graphviz's `dot` program, which is not installed; "
            f"write a .dot file instead (or install graphviz)"
        )
    done = subprocess.run(
        [program, f"-T{suffix}", "-o", str(path)],
        input=dot_text,
        text=True,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise Sod2Error(f"{path}: Graphviz failed: {done.stderr.strip()}")
