"""sod2 against onnxruntime, PyTorch eager and TVM Relax on the zoo: latency, memory, compile time.

    python benchmarks/latency.py [--scale small|paper] [--models a,b] [--repeat K] [--threads N]
                                 [--peers ort,torch,tvm] [--no-ablation] [--update-docs]
    python benchmarks/latency.py --scale paper --render --update-docs   (from the JSON only)
    python benchmarks/latency.py --scale paper --refresh-compile        (sod2's compile times)

For every zoo model, in this one process: each runtime loads the model once and runs every point
of the model's sweep (one warm-up, then the median of K timed runs), and sod2's and every peer's
outputs are compared with onnxruntime's at each point; then, in child processes, sod2's compile
time with empty and with filled kernel caches, and the peak intermediate memory of sod2 and of
onnxruntime over the sweep; then the ablation rows (sod2 with its optimizations switched on one
by one). The measuring is `sod2.bench`; its docstring says exactly how each figure is taken.

Paper-scale files are built when missing (`sod2 zoo build NAME --scale paper`, needs torch).
Writes `benchmarks/results/latency.<scale>.json` (models measured before at the same scale and
not named now are kept) and, with `--update-docs`, the scale's section of docs/performance.md
between `<!-- latency-<scale>:start -->` and `<!-- latency-<scale>:end -->`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from sod2.bench import (
    BenchSettings,
    bench_model,
    compile_times,
    markdown_ablation,
    markdown_failures,
    markdown_latency,
    markdown_memory,
    markdown_targets,
    parse_peers,
    zoo_model,
)
from sod2.zoo import REGISTRY, get

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("small", "paper"), default="small")
    parser.add_argument("--models", nargs="*", default=[], help="zoo names, or a,b (default all)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per sweep point")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="one run above this")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child process, s")
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation rows")
    parser.add_argument(
        "--peers", default="ort,torch,tvm", help="peers beside sod2 (onnxruntime always runs)"
    )
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument(
        "--render", action="store_true", help="measure nothing: print the section from the JSON"
    )
    parser.add_argument(
        "--refresh-compile",
        action="store_true",
        help="only measure sod2's cold and warm compile times again, for the models in the JSON",
    )
    return parser.parse_args(argv)


def model_names(requested: Sequence[str]) -> list[str]:
    """The zoo names asked for (space- or comma-separated), in registry order; all by default."""
    names = [name for item in requested for name in item.split(",") if name]
    for name in names:
        get(name)  # an unknown name fails here, listing the known ones
    return [name for name in REGISTRY if name in names] if names else list(REGISTRY)


def ensure_built(name: str, scale: str) -> None:
    """Build the paper-scale file of `name` when it is missing (small files ship with sod2)."""
    entry = get(name)
    if not entry.path(scale).is_file():
        print(f"building {name} ({scale}) ...", file=sys.stderr, flush=True)
        entry.build(scale)


def versions() -> dict[str, str | None]:
    """Versions of the runtimes measured (None: not installed)."""
    found = {}
    for package in ("onnxruntime", "torch", "apache-tvm", "numba", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def merged(path: Path, fresh: list[dict], scale: str) -> list[dict]:
    """`fresh` records over those already in `path` for the same scale, in registry order."""
    by_name = {}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("scale") == scale:
            by_name = {record["model"]: record for record in previous["models"]}
    by_name.update({record["model"]: record for record in fresh})
    return [by_name[name] for name in REGISTRY if name in by_name]


def file_commands(path: Path, scale: str) -> list[str]:
    """The commands `path` lists at `scale` (none for another scale or no file)."""
    if not path.is_file():
        return []
    previous = json.loads(path.read_text())
    return list(previous.get("commands", [])) if previous.get("scale") == scale else []


def record_commands(records: list[dict], fallback: list[str]) -> list[str]:
    """Every command that measured some record (each record lists its own; one written before
    records did stands for the file's earlier list, `fallback`), in the order first used."""
    found: list[str] = []
    for record in records:
        found.extend(record.get("commands") or fallback)
    return list(dict.fromkeys(found))


def add_command(record: dict, command: str) -> dict:
    """`record` with `command` last among the commands that measured it."""
    record["commands"] = list(dict.fromkeys([*record.get("commands", []), command]))
    return record


def section(payload: dict) -> str:
    """The scale's section of docs/performance.md."""
    scale, records, found = payload["scale"], payload["models"], payload["versions"]
    tvm = (
        f"TVM Relax {found['apache-tvm']} (ONNX frontend `tvm.relax.frontend.onnx.from_onnx`, "
        "symbolic input dims kept, `tvm.compile(..., target='llvm')`, untuned); '-' where its "
        "frontend or build rejects the model (reason below)."
        if found["apache-tvm"]
        else "TVM Relax: '-' everywhere, apache-tvm is not installed (`pip install -e '.[bench]'`)."
    )
    lines = [
        f"### {scale} scale",
        "",
        "Targets:",
        "",
        markdown_targets(records),
        " and ".join(f"`{c}`" for c in payload.get("commands", []))
        + f" (then `--update-docs`): {payload['machine']}, "
        f"{payload['threads']} threads per runtime, median of {payload['repeat']} timed runs per "
        f"sweep point after one warm-up (one when the warm-up took over 5 s); "
        f"onnxruntime {found['onnxruntime']}, "
        f"torch {found['torch'] or '-'}, numba {found['numba']}, numpy {found['numpy']}. {tvm}",
        "",
        "Latency in ms, min–max over the sweep; `peer/sod2`: geometric mean over the sweep of "
        "the peer's time over sod2's (above 1: sod2 is faster). ✗: outputs differ from "
        "onnxruntime's at some point (rtol 1e-4, atol 1e-5); *: some points failed.",
        "",
        markdown_latency(records),
        "Peak intermediate memory (RSS growth over the sweep, MiB), sod2's planned arena at the "
        "largest point, and compile times in seconds (cold: empty kernel caches; warm: the same "
        "caches, a new process; the first run is where lazily built kernels are compiled).",
        "",
        markdown_memory(records),
        "Ablation: geometric-mean latency (ms) over the sweep with sod2's optimizations switched "
        "on one after the other (none: reference kernels, the model's order, numpy allocation).",
        "",
        markdown_ablation(records),
    ]
    failures = markdown_failures(records)
    lines += ["Failures and differences:", "", failures] if failures else ["Nothing failed.", ""]
    return "\n".join(lines)


def update_docs(scale: str, text: str) -> None:
    """Replace the scale's section of docs/performance.md between its markers (added if absent)."""
    start, end = f"<!-- latency-{scale}:start -->", f"<!-- latency-{scale}:end -->"
    document = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in document and end in document:
        pattern = re.escape(start) + r".*?" + re.escape(end)
        document = re.sub(pattern, lambda _: block, document, flags=re.S)
    else:
        document = document.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(document)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write the JSON, and optionally the docs."""
    args = parse_arguments(argv)
    settings = BenchSettings(
        threads=args.threads,
        repeat=args.repeat,
        slow_seconds=args.slow_seconds,
        peers=parse_peers(args.peers),
        ablation=not args.no_ablation,
        timeout=args.timeout,
    )
    out = ROOT / "benchmarks" / "results" / f"latency.{args.scale}.json"
    command = " ".join(
        ["python benchmarks/latency.py", *(argv if argv is not None else sys.argv[1:])]
    )
    earlier = file_commands(out, args.scale)
    payload: dict = {}
    if args.render or args.refresh_compile:
        if not out.is_file():
            print(f"{out} does not exist: measure first", file=sys.stderr)
            return 1
        payload = json.loads(out.read_text())
        payload.setdefault("commands", [])
    if args.refresh_compile:
        names = set(model_names(args.models))
        for record in payload["models"]:
            if record["model"] in names:
                model = zoo_model(record["model"], args.scale)
                times = compile_times(model, "sod2", args.threads, args.timeout)
                record["compile"]["sod2"] = asdict(times)
                add_command(record, command)
                print(f"{record['model']} sod2 compile: {times}", file=sys.stderr)
                payload["commands"] = record_commands(payload["models"], earlier)
                out.write_text(json.dumps(payload, indent=1) + "\n")
    measure = not (args.render or args.refresh_compile)
    for name in model_names(args.models) if measure else []:  # JSON rewritten per model
        ensure_built(name, args.scale)
        bench = bench_model(
            zoo_model(name, args.scale), settings, lambda line: print(line, file=sys.stderr)
        )
        records = merged(out, [add_command(bench.to_json(), command)], args.scale)
        payload = {
            "scale": args.scale,
            "threads": args.threads,
            "repeat": args.repeat,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "commands": record_commands(records, earlier),
            "versions": versions(),
            "models": records,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1) + "\n")
    if not payload:
        return 0
    text = section(payload)
    print(text)
    if args.update_docs:
        update_docs(args.scale, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
