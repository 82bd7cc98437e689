"""Memory planning on the zoo: sod2's symbolic plan against planners that re-plan per input.

    python benchmarks/memory.py [--scale small|paper] [--models a,b] [--no-exact] [--update-docs]

For every zoo model: import, RDP, plan once over the model's symbol ranges (`plan_seconds`; the
first instantiation, which loads or compiles the placement loop, is `compile_seconds`), then at
every sweep binding the figures of `sod2.opt.memory_report.figures`: order peak (chosen and
model's order), the instantiated arena, greedy-by-size and online best-fit re-planned for that
binding, no reuse, instantiation time, and the exact optimum of the order where the search
finishes; and arena / greedy at random bindings the planner never saw. Also the instantiation
time of a generated 2,000-tensor graph, and the first instantiation of sam_mask_decoder and of
that graph in fresh processes, with empty evaluator and Numba caches (cold) and again (warm).
Targets checked per binding: arena <= 1.05 x greedy, arena <= 1.10 x order peak, order peak <=
default order peak, and instantiation under 100 us.

Writes `benchmarks/results/memory.<scale>.json`; with `--update-docs` the scale's section of
`docs/memory.md` (between its markers; the other scale's section is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sod2 import load
from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.opt import placement
from sod2.opt.memory_plan import GraphPlan, PlanOptions, plan_memory
from sod2.opt.memory_report import figures, instantiate_microseconds
from sod2.zoo import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "memory.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("paper", "small"), default="paper")
    parser.add_argument("--models", default="", help="comma-separated zoo names (default all)")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact order search")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--probe", default="", help=argparse.SUPPRESS)  # one compile_probe run
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(first_instantiation(args.probe, args.scale)))
        return
    names = [n for n in args.models.split(",") if n] or list(REGISTRY)
    rows = {name: measure(name, args.scale, exact=not args.no_exact) for name in names}
    large = generated_instantiation()
    compile_times = {name: compile_probe(name, args.scale) for name in COMPILE_PROBES}
    out = ROOT / "benchmarks" / "results" / f"memory.{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"models": rows, "generated": large, "compile": compile_times}
    out.write_text(json.dumps(result, indent=1))
    if args.update_docs:
        update_docs(args.scale, markdown(rows, large, compile_times, args.scale))


def measure(name: str, scale: str, *, exact: bool) -> dict:
    """Plan one zoo model and take its figures at every sweep binding."""
    entry = REGISTRY[name]
    path = _model_path(name, scale)
    model = load(path)
    rdp = propagate(model)
    ranges = {s.name: (s.low, s.high) for s in entry.symbols}
    began = time.perf_counter()
    plan = plan_memory(model, rdp, PlanOptions(ranges=ranges))
    planned = time.perf_counter()
    plan.top.instantiate(entry.sweep[0].values())
    compiled = time.perf_counter()
    points = []
    for point in entry.sweep:
        result = figures(plan, point.values(), exact=exact).to_dict()
        result["targets"] = targets(result)
        points.append(result)
        print(name, point.label(), _line(result), flush=True)
    return {
        "file": path.name,
        "nodes": len(model.graph.nodes),
        "storages": len(plan.top.storages),
        "versions": len(plan.top.versions),
        "tensors_planned": points[0]["tensors_planned"],
        "plan_seconds": planned - began,
        "compile_seconds": compiled - planned,
        "order": {
            "segments": getattr(plan.top.order_result, "segments", 0),
            "exact_segments": getattr(plan.top.order_result, "exact_segments", 0),
            "proof": getattr(plan.top.order_result, "proof", "default"),
        },
        "points": points,
        "random": random_bindings_check(plan.top, ranges),
    }


def _model_path(name: str, scale: str) -> Path:
    entry = REGISTRY[name]
    return entry.path(scale) if scale == "small" or entry.path(scale).exists() else entry.path()


def random_bindings_check(
    top: GraphPlan, ranges: dict[str, tuple[int, int]], count: int = 200, seed: int = 2024
) -> dict:
    """Arena / greedy-by-size at `count` log-uniform random bindings drawn apart from the plan's
    samples and validation bindings (another seed): how the versions serve unseen inputs."""
    rng = np.random.default_rng(seed)
    start = np.array([s.start for s in top.storages], dtype=np.int64)
    end = np.array([s.end for s in top.storages], dtype=np.int64)
    ratios = []
    for _ in range(count if ranges else 0):
        binding = {
            name: round(math.exp(rng.uniform(math.log(max(low, 1)), math.log(max(high, 1)))))
            for name, (low, high) in ranges.items()
        }
        size = top.sizes(top.binding_values(binding))
        greedy = placement.arena_size(placement.greedy_by_size(start, end, size), size)
        ratios.append(top.instantiate(binding).arena_bytes / max(greedy, 1))
    return {
        "bindings": len(ratios),
        "worst_arena_over_greedy": max(ratios, default=1.0),
        "over_1.05": sum(r > 1.05 for r in ratios),
    }


def targets(f: dict) -> dict[str, bool]:
    """The issue's targets at one binding."""
    return {
        "arena<=1.05*greedy": f["arena_bytes"] <= 1.05 * f["greedy_by_size_bytes"],
        "arena<=1.10*order_peak": f["arena_bytes"] <= 1.10 * f["order_peak_bytes"],
        "order_peak<=default": f["order_peak_bytes"] <= f["default_order_peak_bytes"],
        "instantiate<100us": f["instantiate_us"] < 100,
    }


