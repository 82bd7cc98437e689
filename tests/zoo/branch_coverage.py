"""Which branches of which `If` nodes onnxruntime actually executes, observed by its profiler.

Every node of a copy of the model, subgraphs included, is renamed to a unique path such as
`/If_3.then_branch/Conv_0`; the profiler records each node it runs under that name. A branch was
taken when a node of that branch (not of an `If` nested in it) appears in the profile. Graph
optimizations are turned off, so no node is fused away or renamed. A branch with no node cannot
be observed, so an `Identity` is added to it first (a no-op).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

BRANCHES = ("then_branch", "else_branch")


def instrument(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, dict[str, set[str]]]]:
    """A renamed copy of `model` and, per `If` path, the node names of each of its branches."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    branches: dict[str, dict[str, set[str]]] = {}
    _rename(copy.graph, "", branches)
    return copy, branches


def _rename(graph: onnx.GraphProto, prefix: str, branches: dict[str, dict[str, set[str]]]) -> None:
    for index, node in enumerate(graph.node):
        node.name = f"{prefix}/{node.op_type}_{index}"
        if node.op_type != "If":
            continue
        branches[node.name] = {}
        for attribute in node.attribute:
            if attribute.name in BRANCHES:
                _ensure_node(attribute.g)
                _rename(attribute.g, f"{node.name}.{attribute.name}", branches)
                branches[node.name][attribute.name] = {n.name for n in attribute.g.node}


def _ensure_node(graph: onnx.GraphProto) -> None:
    if graph.node:
        return
    output = graph.output[0]
    observed = f"{output.name}__observed"
    graph.node.append(onnx.helper.make_node("Identity", [output.name], [observed]))
    output.name = observed


def branches_taken(
    model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> dict[str, set[str]]:
    """For every `If` (by path), the branches executed over all `feeds`."""
    instrumented, branches = instrument(model)
    executed = _profiled_node_names(instrumented, feeds)
    return {
        path: {name for name, nodes in sides.items() if nodes & executed}
        for path, sides in branches.items()
    }


def _profiled_node_names(
    model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> set[str]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        for feed in feeds:
            session.run(None, dict(feed))
        events = json.loads(Path(session.end_profiling()).read_text())
    suffix = "_kernel_time"
    return {
        event["name"][: -len(suffix)]
        for event in events
        if event.get("cat") == "Node" and event["name"].endswith(suffix)
    }
