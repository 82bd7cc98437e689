"""sod2's on-disk caches: file stamps, settled files, pickled objects and the code fingerprint."""

from __future__ import annotations

import os
import pickle
import threading
import time

import pytest
import sympy

from sod2 import cache


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_stamp_changes_with_the_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"abc")
    _age(path, 10)
    first = cache.file_stamp(path)
    assert cache.file_stamp(path) == first
    assert cache.file_stamp(path, "salt") != first
    path.write_bytes(b"abd")  # same size, new modification time
    assert cache.file_stamp(path) != first


def test_only_a_file_left_alone_for_a_while_is_settled(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"abc")
    assert not cache.settled(path)
    _age(path, cache.SETTLED_SECONDS + 1)
    assert cache.settled(path)
    assert not cache.settled(tmp_path / "missing")


def test_an_object_comes_back_when_its_header_is_accepted(root):
    body = {"values": list(range(10)), "nested": ({1, 2}, "text")}
    assert cache.store_object("things", "a", {"version": 1}, body)
    assert cache.load_object("things", "a", lambda h: h == {"version": 1}) == body
    assert cache.load_object("things", "missing", lambda h: True) is None


def test_a_rejected_or_broken_entry_is_a_miss_and_is_removed(root):
    cache.store_object("things", "a", {"version": 1}, [1, 2, 3])
    path = root / "things" / "a.pkl"
    assert cache.load_object("things", "a", lambda h: h == {"version": 2}) is None
    assert not path.exists()
    cache.store_object("things", "a", {"version": 1}, [1, 2, 3])
    path.write_bytes(path.read_bytes()[:-5])  # truncated body
    assert cache.load_object("things", "a", lambda h: True) is None
    assert not path.exists()


def test_an_unpicklable_body_writes_nothing(root):
    assert not cache.store_object("things", "a", {}, {"f": lambda: 1})
    assert not list((root / "things").iterdir())


def test_a_structure_deeper_than_the_recursion_limit_is_stored(root):
    chain: list = []
    for _ in range(20_000):  # the pickler recurses once per link
        chain = [chain]
    with pytest.raises(RecursionError):
        pickle.dumps(chain)
    assert cache.store_object("things", "deep", {}, chain)
    loaded = cache.load_object("things", "deep", lambda h: True)
    depth = 0
    while loaded:
        loaded, depth = loaded[0], depth + 1
    assert depth == 20_000
    assert threading.stack_size() == 0  # the process's default is restored


def test_the_least_recently_used_entries_go_beyond_the_limit(root, monkeypatch):
    monkeypatch.setattr(cache, "OBJECT_LIMIT", 3)
    for index in range(3):
        cache.store_object("things", f"e{index}", {}, index)
        _age(root / "things" / f"e{index}.pkl", 100 - index)
    assert cache.load_object("things", "e0", lambda h: True) == 0  # used: now the most recent
    cache.store_object("things", "e3", {}, 3)
    assert sorted(p.stem for p in (root / "things").glob("*.pkl")) == ["e0", "e2", "e3"]


def test_a_source_fingerprint_changes_with_any_source_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "a.py"
    module.write_text("x = 1\n")
    _age(module, 10)
    first = cache.source_fingerprint(tmp_path, ["v1"])
    assert cache.source_fingerprint(tmp_path, ["v1"]) == first
    assert cache.source_fingerprint(tmp_path, ["v2"]) != first
    (tmp_path / "notes.txt").write_text("not code")
    assert cache.source_fingerprint(tmp_path, ["v1"]) == first
    module.write_text("x = 2\n")  # same size, new modification time
    assert cache.source_fingerprint(tmp_path, ["v1"]) != first
    _age(module, 10)
    second = cache.source_fingerprint(tmp_path, ["v1"])
    (tmp_path / "pkg" / "b.py").write_text("")
    assert cache.source_fingerprint(tmp_path, ["v1"]) != second


def _unevaluated_max(args):
    return sympy.Max(*args, evaluate=False)


def test_reducers_pickle_their_types_their_own_way(root):
    x = sympy.Symbol("x", positive=True)
    kept = sympy.Max(x, x + 1, evaluate=False)  # evaluated again, it would become x + 1
    shared = "text in both the header and the body"
    reducers = {sympy.Max: lambda e: (_unevaluated_max, (e.args,))}
    assert cache.store_object("things", "e", [shared], [kept, shared], reducers)
    loaded = cache.load_object("things", "e", lambda h: h == [shared])
    assert loaded == [kept, shared] and loaded[0].args == kept.args
    assert pickle.loads(pickle.dumps(kept)) == x + 1  # what plain pickling would give


def test_entries_beyond_the_byte_limit_go_but_the_newest_stays(root, monkeypatch):
    monkeypatch.setattr(cache, "OBJECT_BYTES", 3000)
    for index in range(3):
        cache.store_object("things", f"e{index}", {}, bytes(1000))
        _age(root / "things" / f"e{index}.pkl", 100 - index)
    cache.store_object("things", "big", {}, bytes(5000))  # alone over the limit
    assert sorted(p.stem for p in (root / "things").glob("*.pkl")) == ["big"]
    cache.store_object("things", "small", {}, bytes(10))
    assert sorted(p.stem for p in (root / "things").glob("*.pkl")) == ["small"]


def test_large_arrays_come_back_as_writable_views_of_the_entry_mapped_copy_on_write(root):
    import mmap

    import numpy as np

    weights = np.arange(1 << 15, dtype=np.float32).reshape(128, 256)  # 128 KiB: out of band
    columns = np.asfortranarray(weights[:, :200])  # 100 KiB
    small = np.ones(7, dtype=np.int64)  # in band
    body = {"weights": weights, "columns": columns, "small": small, "again": weights}
    assert cache.store_object("things", "w", {}, body)
    loaded = cache.load_object("things", "w", lambda h: True)
    assert loaded["again"] is loaded["weights"]
    for key in ("weights", "columns", "small"):
        np.testing.assert_array_equal(loaded[key], body[key])
        assert loaded[key].dtype == body[key].dtype and loaded[key].flags.writeable
    assert loaded["columns"].flags.f_contiguous
    for key in ("weights", "columns"):
        array = loaded[key]
        assert array.ctypes.data % cache.BUFFER_ALIGN == 0
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base.obj, mmap.mmap)  # a view of the mapping, not a copy
    loaded["weights"][0, 0] = -1.0  # copy-on-write: the entry keeps its value
    again = cache.load_object("things", "w", lambda h: True)
    assert again["weights"][0, 0] == 0.0


def test_an_entry_whose_buffers_are_cut_short_is_a_miss(root):
    import numpy as np

    cache.store_object("things", "w", {}, np.zeros(1 << 16, dtype=np.float32))
    path = root / "things" / "w.pkl"
    path.write_bytes(path.read_bytes()[: -(1 << 10)])
    assert cache.load_object("things", "w", lambda h: True) is None
    assert not path.exists()


def test_a_buffer_that_is_not_contiguous_is_pickled_in_band(root):
    import numpy as np

    strided = memoryview(np.arange(1 << 16, dtype=np.float32)).cast("B")[::2]  # 128 KiB, gaps
    buffers: list = []
    in_band = cache._out_of_band(buffers)
    assert in_band(pickle.PickleBuffer(strided)) is True and not buffers
    whole = np.zeros(1 << 15, dtype=np.float32)
    assert in_band(pickle.PickleBuffer(whole)) is False and len(buffers) == 1
