"""Compiling one loop nest twice: on the calling thread and over Numba's pool.

A kernel keeps both versions and picks per call: a small loop runs serially, where handing it
out would cost more than it saves. Both are compiled on first use and cached on disk.

Invariant: Numba names a cache file after the function's qualified name, not its compile flags,
so the parallel version compiles a twin of the function under a name of its own
(`<name>_parallel`); without it, one version would load the other's machine code. A version
compiled at once, for a given signature, that fails to compile is a `Sod2Error`: kernels take
ValueError and TypeError for inputs they decline, and a compiler's error must not read as one.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Set
from typing import Any

import numba

from sod2.errors import Sod2Error


def serial_and_parallel(
    function: Callable[..., Any],
    fastmath: Set[str] | bool = False,
    signature: Any = None,
) -> tuple[Any, Any]:
    """`function` compiled by `numba.njit` (cached, with `fastmath`) twice: serially, and with
    its `prange` loops parallel. Each compiles once per argument types met, on first use; or,
    given a `signature`, for it alone, at once (arguments then convert to its types: an
    array's to an 'A'-layout array of the same element type and rank, say); a signature that
    does not compile is a `Sod2Error` naming the function."""
    try:
        return _compile_twice(function, fastmath, signature)
    except Exception as error:  # (only a signature compiles here: the rest, at the first call)
        raise Sod2Error(
            f"compiling {function.__qualname__} for {signature} failed: "
            f"{type(error).__name__}: {error}"
        ) from error


def _compile_twice(
    function: Callable[..., Any], fastmath: Set[str] | bool, signature: Any
) -> tuple[Any, Any]:
    options = {"cache": True, "fastmath": fastmath}
    jit = numba.njit(**options) if signature is None else numba.njit(signature, **options)
    serial = jit(function)
    twin = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__ + "_parallel",
        function.__defaults__,
        function.__closure__,
    )
    twin.__qualname__ = function.__qualname__ + "_parallel"
    options["parallel"] = True
    jit = numba.njit(**options) if signature is None else numba.njit(signature, **options)
    parallel = jit(twin)
    return serial, parallel
