"""`sod2.backend.jit.serial_and_parallel`: both versions compute the same, and a signature that
does not compile is a `Sod2Error` (never a TypeError a kernel would take for an input it
declines)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numba import prange

from sod2.backend.jit import serial_and_parallel
from sod2.errors import Sod2Error


def _doubled(x, out):  # type: ignore[no-untyped-def]
    for i in prange(x.shape[0]):
        out[i] = 2 * x[i]


def _broken(x, out):  # type: ignore[no-untyped-def]
    out[0] = x.no_such_attribute


def test_both_versions_compute_the_same():
    signature = numba.void(numba.float32[:], numba.float32[:])
    x = np.arange(5, dtype=np.float32)
    for version in serial_and_parallel(_doubled, signature=signature):
        out = np.empty_like(x)
        version(x, out)
        np.testing.assert_array_equal(out, 2 * x)


def test_a_signature_that_does_not_compile_is_a_sod2_error():
    signature = numba.void(numba.float32[:], numba.float32[:])
    with pytest.raises(Sod2Error, match=r"compiling _broken for .* failed: TypingError"):
        serial_and_parallel(_broken, signature=signature)