def _line(f: dict) -> str:
    return (
        f"peak {f['order_peak_bytes']} default {f['default_order_peak_bytes']} arena "
        f"{f['arena_bytes']} greedy {f['greedy_by_size_bytes']} best-fit "
        f"{f['online_best_fit_bytes']} {f['instantiate_us']:.1f}us"
    )


def generated_model(blocks: int = 400) -> Model:
    """A residual chain of `blocks` blocks (5 tensors each) over symbols N, H, W."""
    n, h, w = symbol("N"), symbol("H"), symbol("W")
    graph = Graph("chain")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [n, 8, h, w]))
    for _ in range(blocks):
        a = graph.add_node("Relu", [x]).outputs[0]
        b = graph.add_node("Sigmoid", [a]).outputs[0]
        c = graph.add_node("Mul", [a, b]).outputs[0]
        d = graph.add_node("Tanh", [c]).outputs[0]
        x = graph.add_node("Add", [d, x]).outputs[0]
    graph.set_outputs([x])
    return Model(graph, {"": 18})


GENERATED_OPTIONS = PlanOptions(inplace=False, search_order=False)
GENERATED_BINDING = {"N": 2, "H": 56, "W": 56}


def generated_instantiation() -> dict:
    """Instantiation time of a residual chain with about 2,000 tensors."""
    model = generated_model()
    tensors = sum(len(node.outputs) for node in model.graph.nodes)
    began = time.perf_counter()
    plan = plan_memory(model, options=GENERATED_OPTIONS)
    planned = time.perf_counter() - began
    binding = GENERATED_BINDING
    began = time.perf_counter()
    plan.top.instantiate(binding)
    compiled = time.perf_counter() - began
    return {
        "tensors": tensors,
        "storages": len(plan.top.storages),
        "plan_seconds": planned,
        "compile_seconds": compiled,
        "instantiate_us": instantiate_microseconds(plan.top, binding, 500),
    }


COMPILE_PROBES = ("sam_mask_decoder", "generated")
"""The plans whose first instantiation is timed in fresh processes (cold and warm caches)."""


def first_instantiation(name: str, scale: str) -> dict:
    """Plan `name` (a zoo model, or "generated": the 2,000-tensor chain) in this process and time
    its first instantiation, which compiles or loads the placement loop and evaluators."""
    if name == "generated":
        model, options, binding = generated_model(), GENERATED_OPTIONS, GENERATED_BINDING
    else:
        entry = REGISTRY[name]
        model = load(_model_path(name, scale))
        options = PlanOptions(ranges={s.name: (s.low, s.high) for s in entry.symbols})
        binding = entry.sweep[0].values()
    began = time.perf_counter()
    plan = plan_memory(model, options=options)
    planned = time.perf_counter()
    plan.top.instantiate(binding)
    return {"plan_seconds": planned - began, "first_seconds": time.perf_counter() - planned}


def compile_probe(name: str, scale: str) -> dict:
    """`first_instantiation` in a fresh process with empty caches (cold), then in another one
    with the caches the first left (warm)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SOD2_CACHE_DIR": cache, "NUMBA_CACHE_DIR": f"{cache}/numba"}
        command = [sys.executable, __file__, "--probe", name, "--scale", scale]
        runs = [
            json.loads(subprocess.run(command, env=env, capture_output=True, check=True).stdout)
            for _ in range(2)
        ]
    print(name, "first instantiation cold", runs[0], "warm", runs[1], flush=True)
    return {"cold": runs[0], "warm": runs[1]}


def markdown(rows: dict, large: dict, compile_times: dict, scale: str) -> str:
    """The scale's section of docs/memory.md."""
    unit = "MiB" if scale == "paper" else "KiB"
    lines = [
        f"### {scale} scale",
        "",
        f"`python benchmarks/memory.py --scale {scale} --update-docs` (sizes in {unit}; ratios are",
        "arena / greedy-by-size and arena / order peak; optimum: the exact minimum order peak of",
        "the order-search model, views but no in-place, next to the chosen order's peak in that",
        "model; '-' where the exact search did not finish).",
        "",
        *_binding_table(rows, 2**20 if scale == "paper" else 2**10),
        "",
        *_model_table(rows),
        "",
        *_footer(rows, large, compile_times),
    ]
    return "\n".join(lines) + "\n"


