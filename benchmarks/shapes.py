"""Symbolic shape inference on the zoo: sod2's RDP against the tools people use today.

For every zoo model, side by side in one process:
- sod2: import into the IR, then RDP (`sod2.analysis.rdp.propagate`);
- onnxruntime's `SymbolicShapeInference`, with auto_merge off and on;
- `onnx.shape_inference.infer_shapes(model, data_prop=True)`.

For each tool and each top-level intermediate tensor, every dim counts as *resolved* when the tool
gives an int or an expression over the model's input symbols, else unresolved. Resolved dims are
checked against execution (onnxruntime with every intermediate exposed) at two points of the
model's sweep, the first and the last at small scale, the first two at paper scale (the largest
paper-scale points, with every intermediate kept as an output, need more than 24 GiB): a resolved
dim that evaluates to anything else is *wrong*. The target
set is the dims sod2 does not express with execution-determined (EDO) or branch symbols.

    python benchmarks/shapes.py [--scale paper|small] [--models a,b] [--update-docs]

writes benchmarks/results/shapes.json and, with --update-docs, docs/shapes.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import sympy
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

from sod2.analysis.facts import SymbolOrigin
from sod2.analysis.rdp import RDPResult, propagate
from sod2.errors import Sod2Error
from sod2.ir import from_onnx, parse_dim
from sod2.ir.dims import evaluate_dim
from sod2.testing.shape_check import onnxruntime_shapes
from sod2.zoo import REGISTRY, ZooModel

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("sod2", "ort", "ort-merge", "onnx-data-prop")


@dataclass
class ToolResult:
    """One tool on one model."""

    seconds: float | None = None
    """Analysis time (for sod2: RDP on the imported IR; import is `import_seconds`)."""
    import_seconds: float | None = None
    dims: int = 0
    resolved: int = 0
    target_dims: int = 0
    target_resolved: int = 0
    wrong: int = 0
    error: str = ""
    examples: list[str] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("paper", "small"), default="paper")
    parser.add_argument("--models", default="", help="comma-separated zoo names (default all)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n] or list(REGISTRY)
    rows = {}
    for name in names:
        entry = REGISTRY[name]
        path = entry.path(args.scale) if _built(entry, args.scale) else entry.path("small")
        scale = "paper" if ".paper." in path.name else "small"
        proto = without_value_info(onnx.load(str(path)))
        rows[name] = {"file": path.name, **compare(entry, proto, scale)}
        print(
            name,
            {t: (r.resolved, r.dims, r.wrong, r.seconds) for t, r in rows[name]["tools"].items()},
        )
    out = ROOT / "benchmarks" / "results" / "shapes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    serial = {
        n: {"file": r["file"], "tools": {t: asdict(v) for t, v in r["tools"].items()}}
        for n, r in rows.items()
    }
    out.write_text(json.dumps(serial, indent=1))
    if args.update_docs:
        (ROOT / "docs" / "shapes.md").write_text(markdown(rows, args.scale))


def _built(entry: ZooModel, scale: str) -> bool:
    try:
        return entry.path(scale).exists()
    except Sod2Error:
        return False


def without_value_info(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every intermediate shape its exporter wrote removed: all tools start from
    the declared inputs and outputs only."""

    def strip(graph: onnx.GraphProto) -> None:
        del graph.value_info[:]
        for node in graph.node:
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    strip(sub)

    strip(proto.graph)
    return proto


def compare(entry: ZooModel, proto: onnx.ModelProto, scale: str) -> dict:
    """Every tool's result on one model."""
    started = time.perf_counter()
    model = from_onnx(proto)
    imported = time.perf_counter()
    result = propagate(model)
    analysed = time.perf_counter()
    sod2_dims = {
        t.name: list(f.shape.dims) if f.shape.dims is not None else None
        for t, f in result.facts.items()
        if t.graph is model.graph and t.producer is not None
    }
    input_symbols = {s.name for s in result.input_symbols()}
    actual = _actual_shapes(entry, model, scale)
    targets = _target_dims(result, model, actual)
    tools = {
        "sod2": _score(
            sod2_dims,
            targets,
            actual,
            input_symbols,
            analysed - imported,
            lambda d: d if result.is_resolved(d) else None,
        )
    }
    tools["sod2"].import_seconds = imported - started
    for tool in TOOLS[1:]:
        tools[tool] = _peer(tool, proto, sod2_dims, targets, actual, input_symbols)
    return {"tools": tools}


def _target_dims(result: RDPResult, model: object, actual: list) -> dict[str, list[bool]]:
    """Per intermediate tensor that ran, whether each dim counts in the target set: every dim but
    those sod2 expresses with EDO or branch symbols."""
    edo = {
        s
        for s, i in result.symbols.items()
        if i.origin in (SymbolOrigin.EXECUTION, SymbolOrigin.BRANCH)
    }
    facts = {
        t.name: f
        for t, f in result.facts.items()
        if t.graph is model.graph and t.producer is not None  # type: ignore[attr-defined]
    }
    targets = {}
    for name, shape in actual[0][1].items():
        fact = facts.get(name)
        if fact is None:
            continue
        dims = fact.shape.dims
        if dims is None or len(dims) != len(shape):
            targets[name] = [True] * len(shape)
        else:
            targets[name] = [isinstance(d, int) or not (d.free_symbols & edo) for d in dims]
    return targets


