"""How long idle worker threads wait awake: OpenMP's (Numba's pool) and OpenBLAS's.

Two thread pools can run in a sod2 process: Numba's `prange` loops run on OpenMP threads
(libgomp), and numpy's matrix products on OpenBLAS's own pthreads. sod2's kernels call
OpenBLAS's gemm from the OpenMP threads (`sod2.backend.blas`), so its products stay on the one
pool; OpenBLAS's own pool still runs the products numpy is handed: a reference kernel's, or one
`blas.matmul_into` leaves to numpy. On a machine with as many cores as threads, the two pools
take turns on the same cores, and what an idle thread does matters:

- A thread that *spins* after its work (polls for the next) keeps a core busy. OpenBLAS's
  workers spin for 2^28 cycles (about 0.1 s) by default, so after every sgemm one core is taken
  while the Numba loops that follow run: a softmax after the attention product took twice its
  time. Numba's threads spinning for as long starve BLAS's in turn, up to 10x (im2col alternates
  the two).
- A thread that *sleeps* at once must be woken for the next parallel loop, which costs tens of
  microseconds on a virtual machine; a model runs hundreds of loops and products per call.

So both pools spin for a while and then sleep (`configure`): OpenMP threads for
GOMP_SPINCOUNT=100000 polls (1 to 2 ms on the 2-core machine of docs/performance.md;
OMP_WAIT_POLICY=PASSIVE otherwise), OpenBLAS's for 2^16 cycles (OPENBLAS_THREAD_TIMEOUT=16,
about 30 microseconds). The OpenMP pool, which runs every loop and product of a model, finds its
threads awake across the serial steps between them; a pool that is not used soon gives its cores
back. (Before sod2's products ran on the OpenMP pool, its spin was 10000 polls, about 0.2 ms,
so as not to starve OpenBLAS's threads between products.)
`python benchmarks/threads.py` measures them against other settings (docs/performance.md,
"Thread pools").

Invariants: a variable the user set is never changed; OpenMP reads its variables when its pool
starts (Numba's first parallel loop), so `configure` must run first; OpenBLAS, loaded with numpy
before any of this, reads its variable when its threads start, so they are stopped to be
restarted (on the next product) when the timeout changed and the library has the functions for
it. Where it does not (another BLAS, or an OpenBLAS without them), nothing is changed there.
"""

from __future__ import annotations

import ctypes
import glob
import os

OMP_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "100000"}
"""OpenMP's settings, applied where the variable is unset."""

OPENBLAS_TIMEOUT = 16
"""OpenBLAS's workers spin for 2^OPENBLAS_TIMEOUT cycles after their work (OpenBLAS's own
default is 28), unless OPENBLAS_THREAD_TIMEOUT is set."""


def configure() -> bool:
    """Apply OMP_SETTINGS and OPENBLAS_TIMEOUT where the user did not set them; True when
    OpenBLAS's threads were restarted with the new timeout."""
    for name, value in OMP_SETTINGS.items():
        os.environ.setdefault(name, value)
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(OPENBLAS_TIMEOUT)
    return restart_openblas_threads()


def openblas_library() -> ctypes.CDLL | None:
    """numpy's OpenBLAS (the library its wheels ship), if it has the functions `configure`
    needs; None otherwise."""
    import numpy as np

    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*.so*"))):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        if all(
            hasattr(library, name)
            for name in ("openblas_read_env", "openblas_thread_timeout", "blas_thread_shutdown_")
        ):
            return library
    return None


def restart_openblas_threads() -> bool:
    """Have numpy's OpenBLAS read its environment again and, if its thread timeout changed,
    stop its threads (it starts them again, with the new timeout, on its next threaded call).
    True when it did."""
    library = openblas_library()
    if library is None:
        return False
    library.openblas_thread_timeout.restype = ctypes.c_int
    before = library.openblas_thread_timeout()
    library.openblas_read_env()
    if library.openblas_thread_timeout() == before:
        return False
    library.blas_thread_shutdown_()
    return True
