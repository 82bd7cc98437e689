"""The compile cache: a file's analysis is reused only while the file, its external data, sod2's
code and the analysis options are unchanged, and a reused analysis computes exactly what a fresh
one does."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import numpy as np
import onnx
import pytest

from sod2 import cache
from sod2.backend import runtime
from sod2.backend.runtime import CompileOptions, compile_model
from sod2.zoo import get, names


@pytest.fixture
def kind(monkeypatch):
    """The compile cache under a folder of its own (the kernel caches stay shared and warm)."""
    name = f"compiled-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(runtime, "COMPILED", name)
    yield name
    shutil.rmtree(cache.cache_dir(name), ignore_errors=True)


def _settle(path) -> None:
    then = time.time() - 10
    os.utime(path, (then, then))


def _copy(name: str, folder) -> object:
    path = folder / f"{name}.onnx"
    shutil.copyfile(get(name).path(), path)
    _settle(path)
    return path


@pytest.mark.parametrize("name", names())
def test_a_cached_analysis_computes_what_a_fresh_one_does(name, kind):
    fresh = compile_model(get(name).path())
    cached = compile_model(get(name).path())
    assert not fresh.from_cache and cached.from_cache
    assert "compile cache" in cached.describe()
    assert len(cached.steps) == len(fresh.steps)
    for _, inputs in get(name).sweep_inputs()[:3]:
        want, got = fresh.run(inputs), cached.run(inputs)
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name} {key}")
        assert cached.arena_bytes(inputs) == fresh.arena_bytes(inputs)


def test_a_changed_file_is_analysed_again(kind, tmp_path):
    path = _copy("skipnet", tmp_path)
    assert not compile_model(path).from_cache
    assert compile_model(path).from_cache
    model = onnx.load(path)
    model.doc_string = "changed"
    onnx.save(model, path)
    _settle(path)
    assert not compile_model(path).from_cache
    assert compile_model(path).from_cache


def test_a_file_just_written_is_not_cached(kind, tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copyfile(get("skipnet").path(), path)  # modified now: its stamp may yet repeat
    compile_model(path)
    os.utime(path)  # still just written however long that compile took
    assert not compile_model(path).from_cache
    assert not cache.cache_dir(kind).exists() or not list(cache.cache_dir(kind).iterdir())


def test_analysis_options_have_entries_of_their_own(kind, tmp_path):
    path = _copy("codebert", tmp_path)
    compile_model(path)
    assert not compile_model(path, CompileOptions(fusion=False)).from_cache
    assert not compile_model(path, CompileOptions(ranges={"S": (1, 8)})).from_cache
    assert compile_model(path, CompileOptions(fusion=False)).from_cache
    # the thread count is not part of the analysis; the fast kernels are, as far as the plan
    # holds their workspace
    assert compile_model(path, CompileOptions(threads=1)).from_cache
    assert not compile_model(path, CompileOptions(mvc=False)).from_cache
    assert compile_model(path, CompileOptions(mvc=False, workspace=None)).from_cache


def test_cache_false_neither_reads_nor_writes(kind, tmp_path):
    path = _copy("codebert", tmp_path)
    compile_model(path, CompileOptions(cache=False))
    assert not cache.cache_dir(kind).exists()
    compile_model(path)
    assert not compile_model(path, CompileOptions(cache=False)).from_cache


def test_other_code_does_not_read_the_entry(kind, tmp_path, monkeypatch):
    path = _copy("codebert", tmp_path)
    compile_model(path)
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "another version")
    assert not compile_model(path).from_cache


def test_a_broken_entry_is_analysed_again_and_replaced(kind, tmp_path):
    path = _copy("codebert", tmp_path)
    compile_model(path)
    (entry,) = cache.cache_dir(kind).glob("*.pkl")
    entry.write_bytes(entry.read_bytes()[:1000])
    assert not compile_model(path).from_cache
    assert compile_model(path).from_cache


def test_changed_external_data_is_analysed_again(kind, tmp_path):
    path = tmp_path / "m.onnx"
    model = onnx.load(get("skipnet").path())
    onnx.save(model, path, save_as_external_data=True, location="m.data", size_threshold=0)
    data = tmp_path / "m.data"
    for file in (path, data):
        _settle(file)
    inputs = get("skipnet").sweep_inputs()[0][1]
    before = compile_model(path).run(inputs)
    assert compile_model(path).from_cache
    raw = bytearray(data.read_bytes())
    raw[:4096] = bytes(4096)  # other weights, same size
    data.write_bytes(bytes(raw))
    _settle(data)
    changed = compile_model(path)
    assert not changed.from_cache
    after = changed.run(inputs)
    assert any(not np.array_equal(after[k], before[k]) for k in before)


def test_stored_expressions_load_as_they_were_stored(tmp_path, monkeypatch):
    """Max, Min, floor, ceiling and Mod in a cached plan come back as the same expressions,
    built without evaluating them again (which costs seconds on large plans)."""
    import sympy

    monkeypatch.setenv("SOD2_CACHE_DIR", str(tmp_path))
    h, w = sympy.symbols("H W", positive=True, integer=True)
    inner = sympy.Max(h, 2 * w) + sympy.floor(h / 3)
    stored = [
        64 * sympy.Min(4096, sympy.ceiling((inner + 64) / 16, evaluate=False), evaluate=False),
        sympy.Mod(h * w, 7),
        sympy.Min(h, w),
    ]
    assert cache.store_object("compiled", "exprs", {}, stored, runtime._REDUCERS)
    built: list[type] = []
    original = sympy.Max.__new__

    def spy(cls, *args, **options):
        if options.get("evaluate", True):
            built.append(cls)
        return original(cls, *args, **options)

    monkeypatch.setattr(sympy.Max, "__new__", staticmethod(spy))
    loaded = cache.load_object("compiled", "exprs", lambda header: True)
    assert loaded == stored
    assert [e.func for e in loaded] == [e.func for e in stored]
    assert not built, "a Max was evaluated while loading"
    binding = {h: 30, w: 7}
    assert [e.subs(binding) for e in loaded] == [e.subs(binding) for e in stored]


def _laid_out(compiled) -> set[str]:
    """Names of the top graph's constant matrices held by columns (`MatMulKernel.prepare`)."""
    return {
        t.name
        for t in compiled.model.graph.constants
        if getattr(t.const_value, "ndim", 0) == 2
        and t.const_value.flags.f_contiguous
        and not t.const_value.flags.c_contiguous
    }


