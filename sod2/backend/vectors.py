"""How wide the loops Numba compiles are vectorized: all 512 bits of AVX-512.

Numba compiles for the host CPU, and LLVM vectorizes the loops of sod2's generated loop nests
by itself. On x86 CPUs with AVX-512, though, LLVM's tuning for the CPU prefers 256-bit vectors
in the loops it vectorizes (the feature `prefer-256-bit`: the first AVX-512 cores lowered their
clock while 512-bit instructions ran), so those loops use half the lanes the CPU has. That
matters where a loop computes many operations per element from registers: an activation (Gelu's
erfc, Sigmoid's and Softmax's exponentials) or a normalization. Over 16 lanes, a fused
LayerNorm-scale-shift-Gelu loop took 0.32 to 0.44 ms for 262144 elements on one thread of the
2-core machine of docs/performance.md, against 0.57 to 0.79 ms over 8 (six runs of each,
alternated); loops that stream memory gain nothing and lose nothing. The register tiles of the
convolutions and products (`sod2.backend.intrinsics`) spell their vectors out, so they are 512
bits wide either way.

`configure` turns the preference off, where the CPU has AVX-512F and the user set neither
NUMBA_CPU_NAME nor NUMBA_CPU_FEATURES: Numba's CPU features become the host's (what Numba would
use) with "-prefer-256-bit" added. Results do not change: every lane computes what a narrower
lane would, and no flag lets LLVM reorder a sum.

Invariants: a variable the user set is never changed. Numba reads its CPU features when its
first compilation makes its code generator, so `configure` runs before that (importing
`sod2.backend` does it first); code compiled in the process before then keeps the features it
was made with. The features are part of the key of Numba's on-disk cache, so machine code cached
with other features is compiled again once, not loaded.
"""

from __future__ import annotations

import os

PREFERENCE = "prefer-256-bit"
"""LLVM's tuning feature that narrows vectorized loops to 256 bits on AVX-512 CPUs."""


def widened(features: str) -> str | None:
    """`features` (LLVM's comma-separated "+name"/"-name" list) with PREFERENCE turned off,
    where they have AVX-512F and do not name PREFERENCE already; None otherwise."""
    names = features.split(",") if features else []
    if "+avx512f" not in names or any(n[1:] == PREFERENCE for n in names):
        return None
    return ",".join([*names, "-" + PREFERENCE])


def configure() -> bool:
    """Set Numba's CPU features to the host's with PREFERENCE off (module docstring), unless the
    user set NUMBA_CPU_NAME or NUMBA_CPU_FEATURES or the CPU lacks AVX-512F; True when set."""
    if "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ:
        return False
    from numba.core import codegen, config

    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return False
    features = widened(codegen.get_host_cpu_features())
    if features is None:
        return False
    config.CPU_FEATURES = features
    return True
