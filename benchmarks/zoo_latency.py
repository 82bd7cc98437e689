"""onnxruntime latency of the zoo models over their sweeps, plus their graph facts.

    python benchmarks/zoo_latency.py                     every model, paper scale
    python benchmarks/zoo_latency.py codebert yolov6     only these
    python benchmarks/zoo_latency.py --scale small --repeat 5 --update-docs

For each model, the ONNX file at the scale is reused if present, else built (needs torch).
Each sweep point runs once to warm up, then `--repeat` timed runs (one only if the warm-up took
longer than `--slow-seconds`); a point's latency is the median of its runs, and the model's range
is the min, median and max over its sweep points. onnxruntime uses the CPU provider with
`--threads` intra-op threads (2 by default) and one inter-op thread.

Writes `benchmarks/results/zoo_latency.json`, prints a markdown table, and with `--update-docs`
puts that table into `docs/zoo.md` between the `zoo-latency` markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from sod2.zoo import REGISTRY, get
from sod2.zoo.graph_facts import graph_facts
from sod2.zoo.spec import ZooModel

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "zoo_latency.json"
DOCS = ROOT / "docs" / "zoo.md"
START_MARKER = "<!-- zoo-latency:start -->"
END_MARKER = "<!-- zoo-latency:end -->"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to measure (default: all)")
    parser.add_argument("--scale", choices=("small", "paper"), default="paper")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per sweep point")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="one timed run above this")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--update-docs", action="store_true", help="rewrite the table in docs/zoo.md"
    )
    return parser.parse_args(argv)


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads and sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_point(session: ort.InferenceSession, inputs: dict, repeat: int, slow: float) -> float:
    """The median latency in milliseconds of `repeat` runs after one warm-up run."""
    started = time.perf_counter()
    session.run(None, inputs)
    warmup = time.perf_counter() - started
    timings = []
    for _ in range(1 if warmup > slow else repeat):
        started = time.perf_counter()
        session.run(None, inputs)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000.0


def measure(entry: ZooModel, args: argparse.Namespace) -> dict:
    """Graph facts of both scales and the latency of every sweep point at `args.scale`."""
    path = entry.path(args.scale)
    if not path.is_file():
        print(f"building {entry.name} ({args.scale}) ...", file=sys.stderr, flush=True)
        entry.build(args.scale)
    session = open_session(path, args.threads)
    points = []
    for point, inputs in entry.sweep_inputs(args.scale):
        latency = time_point(session, inputs, args.repeat, args.slow_seconds)
        points.append({"binding": point.values(), "seed": point.seed, "latency_ms": latency})
        print(f"  {entry.name} {point.label()}: {latency:.1f} ms", file=sys.stderr, flush=True)
    latencies = [point["latency_ms"] for point in points]
    return {
        "name": entry.name,
        "family": entry.family,
        "facts": {scale: _facts(entry, scale) for scale in ("small", "paper")},
        "op_types": list(graph_facts(path).op_types),
        "latency_ms": {
            "min": min(latencies),
            "median": statistics.median(latencies),
            "max": max(latencies),
        },
        "points": points,
    }


def _facts(entry: ZooModel, scale: str) -> dict | None:
    path = entry.path(scale)
    if not path.is_file():
        return None
    facts = graph_facts(path)
    return {
        "nodes": facts.nodes,
        "if_count": facts.if_count,
        "file_mb": round(facts.file_bytes / 1e6, 2),
    }


def markdown_table(results: list[dict], scale: str, threads: int) -> str:
    """One row per model: nodes, If count and file size at both scales, latency range, ops."""
    lines = [
        f"onnxruntime {ort.__version__}, CPU ({platform.machine()}), {threads} intra-op threads, {scale} scale."
        " Latency: median of the runs of each sweep point; min / median / max over the sweep.",
        "",
        "| model | nodes (small / paper) | If (small / paper) | MB (small / paper) | latency ms (min / median / max) | ops |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        small, paper = result["facts"]["small"] or {}, result["facts"]["paper"] or {}
        latency = result["latency_ms"]
        lines.append(
            f"| {result['name']} | {_pair(small, paper, 'nodes')} | {_pair(small, paper, 'if_count')}"
            f" | {_pair(small, paper, 'file_mb')}"
            f" | {latency['min']:.1f} / {latency['median']:.1f} / {latency['max']:.1f}"
            f" | {', '.join(result['op_types'])} |"
        )
    return "\n".join(lines)


def _pair(small: dict, paper: dict, key: str) -> str:
    return f"{small.get(key, '-')} / {paper.get(key, '-')}"


def merged_results(path: Path, fresh: list[dict], scale: str) -> list[dict]:
    """`fresh` results over those already in `path` for the same scale, in registry order."""
    by_name = {}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("scale") == scale:
            by_name = {result["name"]: result for result in previous["models"]}
    by_name.update({result["name"]: result for result in fresh})
    return [by_name[name] for name in REGISTRY if name in by_name]


def update_docs(table: str) -> None:
    """Replace the text between the latency markers of docs/zoo.md with `table`."""
    text = DOCS.read_text()
    start, end = text.index(START_MARKER) + len(START_MARKER), text.index(END_MARKER)
    DOCS.write_text(text[:start] + "\n" + table + "\n" + text[end:])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write the JSON, print (and optionally store) the table."""
    args = parse_arguments(argv)
    fresh = [measure(get(name), args) for name in args.names or list(REGISTRY)]
    results = merged_results(args.output, fresh, args.scale)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "scale": args.scale,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "models": results,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown_table(results, args.scale, args.threads)
    print(table)
    if args.update_docs:
        update_docs(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
