"""Export a zoo model to ONNX with torch's dynamo exporter, keeping its dynamism intact.

The pipeline, one function each:
1. `build_network`: seed torch, construct the network at the scale, and let it calibrate its gates
   or exit thresholds on the inputs of its own sweep (so every `If` takes both branches there);
2. `export_model`: `torch.onnx.export(..., dynamo=True)` with one `torch.export.Dim` per symbol,
   named like the symbol, so the ONNX inputs carry the metadata's `dim_param` names; data-dependent
   control flow is written with `torch.cond` in the networks and becomes ONNX `If`;
3. drop the exporter's per-node metadata (stack traces with file paths, fx node texts): it is not
   part of the model and would make two builds on two machines differ;
4. check the contract: input names and symbolic dims as declared, output names, `If` count.

Everything is seeded and the example inputs are fixed, so rebuilding gives the same graph.
This is the only zoo module that imports torch, and only inside functions.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from sod2.zoo.errors import INSTALL_HINT, ExportError, TorchUnavailableError
from sod2.zoo.graph_facts import value_dims, walk_nodes
from sod2.zoo.spec import ZooModel, resolve_dim

BUILD_SEED = 2024
OPSET = 20


def require_torch() -> ModuleType:
    """Import and return torch (checking onnxscript too); `TorchUnavailableError` if missing."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        import torch
    except ImportError as error:
        raise TorchUnavailableError(
            f"building zoo models needs torch and onnxscript ({error}); {INSTALL_HINT}"
        ) from error
    return torch


def to_torch(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The same arrays as torch tensors (copied, so later edits do not alias)."""
    torch = require_torch()
    return {name: torch.from_numpy(np.array(value)) for name, value in arrays.items()}


def build_network(entry: ZooModel, scale: str) -> Any:
    """The seeded torch module of `entry` at `scale`, calibrated on its sweep, in eval mode."""
    torch = require_torch()
    torch.manual_seed(BUILD_SEED)
    calibration = [inputs for _, inputs in entry.sweep_inputs(scale)]
    with torch.no_grad():
        network = entry.network_factory(scale, calibration)
    return network.eval()


def run_network(
    network: Any, entry: ZooModel, inputs: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Run the torch `network` on numpy `inputs` (in the entry's input order); numpy outputs."""
    torch = require_torch()
    tensors = to_torch(inputs)
    with torch.no_grad():
        outputs = network(*(tensors[spec.name] for spec in entry.inputs))
    if not isinstance(outputs, tuple | list):
        outputs = (outputs,)
    return [output.detach().numpy() for output in outputs]


def export_model(entry: ZooModel, scale: str, target: Path) -> Path:
    """Build `entry` at `scale`, export it to ONNX at `target`, check it, and return `target`."""
    torch = require_torch()
    network = build_network(entry, scale)
    example = entry.make_inputs(entry.example.values(), entry.example.seed, scale)
    tensors = to_torch(example)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                network,
                tuple(tensors[spec.name] for spec in entry.inputs),
                dynamo=True,
                dynamic_shapes=dynamic_shapes(entry),
                input_names=[spec.name for spec in entry.inputs],
                output_names=[spec.name for spec in entry.outputs],
                opset_version=OPSET,
                verbose=False,
            )
    except Exception as error:
        raise ExportError(f"{entry.name} ({scale}): torch.onnx.export failed: {error}") from error
    model = program.model_proto
    strip_export_metadata(model)
    check_exported_interface(entry, scale, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def dynamic_shapes(entry: ZooModel) -> tuple[dict[int, Any], ...]:
    """One `{axis: Dim}` per input, in input order; each Dim is named after its symbol."""
    torch = require_torch()
    dims = {
        symbol.name: torch.export.Dim(symbol.name, min=symbol.low, max=symbol.high)
        for symbol in entry.symbols
    }
    return tuple(
        {
            axis: dims[dim]
            for axis, dim in enumerate(spec.dims)
            if isinstance(dim, str) and dim in dims
        }
        for spec in entry.inputs
    )


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Silence the exporter's progress lines and its notes about optional torchvision ops."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def strip_export_metadata(model: onnx.ModelProto) -> None:
    """Remove doc strings and metadata properties from the model, its graphs, values and nodes."""
    model.doc_string = ""
    del model.metadata_props[:]
    _strip_graph(model.graph)
    _drop_unused_initializers(model.graph)


def _strip_graph(graph: onnx.GraphProto) -> None:
    graph.doc_string = ""
    del graph.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.doc_string = ""
        del value.metadata_props[:]
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _strip_graph(attribute.g)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers that no node reads, in `graph` and in every subgraph (the exporter
    leaves a few behind; onnxruntime warns about each)."""
    used = {name for node in walk_nodes(graph) for name in node.input}
    used.update(value.name for value in graph.output)
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _drop_unused_initializers(attribute.g)


def check_exported_interface(entry: ZooModel, scale: str, model: onnx.ModelProto) -> None:
    """Raise `ExportError` unless inputs, their symbolic dims, outputs and `If` count are as declared."""
    problems = list(_interface_problems(entry, scale, model.graph))
    if_count = sum(node.op_type == "If" for node in walk_nodes(model.graph))
    if if_count != entry.expected_if_count(scale):
        problems.append(f"{if_count} If node(s), expected {entry.expected_if_count(scale)}")
    if problems:
        raise ExportError(
            f"{entry.name} ({scale}): exported model breaks its spec: " + "; ".join(problems)
        )


def _interface_problems(entry: ZooModel, scale: str, graph: onnx.GraphProto) -> Sequence[str]:
    constants = entry.constants_at(scale)
    problems = []
    inputs = {value.name: value_dims(value) for value in graph.input}
    for spec in entry.inputs:
        expected = tuple(
            dim if dim in entry.symbol_names else resolve_dim(dim, {}, constants)
            for dim in spec.dims
        )
        if inputs.get(spec.name) != expected:
            problems.append(
                f"input {spec.name} has dims {inputs.get(spec.name)}, expected {expected}"
            )
    names = [value.name for value in graph.output]
    if names != [spec.name for spec in entry.outputs]:
        problems.append(f"outputs are {names}, expected {[spec.name for spec in entry.outputs]}")
    return problems