def _actual_shapes(entry: ZooModel, model: object, scale: str) -> list[tuple[dict, dict]]:
    """(binding, tensor name -> shape) at two sweep points (module docstring), by onnxruntime."""
    runs = []
    points = entry.sweep[:2] if scale == "paper" else (entry.sweep[0], entry.sweep[-1])
    for point in points:
        feeds = entry.make_inputs(point.values(), seed=point.seed, scale=scale)
        runs.append((point.values(), onnxruntime_shapes(model, feeds)))  # type: ignore[arg-type]
    return runs


def _peer(
    tool: str,
    proto: onnx.ModelProto,
    sod2_dims: dict,
    targets: dict,
    actual: list,
    input_symbols: set[str],
) -> ToolResult:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    started = time.perf_counter()
    try:
        # onnxruntime's tool may write temporary weight files into the working folder
        with tempfile.TemporaryDirectory() as scratch, _working_folder(scratch):
            if tool == "onnx-data-prop":
                inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True)
            else:
                inferred = SymbolicShapeInference.infer_shapes(copy, auto_merge=tool == "ort-merge")
    except Exception as error:
        return ToolResult(error=f"{type(error).__name__}: {str(error)[:200]}")
    elapsed = time.perf_counter() - started
    if inferred is None:
        return ToolResult(seconds=elapsed, error="returned no model")
    dims = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        if info.name in sod2_dims and info.type.tensor_type.HasField("shape"):
            dims[info.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in info.type.tensor_type.shape.dim
            ]
    for name in sod2_dims:
        dims.setdefault(name, None)

    def resolve(dim: object) -> object:
        if isinstance(dim, int):
            return dim
        if not dim:
            return None
        parsed = parse_dim(str(dim))
        if isinstance(parsed, int) or {s.name for s in parsed.free_symbols} <= input_symbols:
            return parsed
        return None

    return _score(dims, targets, actual, input_symbols, elapsed, resolve)


@contextlib.contextmanager
def _working_folder(path: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _score(
    dims: dict,
    targets: dict,
    actual: list,
    input_symbols: set[str],
    seconds: float,
    resolve: object,
) -> ToolResult:
    result = ToolResult(seconds=seconds)
    for name, target in targets.items():
        tool_dims = dims.get(name)
        observed = [shapes.get(name) for _, shapes in actual]
        rank = len(target)
        for axis in range(rank):
            result.dims += 1
            result.target_dims += target[axis]
            if tool_dims is None or len(tool_dims) != rank:
                continue
            dim = resolve(tool_dims[axis])  # type: ignore[operator]
            if dim is None:
                continue
            result.resolved += 1
            result.target_resolved += target[axis]
            for (binding, _), shape in zip(actual, observed, strict=True):
                if shape is None or len(shape) != rank:
                    continue
                try:
                    value = evaluate_dim(dim, binding) if not isinstance(dim, int) else dim
                except (Sod2Error, TypeError, sympy.SympifyError):
                    value = None
                if value != shape[axis]:
                    result.wrong += 1
                    if len(result.examples) < 3:
                        result.examples.append(
                            f"{name}[{axis}] = {dim} -> {value}, ran {shape[axis]}"
                        )
    return result


def markdown(rows: dict, scale: str) -> str:
    """docs/shapes.md."""
    lines = [
        "# Symbolic shape inference on the zoo",
        "",
        f"`python benchmarks/shapes.py --scale {scale} --update-docs`, all tools in one process.",
        "Resolved: an int or an expression over the model's input symbols. Target: dims sod2 does",
        "not express with execution-determined (EDO) or branch symbols. Wrong: a resolved dim that",
        "differs from execution at two sweep points (first and last; first two at paper scale).",
        "Time: the analysis on a model",
        "already in memory (for sod2, RDP on its IR; importing the ONNX model into the IR is the",
        "column after it, shown for sod2 only).",
        "",
        "| model | tool | resolved (all) | resolved (target) | wrong | time (s) | import (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        for tool, r in row["tools"].items():
            if r.error:
                lines.append(f"| {name} | {tool} | - | - | - | failed: {r.error[:60]} | |")
                continue
            share = 100 * r.resolved / r.dims if r.dims else 100.0
            target = 100 * r.target_resolved / r.target_dims if r.target_dims else 100.0
            imported = "" if r.import_seconds is None else f"{r.import_seconds:.3f}"
            lines.append(
                f"| {name} | {tool} | {share:.1f}% | {target:.1f}% | {r.wrong} | {r.seconds:.3f} "
                f"| {imported} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