def test_weights_laid_out_at_compile_time_are_cached_in_that_layout(kind, tmp_path, monkeypatch):
    """A warm compile finds the weights its kernels read by columns already stored so."""
    from sod2.backend import kernels

    monkeypatch.setattr(kernels, "SKINNY_MIN_WEIGHTS", 1024)
    monkeypatch.setattr(kernels.panel, "TILE", None)  # (a machine without panel products)
    path = _copy("codebert", tmp_path)
    cold = compile_model(path)
    laid_out = _laid_out(cold)
    assert laid_out, "no weight was laid out by columns"
    calls = []
    lay_out = kernels.column_major

    def counted(w):
        laid_out = lay_out(w)  # None for a weight stored by columns already
        if laid_out is not None:
            calls.append(w.shape)
        return laid_out

    monkeypatch.setattr(kernels, "column_major", counted)
    warm = compile_model(path)
    assert warm.from_cache
    assert _laid_out(warm) == laid_out
    assert not calls, "a cached weight was laid out again"
    for _, inputs in get("codebert").sweep_inputs()[:2]:
        want, got = cold.run(inputs), warm.run(inputs)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_winograd_filters_are_cached_with_the_analysis(kind, tmp_path, monkeypatch):
    """A warm compile hands each Winograd convolution the filters the cold one transformed."""
    from sod2.backend import kernels

    monkeypatch.setattr(kernels, "WINOGRAD_MIN_CHANNELS", 8)  # (the small model's widths)
    monkeypatch.setattr(kernels, "TILES_WINOGRAD_WEIGHT_BYTES", 0)  # (their small weights)
    path = _copy("sd_vae_decoder", tmp_path)
    cold = compile_model(path)
    assert cold.derived, "no convolution runs as Winograd"
    calls = []
    original = kernels.winograd_filters

    def counted(w):
        calls.append(w.shape)
        return original(w)

    monkeypatch.setattr(kernels, "winograd_filters", counted)
    warm = compile_model(path)
    assert warm.from_cache
    assert not calls, "a cached transform was computed again"
    assert {t.name for t in warm.derived} == {t.name for t in cold.derived}
    for tensor, filters in warm.derived.items():
        np.testing.assert_array_equal(filters, original(tensor.const_value), err_msg=tensor.name)
    for _, inputs in get("sd_vae_decoder").sweep_inputs()[:1]:
        want, got = cold.run(inputs), warm.run(inputs)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
