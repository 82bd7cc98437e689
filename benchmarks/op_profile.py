"""Where one run goes: sod2's schedule and onnxruntime's nodes, timed per op type.

    python benchmarks/op_profile.py MODEL [--scale small|paper] [--point K] [--repeat R]
                                    [--threads T] [--top N]
    python benchmarks/op_profile.py yolov6 --scale paper --point 3

For one point of a zoo model's sweep, in this one process: sod2 compiles the model and runs the
point once (warm-up), then R timed runs with every step of its schedule timed; onnxruntime
(every graph optimization on, the same thread count) runs the point once, then R times, with its
own profiler on throughout, which reports each node's kernel time. Each side's total is the mean
over the R timed runs; an op type's time is the mean over the runs its profiler saw.

sod2's steps are labelled by op type; a fused group is `fused`, and a heavy op with a fused
epilogue is `Conv+epilogue` (its time includes the epilogue). The step timing wraps the step
classes' `run` methods in this script only: the runtime's per-call path has no timing hook.
onnxruntime's labels are its own kernels' (after its fusions: `FusedConv`, `ReorderInput`, ...).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import onnxruntime as ort

import sod2
from sod2.backend import runtime
from sod2.zoo import get

STEP_CLASSES = (
    runtime._ReferenceStep,
    runtime._ViewStep,
    runtime._SplitStep,
    runtime._FusedStep,
    runtime._EpilogueStep,
    runtime._ChainStep,
    runtime._ControlStep,
)


def step_label(step: Any) -> str:
    """A step's op type (see the module docstring)."""
    if isinstance(step, runtime._FusedStep):
        return "fused"
    if isinstance(step, runtime._ChainStep):
        return "Conv chain"
    if isinstance(step, runtime._EpilogueStep):
        return step.node.attr("body").topological_order()[0].op_type + "+epilogue"
    return step.node.op_type


def profile_sod2(
    path: str, feeds: dict[str, Any], threads: int, repeat: int
) -> tuple[float, dict[str, float]]:
    """sod2's mean run time and mean time per step label, in seconds."""
    model = sod2.compile(path, threads=threads)
    model.run(feeds)
    totals: dict[str, float] = collections.defaultdict(float)
    originals = {cls: cls.run for cls in STEP_CLASSES}

    def timed(run: Callable[..., None]) -> Callable[..., None]:
        def wrapper(self: Any, *args: Any) -> None:
            start = time.perf_counter()
            run(self, *args)
            totals[step_label(self)] += time.perf_counter() - start

        return wrapper

    for cls, run in originals.items():
        cls.run = timed(run)  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        for _ in range(repeat):
            model.run(feeds)
        total = (time.perf_counter() - start) / repeat
    finally:
        for cls, run in originals.items():
            cls.run = run  # type: ignore[method-assign]
    return total, {label: seconds / repeat for label, seconds in totals.items()}


def profile_ort(
    path: str, feeds: dict[str, Any], threads: int, repeat: int
) -> tuple[float, dict[str, float]]:
    """onnxruntime's mean run time and mean kernel time per op type, in seconds."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        start = time.perf_counter()
        for _ in range(repeat):
            session.run(None, feeds)
        total = (time.perf_counter() - start) / repeat
        with open(session.end_profiling()) as file:
            events = json.load(file)
    totals: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1e6
    runs = repeat + 1  # the profiler saw the warm-up too
    return total, {label: seconds / runs for label, seconds in totals.items()}


def table(name: str, total: float, shares: dict[str, float], top: int) -> list[str]:
    """Lines of one runtime's profile: its total, then its `top` op types by time."""
    lines = [f"{name}: {total * 1e3:.2f} ms per run"]
    for label, seconds in sorted(shares.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {label:28s} {seconds * 1e3:10.2f} ms  {100 * seconds / total:5.1f}%")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one sweep point of a zoo model on sod2 and onnxruntime; print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo model name")
    parser.add_argument("--scale", choices=["small", "paper"], default="small")
    parser.add_argument("--point", type=int, default=0, help="index into the model's sweep")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per runtime")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--top", type=int, default=12, help="op types listed per runtime")
    args = parser.parse_args(argv)
    entry = get(args.model)
    path = str(entry.path(args.scale))
    points = entry.sweep_inputs(args.scale)
    if not 0 <= args.point < len(points):
        parser.error(f"--point must be in [0, {len(points)}) for {args.model}")
    point, feeds = points[args.point]
    print(f"{args.model} ({args.scale}) at {point}, {args.threads} threads")
    for line in table("sod2", *profile_sod2(path, feeds, args.threads, args.repeat), args.top):
        print(line)
    for line in table(
        "onnxruntime", *profile_ort(path, feeds, args.threads, args.repeat), args.top
    ):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
