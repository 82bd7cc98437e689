"""How RDP's time grows with graph size: generated CNN-like graphs of 1k, 10k and 50k nodes.

Each block of the generated graph is Conv 3x3 -> Relu -> Add (a residual), with, every 8 blocks, a
flatten-and-restore through shape arithmetic (Shape -> Gather -> Concat -> Reshape) and, every 64
blocks, a stride-2 max pool: the kinds of nodes, and the kinds of symbolic dims (floor divisions
of H and W), that real dynamic models have. The input is `x: float32[N, 8, H, W]`.

    python benchmarks/rdp_scale.py [--sizes 1000,10000,50000]

prints a table and writes benchmarks/results/rdp_scale.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type

ROOT = Path(__file__).resolve().parent.parent


def generated_model(target_nodes: int, channels: int = 8) -> Model:
    """A model of about `target_nodes` nodes (see the module docstring)."""
    graph = Graph("generated")
    x = graph.add_input(
        "x", tensor_type(DType.FLOAT32, [symbol("N"), channels, symbol("H"), symbol("W")])
    )
    weight = graph.add_constant(np.full((channels, channels, 3, 3), 0.01, np.float32), "weight")
    gather_index = graph.add_constant(np.array([0, 1], np.int64), "batch_channels")
    minus_one = graph.add_constant(np.array([-1], np.int64), "minus_one")
    current, block = x, 0
    while len(graph) < target_nodes:
        conv = graph.add_node(
            "Conv", [current, weight], attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
        ).outputs[0]
        relu = graph.add_node("Relu", [conv]).outputs[0]
        current = graph.add_node("Add", [relu, current]).outputs[0]
        block += 1
        if block % 8 == 0:
            shape = graph.add_node("Shape", [current]).outputs[0]
            head = graph.add_node("Gather", [shape, gather_index], attrs={"axis": 0}).outputs[0]
            flat_shape = graph.add_node("Concat", [head, minus_one], attrs={"axis": 0}).outputs[0]
            flat = graph.add_node("Reshape", [current, flat_shape]).outputs[0]
            current = graph.add_node("Reshape", [flat, shape]).outputs[0]
        if block % 64 == 0:
            current = graph.add_node(
                "MaxPool",
                [current],
                attrs={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
            ).outputs[0]
    graph.set_outputs([current])
    return Model(graph, {"": 18})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        model = generated_model(size)
        started = time.perf_counter()
        result = propagate(model)
        elapsed = time.perf_counter() - started
        dims = [d for f in result.facts.values() if f.shape.dims for d in f.shape.dims]
        resolved = sum(result.is_resolved(d) for d in dims)
        rows.append(
            {
                "nodes": len(model.graph),
                "seconds": elapsed,
                "microseconds_per_node": 1e6 * elapsed / len(model.graph),
                "resolved": resolved,
                "dims": len(dims),
            }
        )
        print(
            f"{len(model.graph):>7} nodes  {elapsed:8.2f} s  "
            f"{1e6 * elapsed / len(model.graph):8.1f} us/node  {resolved}/{len(dims)} dims resolved"
        )
    out = ROOT / "benchmarks" / "results" / "rdp_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
