"""Backends: the reference interpreter, Numba code generation, fast kernels and the runtime.

Importing this package sets how long idle threads of Numba's OpenMP pool and of OpenBLAS's
spin before they sleep, where the user has not (`sod2.backend.threads`): briefly, so that two
pools sharing the cores neither starve each other (spinning threads took the cores the other
pool's work needed: Conv's im2col, which alternates the two, ran up to 10x slower on two cores)
nor pay a wake-up before every parallel loop. OpenMP reads its variables when its pool starts
(Numba's first parallel loop, or `numba.set_num_threads`), so they are set here, before any of
that. It also lets the loops Numba vectorizes use all 512 bits of AVX-512, where the CPU has
it and the user has not chosen Numba's CPU (`sod2.backend.vectors`), before Numba compiles
anything.
"""

from sod2.backend import threads, vectors

threads.configure()
vectors.configure()

# (the settings above are made before anything below compiles with Numba)

from sod2.backend.reference import (  # noqa: E402  (after the settings above)
    InputError,
    ReferenceInterpreter,
    RunResult,
    run_reference,
    unsupported_ops,
)

__all__ = ["InputError", "ReferenceInterpreter", "RunResult", "run_reference", "unsupported_ops"]
