"""Where zoo ONNX files live.

Small-scale files ship inside the package (`sod2/zoo/models/<name>.onnx`) so that tests and the
demo need no torch. Paper-scale files are never shipped: they are built on demand into a cache
directory, `$SOD2_CACHE` when set, else `~/.cache/sod2/zoo`, as `<name>.paper.onnx`.
"""

from __future__ import annotations

import os
from pathlib import Path

from sod2.zoo.errors import UnknownScaleError

SCALES = ("small", "paper")
"""The two sizes of every zoo model: `small` ships with sod2, `paper` is built on demand."""

SHIPPED_DIR = Path(__file__).resolve().parent / "models"


def check_scale(scale: str) -> str:
    """Return `scale` if it is a known scale; raise `UnknownScaleError` otherwise."""
    if scale not in SCALES:
        raise UnknownScaleError(f"unknown scale {scale!r}; known scales: {', '.join(SCALES)}")
    return scale


def cache_dir() -> Path:
    """The directory that holds paper-scale builds: `$SOD2_CACHE`, else `~/.cache/sod2/zoo`."""
    configured = os.environ.get("SOD2_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sod2" / "zoo"


def model_path(name: str, scale: str) -> Path:
    """Where the ONNX file of model `name` at `scale` lives (whether or not it exists yet)."""
    if check_scale(scale) == "small":
        return SHIPPED_DIR / f"{name}.onnx"
    return cache_dir() / f"{name}.paper.onnx"
