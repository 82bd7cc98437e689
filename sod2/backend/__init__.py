"""Backends: the reference interpreter, Numba code generation, fast kernels and the runtime.

Importing this package sets OMP_WAIT_POLICY=PASSIVE unless the user set it. OpenMP threads that
spin after a parallel loop steal the cores BLAS's threads need (and BLAS's spinning threads steal
them back): Conv's im2col alternates the two, and ran up to 10x slower on two cores. Passive
waiting makes idle threads sleep at once. OpenMP reads the variable when its pool starts (Numba's
first parallel loop, or `numba.set_num_threads`), so it is set here, before any of that.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# (the variable above is set before anything below loads Numba)

from sod2.backend.reference import (
    InputError,
    ReferenceInterpreter,
    RunResult,
    run_reference,
    unsupported_ops,
)

__all__ = ["InputError", "ReferenceInterpreter", "RunResult", "run_reference", "unsupported_ops"]
