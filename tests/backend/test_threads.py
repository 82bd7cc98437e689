"""Thread-pool settings (`sod2.backend.threads`): set where unset, never where the user set
them, and OpenBLAS's threads restarted only when its timeout changes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sod2.backend import threads


def run_python(code: str, env: dict[str, str]) -> str:
    """The output of `code` in a fresh interpreter (whose pools have not started) under `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in threads.OMP_SETTINGS}
    clean.pop("OPENBLAS_THREAD_TIMEOUT", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


REPORT = (
    "import numpy, os, sod2.backend\n"
    "from sod2.backend import threads\n"
    "library = threads.openblas_library()\n"
    "timeout = library.openblas_thread_timeout() if library is not None else None\n"
    "print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'],"
    " os.environ['OPENBLAS_THREAD_TIMEOUT'], timeout)\n"
)


def test_importing_the_backend_sets_what_is_unset():
    wait, spins, timeout, seen = run_python(REPORT, {}).split()
    assert (wait, spins, timeout) == ("PASSIVE", "100000", str(threads.OPENBLAS_TIMEOUT))
    if threads.openblas_library() is not None:  # numpy's OpenBLAS reads it, though loaded first
        assert seen == str(threads.OPENBLAS_TIMEOUT)


def test_what_the_user_set_is_kept():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "5", "OPENBLAS_THREAD_TIMEOUT": "20"}
    wait, spins, timeout, seen = run_python(REPORT, env).split()
    assert (wait, spins, timeout) == ("ACTIVE", "5", "20")
    if threads.openblas_library() is not None:
        assert seen == "20"


def test_openblas_threads_restart_only_when_the_timeout_changes(monkeypatch):
    library = threads.openblas_library()
    if library is None:
        pytest.skip("numpy here does not use an OpenBLAS with these functions")
    current = str(library.openblas_thread_timeout())
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", current)
    assert not threads.restart_openblas_threads()
    assert not threads.configure()  # set by the user (here: the test): left alone
