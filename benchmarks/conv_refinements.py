"""What the two refinements of the Conv strategies buy inside models: `tiles` and `panels`.

    python benchmarks/conv_refinements.py [--scale paper] [--models yolov6,dgnet] [--rounds 2]

Per model, two runtimes compiled alike (every option at its default) run the whole sweep, one
with the refinements on, the other off (`kernels.TILES_MAX_WEIGHT_BYTES`,
`kernels.TILES_SMALL_IMAGE_WEIGHT_BYTES`, `kernels.TILES_WINOGRAD_WEIGHT_BYTES` and
`kernels.CONV_PANEL_MAX_POSITIONS` set to 0, so
every convolution takes the strategy its weights' shape picks, `conv_strategy`),
alternating, `--rounds` times, in this one process:
the machine's drift then touches both alike. Each point: one warm-up run, then the median of 3
timed runs per round, pooled over the rounds; the figure is the geometric mean over the sweep,
in milliseconds. A runtime settles each convolution's strategy at the first run of a binding
(`ConvKernel.bind`), so each side has a runtime of its own, always run under its own limits.
Both memory plans are compiled with the refinements on (their workspace regions sized for
`tiles`), so "off" runs the other strategies in those regions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sod2 import bench
from sod2.backend import kernels
from sod2.backend.runtime import CompileOptions

LIMITS = (
    "TILES_MAX_WEIGHT_BYTES",
    "TILES_SMALL_IMAGE_WEIGHT_BYTES",
    "TILES_WINOGRAD_WEIGHT_BYTES",
    "CONV_PANEL_MAX_POSITIONS",
)
CNNS = "yolov6,skipnet,dgnet,convnet_aig,ranet,blockdrop"


def measure(name: str, scale: str, rounds: int, threads: int) -> dict[str, float]:
    """The geometric means of model `name`'s sweep with the refinements on and off."""
    model = bench.zoo_model(name, scale)
    feeds = [model.feeds(point) for point in model.points]
    settings = {"on": {k: getattr(kernels, k) for k in LIMITS}, "off": dict.fromkeys(LIMITS, 0)}
    runtimes = {
        side: bench.compile_sod2(model.path, CompileOptions(threads=threads)) for side in settings
    }
    times: dict[str, list[list[float]]] = {side: [[] for _ in feeds] for side in settings}
    try:
        for _ in range(rounds):
            for side, limits in settings.items():
                for key, value in limits.items():
                    setattr(kernels, key, value)
                runtime = runtimes[side]
                for i, inputs in enumerate(feeds):
                    runtime.run(inputs)
                    for _ in range(3):
                        start = time.perf_counter()
                        runtime.run(inputs)
                        times[side][i].append(time.perf_counter() - start)
    finally:
        for key, value in settings["on"].items():
            setattr(kernels, key, value)
    return {
        side: float(np.exp(np.mean([np.log(np.median(t)) for t in per]))) * 1e3
        for side, per in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="paper", choices=("small", "paper"))
    parser.add_argument("--models", default=CNNS, help="comma-separated zoo models")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"| model ({args.scale} scale) | off ms | on ms | on / off |")
    print("|---|---:|---:|---:|")
    for name in args.models.split(","):
        got = measure(name, args.scale, args.rounds, args.threads)
        print(f"| {name} | {got['off']:.2f} | {got['on']:.2f} | {got['on'] / got['off']:.2f} |")


if __name__ == "__main__":
    main()
