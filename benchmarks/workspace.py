"""Kernel workspace in the arena: latency and peak memory for each `CompileOptions.workspace`.

    python benchmarks/workspace.py [--models yolov6,skipnet] [--scale paper]
                                   [--settings none,4,8] [--repeat K] [--steps]

For each zoo model, sod2 is compiled once per setting (`none`: no workspace in the plan, kernels
keep buffers of their own; a number: the most workspace the plan sets aside for one step, in
MiB). Latency: the sum over the sweep
of each point's best of K runs, the settings interleaved in this one process so that the
machine's drift touches them alike. Peak memory: `sod2.bench.peak_memory`, each setting in a
child of its own, as `benchmarks/latency.py` measures it (ORT's figure from the committed
`benchmarks/results/latency.<scale>.json`, for the ratio). Threads: $SOD2_BENCH_THREADS
(default 2).

`--steps` measures nothing of that: per model, at the largest point of its sweep and the first
setting, each step's workspace region (`CompiledModel.workspace_steps`): where it lies, what
the plan set aside, what the kernels took, what the planned storages alive beside it take.
"""

from __future__ import annotations

import os

THREADS = int(os.environ.get("SOD2_BENCH_THREADS", "2"))
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, str(THREADS))  # before numpy and numba start their pools

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from sod2 import bench  # noqa: E402
from sod2.backend.runtime import CompileOptions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_setting(text: str) -> int | None:
    """`none` -> None; a number of MiB -> bytes."""
    return None if text == "none" else int(float(text) * (1 << 20))


def ort_growth(model: str, scale: str) -> int | None:
    """ORT's peak memory growth for `model` in the committed latency results, if any."""
    path = RESULTS / f"latency.{scale}.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text())["models"]:
        if row["model"] == model:
            return (row.get("memory") or {}).get("ort", {}).get("growth_bytes")
    return None


def report_steps(name: str, scale: str, setting: str) -> None:
    """Print where each workspace step's region went at the model's largest point."""
    model = bench.zoo_model(name, scale)
    feeds = model.feeds(model.points[-1])
    compiled = bench.compile_sod2(
        model.path, CompileOptions(workspace=parse_setting(setting), threads=THREADS)
    )
    compiled.run(feeds)
    rows = compiled.workspace_steps(feeds)
    mib = 1 / (1 << 20)
    plan = bench.compile_sod2(model.path, CompileOptions(workspace=None, threads=THREADS))
    print(
        f"\n{name} at {model.points[-1].label()}, workspace {setting} MiB: arena "
        f"{compiled.arena_bytes(feeds) * mib:.2f} MiB, {plan.arena_bytes(feeds) * mib:.2f} "
        f"MiB without workspace"
    )
    print(
        "| step | op | region at MiB | region MiB | planned MiB | used MiB | alive MiB "
        "| alive top MiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.step} | {row.op} | {row.offset * mib:.2f} | {row.region_bytes * mib:.2f} | "
            f"{row.planned_bytes * mib:.2f} | {row.used_bytes * mib:.2f} | "
            f"{row.live_bytes * mib:.2f} | {row.live_top * mib:.2f} |"
        )
    if rows:
        bound = max(row.live_bytes + row.used_bytes for row in rows)
        print(
            f"\nalive plus used, at most {bound * mib:.2f} MiB at one workspace step (the least "
            "arena in which every step's kernels get what they took here)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="yolov6,dgnet,skipnet,blockdrop,convnet_aig")
    parser.add_argument("--scale", default="paper", choices=["small", "paper"])
    parser.add_argument("--settings", default="none,4,8", help="none or MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=4, help="rounds of the interleaved sweep")
    parser.add_argument("--steps", action="store_true", help="each step's region, no timing")
    args = parser.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",")]
    if args.steps:
        for name in args.models.split(","):
            report_steps(name, args.scale, settings[0])
        return 0
    print("| model | workspace | sweep ms | peak MiB | arena MiB | sod2/ORT |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model = bench.zoo_model(name, args.scale)
        feeds = [model.feeds(point) for point in model.points]
        loaded = {
            s: bench.sod2_loader({"workspace": parse_setting(s)})(model, THREADS) for s in settings
        }
        best = {s: [float("inf")] * len(feeds) for s in settings}
        for round_ in range(args.repeat):
            order = settings if round_ % 2 == 0 else settings[::-1]
            for s in order:
                for k, point in enumerate(feeds):
                    loaded[s].run(point)  # (the first round also prepares each binding)
                    start = time.perf_counter()
                    loaded[s].run(point)
                    best[s][k] = min(best[s][k], time.perf_counter() - start)
        ort = ort_growth(name, args.scale)
        for s in settings:
            memory = bench.peak_memory(
                model, "sod2", THREADS, flags={"workspace": parse_setting(s)}
            )
            growth, arena = memory.growth_bytes, memory.arena_bytes
            ratio = f"{growth / ort:.2f}" if growth and ort else "-"
            print(
                f"| {name} | {s} | {1e3 * sum(best[s]):.1f} | "
                f"{(growth or 0) / 2**20:.1f} | {(arena or 0) / 2**20:.1f} | {ratio} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
