"""How long idle threads spin, and on which pool products run: sod2's latency per setting.

    python benchmarks/threads.py [--models sam_mask_decoder,conformer] [--scale paper]
                                 [--settings sleep,brief] [--rounds R] [--repeat K]

`sod2.backend.threads` chooses how long the idle threads of Numba's OpenMP pool and of numpy's
OpenBLAS spin before they sleep, and `sod2.backend.blas` runs sod2's products on the OpenMP pool
(unless SOD2_MATMUL=numpy). A setting here is a set of environment variables, which sod2 keeps
where they are set:

- `sleep`: OpenMP threads sleep at once (GOMP_SPINCOUNT=0), OpenBLAS's spin for its default
  2^28 cycles (OPENBLAS_THREAD_TIMEOUT=28): sod2's setting before `threads`;
- `numpy`: OpenMP threads poll 10000 times, OpenBLAS's spin 2^16 cycles, and sod2 hands its
  products to numpy (SOD2_MATMUL=numpy), so they run on OpenBLAS's pool: sod2 before
  `sod2.backend.blas`;
- `pool`: the same polls and spins, with the products on Numba's pool (`blas.matmul_into`);
- `brief`: sod2's setting (`threads.OMP_SETTINGS`, `threads.OPENBLAS_TIMEOUT`);
- `NAME=VALUE+NAME=VALUE`: any other.

Each (model, setting) runs in a child process of its own, since the pools read the variables
when they start: sod2 compiled with the warm caches, each sweep point's median of K runs after
one warm-up, their geometric mean. The settings alternate R rounds, so that the machine's drift
touches them alike; the best round of each is kept. Results: a table on stdout, and each
model's row in `benchmarks/results/threads.<scale>.json` (a run replaces the rows of the models it
measured). Threads: $SOD2_BENCH_THREADS (default 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sod2.backend import threads
from sod2.bench import geomean

RESULTS = Path(__file__).resolve().parent / "results"
THREADS = int(os.environ.get("SOD2_BENCH_THREADS", "2"))

_SHORT_SPIN = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "GOMP_SPINCOUNT": "10000",
    "OPENBLAS_THREAD_TIMEOUT": "16",
}
SETTINGS = {
    "sleep": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "OPENBLAS_THREAD_TIMEOUT": "28"},
    "numpy": {**_SHORT_SPIN, "SOD2_MATMUL": "numpy"},
    "pool": _SHORT_SPIN,
    "brief": {**threads.OMP_SETTINGS, "OPENBLAS_THREAD_TIMEOUT": str(threads.OPENBLAS_TIMEOUT)},
}

CHILD = """
import json, math, sys
from sod2 import bench
from sod2.backend.runtime import CompileOptions
name, scale, threads, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = bench.zoo_model(name, scale)
compiled = bench.compile_sod2(model.path, CompileOptions(threads=threads))
ms = [bench.time_point(compiled.run, model.feeds(p), repeat, math.inf)[0] for p in model.points]
print(json.dumps(ms))
"""


def parse_setting(text: str) -> dict[str, str]:
    """A named setting, or NAME=VALUE pairs joined by '+'."""
    if text in SETTINGS:
        return SETTINGS[text]
    pairs = [item.split("=", 1) for item in text.split("+")]
    if not all(len(pair) == 2 and pair[0] for pair in pairs):
        raise SystemExit(f"setting {text!r}: expected one of {sorted(SETTINGS)} or NAME=VALUE+...")
    return dict(pairs)


def measure(name: str, scale: str, variables: dict[str, str], repeat: int) -> list[float]:
    """Each sweep point's median milliseconds, in a child process under `variables`."""
    env = {**os.environ, **variables}
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(variable, str(THREADS))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, name, scale, str(THREADS), str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sam_mask_decoder,conformer,sd_text_encoder,yolov6")
    parser.add_argument("--scale", choices=["small", "paper"], default="paper")
    parser.add_argument("--settings", default="sleep,brief")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    names = args.settings.split(",")
    settings = {name: parse_setting(name) for name in names}
    rows = []
    for model in args.models.split(","):
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, variables in settings.items():
                value = geomean(measure(model, args.scale, variables, args.repeat))
                best[name] = min(best.get(name, math.inf), value)
        rows.append({"model": model, "geomean_ms": best})
        print(model, " ".join(f"{k} {v:.2f} ms" for k, v in best.items()), flush=True)
    first = names[0]
    lines = [
        "| model | "
        + " | ".join(f"{n} ms" for n in names)
        + " | "
        + " | ".join(f"{n}/{first}" for n in names[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for row in rows:
        ms = row["geomean_ms"]
        cells = [f"{ms[n]:.2f}" for n in names] + [f"{ms[n] / ms[first]:.2f}" for n in names[1:]]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    command = "python benchmarks/threads.py " + " ".join(argv or sys.argv[1:])
    merge(RESULTS / f"threads.{args.scale}.json", rows, command, settings)
    return 0


def merge(path: Path, rows: list[dict], command: str, settings: dict[str, dict]) -> None:
    """Write `rows` into the results at `path`, replacing those of the same models and keeping
    the others (each row records the command and settings that measured it)."""
    record = json.loads(path.read_text()) if path.exists() else {}
    kept = [
        row for row in record.get("models", []) if row["model"] not in {r["model"] for r in rows}
    ]
    fresh = [{**row, "command": command, "settings": settings, "threads": THREADS} for row in rows]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"models": kept + fresh}, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
