"""Kernel workspace in the arena: latency and peak memory for each `CompileOptions.workspace`.

    python benchmarks/workspace.py [--models yolov6,skipnet] [--scale paper]
                                   [--settings none,4,8] [--repeat K]

For each zoo model, sod2 is compiled once per setting (`none`: no regions, kernels keep buffers
of their own; a number: the least workspace per step, in MiB). Latency: the sum over the sweep
of each point's best of K runs, the settings interleaved in this one process so that the
machine's drift touches them alike. Peak memory: `sod2.bench.peak_memory`, each setting in a
child of its own, as `benchmarks/latency.py` measures it (ORT's figure from the committed
`benchmarks/results/latency.<scale>.json`, for the ratio). Threads: $SOD2_BENCH_THREADS
(default 2).
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="yolov6,dgnet,skipnet,blockdrop,convnet_aig")
    parser.add_argument("--scale", default="paper", choices=["small", "paper"])
    parser.add_argument("--settings", default="none,4,8", help="none or MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=4, help="rounds of the interleaved sweep")
    args = parser.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",")]
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