def _binding_table(rows: dict, div: int) -> list[str]:
    """One row per model and sweep binding."""
    lines = [
        "| model | binding | order peak | default order | arena | greedy | best fit | no reuse "
        "| a/g | a/peak | optimum (chosen) | inst. µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        for f in row["points"]:
            binding = " ".join(f"{k}={v}" for k, v in f["binding"].items())
            optimum = f["optimal_order_peak_bytes"]
            sep = (
                "-" if optimum is None else f"{optimum / div:.2f} ({f['sep_peak_bytes'] / div:.2f})"
            )
            lines.append(
                f"| {name} | {binding} | {f['order_peak_bytes'] / div:.2f} | "
                f"{f['default_order_peak_bytes'] / div:.2f} | {f['arena_bytes'] / div:.2f} | "
                f"{f['greedy_by_size_bytes'] / div:.2f} | {f['online_best_fit_bytes'] / div:.2f} | "
                f"{f['no_reuse_bytes'] / div:.2f} | {_ratio(f, 'greedy_by_size_bytes'):.3f} | "
                f"{_ratio(f, 'order_peak_bytes'):.3f} | {sep} | {f['instantiate_us']:.1f} |"
            )
    return lines


def _model_table(rows: dict) -> list[str]:
    """One row per model: sizes of the plan, times, worst ratios, targets."""
    lines = [
        "| model | nodes | storages | versions | plan (s) | first inst. (s) | worst a/g | "
        "worst a/peak | random: worst a/g (> 1.05) | order segments exact | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        points, random = row["points"], row["random"]
        ok = all(all(f["targets"].values()) for f in points)
        lines.append(
            f"| {name} | {row['nodes']} | {row['storages']} | {row['versions']} | "
            f"{row['plan_seconds']:.2f} | {row['compile_seconds']:.2f} | "
            f"{max(_ratio(f, 'greedy_by_size_bytes') for f in points):.3f} | "
            f"{max(_ratio(f, 'order_peak_bytes') for f in points):.3f} | "
            f"{random['worst_arena_over_greedy']:.3f} ({random['over_1.05']}/"
            f"{random['bindings']}) | "
            f"{row['order']['exact_segments']}/{row['order']['segments']} | "
            f"{'met' if ok else 'missed'} |"
        )
    return lines


def _footer(rows: dict, large: dict, compile_times: dict) -> list[str]:
    """Means, the generated graph, cold and warm first instantiations, missed targets."""
    points = [(name, f) for name, row in rows.items() for f in row["points"]]
    best_fit = [_ratio(f, "online_best_fit_bytes") for _, f in points]
    no_reuse = [_ratio(f, "no_reuse_bytes") for _, f in points]
    failures = [
        f"{name} {' '.join(f'{k}={v}' for k, v in f['binding'].items())}: {target}"
        for name, f in points
        for target, ok in f["targets"].items()
        if not ok
    ]
    lines = [
        f"Geometric mean over all rows: arena / online best fit {_geomean(best_fit):.3f}, "
        f"arena / no reuse {_geomean(no_reuse):.3f}.",
        f"Generated residual chain of {large['tensors']} tensors ({large['storages']} storages): "
        f"plan {large['plan_seconds']:.2f} s, first instantiation {large['compile_seconds']:.2f} s, "
        f"instantiation {large['instantiate_us']:.1f} µs.",
        "",
        "First instantiation in a fresh process (plan, then placement loop and evaluators compiled "
        "or loaded), with empty caches (cold) and with the caches a first process left (warm):",
        "",
        "| plan | plan (s) | first inst. cold (s) | first inst. warm (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in compile_times.items():
        cold, warm = runs["cold"], runs["warm"]
        lines.append(
            f"| {name} | {cold['plan_seconds']:.2f} | {cold['first_seconds']:.2f} | "
            f"{warm['first_seconds']:.2f} |"
        )
    lines += ["", "Targets missed: " + ("none." if not failures else "; ".join(failures) + ".")]
    return lines


def _ratio(f: dict, key: str) -> float:
    return f["arena_bytes"] / max(f[key], 1)


def _geomean(values: list[float]) -> float:
    return math.exp(float(np.mean(np.log(np.maximum(values, 1e-12))))) if values else 1.0


def update_docs(scale: str, section: str) -> None:
    """Replace the scale's section of docs/memory.md (between its markers)."""
    start, end = f"<!-- memory-{scale}:start -->", f"<!-- memory-{scale}:end -->"
    text = DOCS.read_text() if DOCS.exists() else ""
    block = f"{start}\n{section}{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
