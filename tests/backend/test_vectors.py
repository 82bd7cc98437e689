"""Tests for sod2.backend.vectors: Numba's loops vectorized over all of AVX-512's width."""

from __future__ import annotations

import os

import pytest
from numba.core import codegen, config

from sod2.backend import vectors

HOST_AVX512 = "+sse4.2,+avx2,+fma,+avx512f,+avx512bw,-amx-tile"


def test_widened_turns_the_preference_off_on_avx512() -> None:
    assert vectors.widened(HOST_AVX512) == HOST_AVX512 + ",-prefer-256-bit"


@pytest.mark.parametrize(
    "features",
    [
        "",
        "+sse4.2,+avx2,+fma,-avx512f",  # no AVX-512: nothing to widen
        "+avx2,+fma",
        HOST_AVX512 + ",+prefer-256-bit",  # the preference named already: left as it is
        HOST_AVX512 + ",-prefer-256-bit",
    ],
)
def test_widened_leaves_other_features_alone(features: str) -> None:
    assert vectors.widened(features) is None


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Numba's CPU settings unset (restored afterwards), the host an AVX-512 CPU."""
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(codegen, "get_host_cpu_features", lambda: HOST_AVX512)
    return monkeypatch


def test_configure_sets_numbas_features(clean: pytest.MonkeyPatch) -> None:
    assert vectors.configure()
    assert config.CPU_FEATURES == HOST_AVX512 + ",-prefer-256-bit"


@pytest.mark.parametrize("variable", ["NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"])
def test_configure_keeps_what_the_user_set(clean: pytest.MonkeyPatch, variable: str) -> None:
    clean.setenv(variable, "host" if variable == "NUMBA_CPU_NAME" else "+avx2")
    assert not vectors.configure()
    assert config.CPU_FEATURES is None


def test_configure_keeps_numbas_settings_made_in_code(clean: pytest.MonkeyPatch) -> None:
    clean.setattr(config, "CPU_FEATURES", "+avx2,+fma")
    assert not vectors.configure()
    assert config.CPU_FEATURES == "+avx2,+fma"


def test_configure_without_avx512(clean: pytest.MonkeyPatch) -> None:
    clean.setattr(codegen, "get_host_cpu_features", lambda: "+avx2,+fma")
    assert not vectors.configure()
    assert config.CPU_FEATURES is None


def test_numba_compiles_with_the_features_set_on_import() -> None:
    """Importing sod2.backend configured Numba before its code generator was made: the one
    this process compiles with has the preference off wherever configure applies."""
    from numba.core.registry import cpu_target

    if "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ:
        pytest.skip("the user chose Numba's CPU")
    host = codegen.get_host_cpu_features()
    assert cpu_target.target_context.codegen()._tm_features == (vectors.widened(host) or host)
