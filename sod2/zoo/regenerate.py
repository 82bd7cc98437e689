"""Rebuild the small-scale ONNX files shipped in `sod2/zoo/models/`.

    python -m sod2.zoo.regenerate              every zoo model
    python -m sod2.zoo.regenerate NAME ...     only these

Builds are seeded and deterministic, so rerunning gives the same graphs. Needs torch and
onnxscript (`pip install torch==2.13.0 onnxscript`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from sod2.errors import Sod2Error
from sod2.zoo.graph_facts import graph_facts
from sod2.zoo.registry import REGISTRY, get

MAX_SHIPPED_BYTES = 2 * 1024 * 1024


def regenerate(names: Sequence[str]) -> list[str]:
    """Rebuild the small files of `names` (all models when empty); one summary line per model."""
    lines = []
    for name in names or list(REGISTRY):
        entry = get(name)
        started = time.perf_counter()
        path = entry.build("small")
        facts = graph_facts(path)
        warning = "  (over 2 MB!)" if facts.file_bytes > MAX_SHIPPED_BYTES else ""
        lines.append(
            f"{name}: {facts.nodes} nodes, {facts.if_count} If, {facts.file_bytes / 1e6:.2f} MB,"
            f" {time.perf_counter() - started:.0f} s{warning}"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m sod2.zoo.regenerate`; returns the exit status."""
    try:
        regenerate(list(sys.argv[1:] if argv is None else argv))
    except Sod2Error as error:
        print(f"sod2.zoo.regenerate: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
