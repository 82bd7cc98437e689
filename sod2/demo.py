"""`sod2 demo`: a tour of what sod2 sees in a dynamic model that ships with it.

The model is the zoo's SkipNet: a ResNet whose residual blocks each sit behind a gate computed from
the activations, exported as ONNX `If` nodes, and whose input resolution is free (symbols H, W).
The tour loads it, summarizes it, shows one gated block as IR text, cleans it up with a pass
pipeline (verifying the IR between passes), runs it with the reference interpreter at two
resolutions of its sweep, then compiles it once (`sod2.compile`: fusion, the symbolic memory plan,
generated loop nests and fast kernels) and runs the compiled model at the same two resolutions,
checking that its outputs match the interpreter's.
"""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np

from sod2.backend.reference import ReferenceInterpreter
from sod2.backend.runtime import compile_model
from sod2.ir import format_graph, load
from sod2.ir.graph import Node
from sod2.ir.printer import format_node
from sod2.passes import PassContext, PassManager, TimingInstrument, VerifyInstrument
from sod2.summary import model_summary
from sod2.zoo import get

DEMO_MODEL = "skipnet"
PIPELINE = "fold-constants,dce,toposort"


def run_demo(out: TextIO, model_name: str = DEMO_MODEL) -> None:
    """Print the tour to `out`."""
    entry = get(model_name)
    path = entry.path("small")
    model = load(path)
    _section(out, f"1. {entry.name} ({entry.family}): {entry.summary}")
    out.write(model_summary(model, str(path.name), top_ops=10) + "\n")

    gate = next((node for node in model.graph.nodes if node.op_type == "If"), None)
    if gate is not None:
        _section(out, "2. One gated block, as sod2's IR")
        out.write(_gated_block(gate) + "\n")

    _section(out, f"3. Pipeline {PIPELINE!r}, verified between passes")
    timing = TimingInstrument()
    before = sum(1 for _ in model.graph.walk())
    PassManager.parse(PIPELINE).run(
        model, PassContext.with_instruments([timing, VerifyInstrument()])
    )
    after = sum(1 for _ in model.graph.walk())
    out.write(f"nodes {before} -> {after}\n{timing.report()}\n")

    _section(out, "4. Reference runs at two resolutions of the sweep")
    interpreter = ReferenceInterpreter(model)
    points = (entry.sweep[0], entry.sweep[-1])
    expected = {}
    for point in points:
        feeds = entry.make_inputs(point.values(), seed=point.seed)
        started = time.perf_counter()
        outputs = interpreter.run(feeds).outputs
        elapsed = (time.perf_counter() - started) * 1e3
        expected[point.label()] = outputs
        shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in outputs.items())
        out.write(f"{point.label():<28} -> {shapes}  ({elapsed:.0f} ms)\n")

    _section(out, "5. Compiled once for every resolution, then run")
    compiled = compile_model(path)
    out.write(compiled.describe() + "\n")
    for point in points:
        feeds = entry.make_inputs(point.values(), seed=point.seed)
        compiled.run(feeds)  # the first run at a new binding instantiates the memory plan
        started = time.perf_counter()
        outputs = compiled.run(feeds)
        elapsed = (time.perf_counter() - started) * 1e3
        same = all(
            np.allclose(outputs[name], value, rtol=1e-4, atol=1e-5)
            for name, value in expected[point.label()].items()
        )
        arena = compiled.arena_bytes(feeds) / 2**20
        out.write(
            f"{point.label():<28} -> {elapsed:.1f} ms, arena {arena:.2f} MiB, "
            f"{'matches' if same else 'DIFFERS FROM'} the interpreter\n"
        )


def _gated_block(gate: Node, max_lines: int = 24) -> str:
    lines = [format_node(gate)]
    for key, subgraph in gate.subgraphs:
        text = format_graph(subgraph).splitlines()
        shown = text[: max_lines // 2] + (["  ..."] if len(text) > max_lines // 2 else [])
        lines.append(f"  {key}:")
        lines.extend("    " + line for line in shown)
    return "\n".join(lines)


def _section(out: TextIO, title: str) -> None:
    out.write(f"\n== {title}\n")
