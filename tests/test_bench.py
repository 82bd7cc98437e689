"""The measuring library behind `sod2 bench` and benchmarks/latency.py, on tiny models.

sod2's compiled runtime is replaced by a stand-in (the reference interpreter behind the
`compile_sod2` seam), so these tests check the measuring, never the runtime, and never a timing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from sod2 import bench
from sod2.backend.reference import ReferenceInterpreter
from sod2.bench import (
    ABLATION_ROWS,
    BenchError,
    BenchSettings,
    Loaded,
    PeakRss,
    Summary,
    bench_model,
    compare_outputs,
    file_model,
    geomean,
    load_ort,
    measure_peer,
    parse_peers,
    parse_point,
    resolve_model,
)
from sod2.cli import main
from sod2.ir import load

QUICK = BenchSettings(threads=1, repeat=1, peers=("ort",), memory=False, compile=False)


class StandInCompiled:
    """What `sod2.compile` returns, run by the reference interpreter; remembers its options."""

    made: ClassVar[list] = []

    def __init__(self, path, options) -> None:
        self.interpreter = ReferenceInterpreter(load(path))
        self.options = options
        self.compile_seconds = 0.0
        StandInCompiled.made.append(options)

    def run(self, feeds):
        return self.interpreter.run(feeds).outputs

    def arena_bytes(self, feeds) -> int:
        return 64


@pytest.fixture
def stand_in(monkeypatch):
    StandInCompiled.made = []
    monkeypatch.setattr(bench, "compile_sod2", StandInCompiled)
    return StandInCompiled


@pytest.fixture
def tiny(tmp_path):
    """y = Relu(x) * 2 over x: float32[N, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "two"], ["y"], name="double"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [x], [y], initializer=[two]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return file_model(path, [{"N": 1}, {"N": 3}])


# -- peers over a sweep --------------------------------------------------------------------------


def test_ort_peer_times_every_point_and_returns_its_outputs(tiny):
    inputs = [tiny.feeds(point) for point in tiny.points]
    result, outputs = measure_peer("ort", load_ort, tiny, inputs, QUICK)
    assert not result.error
    assert [p.binding for p in result.points] == [{"N": 1}, {"N": 3}]
    assert all(p.latency_ms is not None and p.latency_ms >= 0 for p in result.points)
    for feeds, produced in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(produced["y"], np.maximum(feeds["x"], 0) * 2)


def test_outputs_that_differ_from_the_reference_are_flagged(tiny):
    inputs = [tiny.feeds(point) for point in tiny.points]
    _, reference = measure_peer("ort", load_ort, tiny, inputs, QUICK)

    def off_by_one(model, threads):
        return Loaded(lambda feeds: {"y": np.maximum(feeds["x"], 0) * 2 + 1})

    result, _ = measure_peer("wrong", off_by_one, tiny, inputs, QUICK, reference)
    assert result.mismatches() == 2
    assert result.points[0].mismatch.startswith("y: max |difference| 1")


def test_a_disagreement_that_is_the_reference_rounding_is_judged_by_float64(tiny):
    inputs = [tiny.feeds(point) for point in tiny.points]
    exact = [{"y": np.maximum(f["x"], 0).astype(np.float64) * 2} for f in inputs]
    # the "reference" is off by 1e-3 (beyond the tolerance); the peer is exact
    noisy = [{"y": (e["y"] + 1e-3).astype(np.float32)} for e in exact]
    right = lambda model, threads: Loaded(lambda feeds: {"y": np.maximum(feeds["x"], 0) * 2})  # noqa: E731
    result, _ = measure_peer("exact", right, tiny, inputs, QUICK, noisy)
    assert result.mismatches() == 0
    assert result.points[0].mismatch.startswith("closer to float64 than onnxruntime: y:")
    # a peer farther from float64 than the reference still differs
    worse = lambda model, threads: Loaded(lambda feeds: {"y": np.maximum(feeds["x"], 0) * 2 - 1})  # noqa: E731
    result, _ = measure_peer("worse", worse, tiny, inputs, QUICK, noisy)
    assert result.mismatches() == 2


def test_a_peer_that_cannot_load_is_a_result_not_an_exception(tiny):
    def broken(model, threads):
        raise RuntimeError("frontend says no\nUnsupported op Foo")

    result, outputs = measure_peer("broken", broken, tiny, [{}, {}], QUICK)
    assert result.error == "RuntimeError: Unsupported op Foo"
    assert result.summary() is None and outputs == [None, None]


def test_a_point_that_fails_is_recorded_and_the_others_still_run(tiny):
    inputs = [tiny.feeds(point) for point in tiny.points]

    def small_only(model, threads):
        def run(feeds):
            if len(feeds["x"]) > 1:
                raise MemoryError("too big")
            return {"y": feeds["x"]}

        return Loaded(run)

    result, outputs = measure_peer("small", small_only, tiny, inputs, QUICK)
    assert result.points[1].error == "MemoryError: too big" and outputs[1] is None
    assert result.points[0].latency_ms is not None and len(result.latencies()) == 1


# -- statistics and the output check -------------------------------------------------------------


def test_summary_of_known_values():
    assert Summary.of([16.0, 1.0, 4.0]) == Summary(1.0, 4.0, 16.0, pytest.approx(4.0))
    assert Summary.of([]) is None


@given(st.lists(st.floats(1e-3, 1e6), min_size=1, max_size=20))
def test_summary_orders_min_median_geomean_max(values):
    summary = Summary.of(values)
    assert summary.min <= summary.median <= summary.max
    assert summary.min * (1 - 1e-9) <= summary.geomean <= summary.max * (1 + 1e-9)


def test_geomean_of_no_values_is_an_error():
    with pytest.raises(BenchError, match="no values"):
        geomean([])


def test_data_dependent_rows_compare_in_a_canonical_order():
    boxes = np.array([[1.0, 2.0], [0.5, 3.0], [1.0, 1.0]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.9], dtype=np.float32)
    order = [2, 1, 0]
    actual = {"boxes": boxes[order], "scores": scores[order]}
    expected = {"boxes": boxes, "scores": scores}
    assert not compare_outputs(actual, expected).matches
    assert compare_outputs(actual, expected, ["boxes", "scores"]).matches


def test_outputs_with_other_names_or_shapes_do_not_match():
    one = {"y": np.zeros((2, 3))}
    assert "outputs" in compare_outputs({"z": np.zeros((2, 3))}, one).detail
    assert "shape" in compare_outputs({"y": np.zeros((3, 2))}, one).detail


# -- arguments -----------------------------------------------------------------------------------


def test_parse_point_and_peers():
    assert parse_point("N=1,L=32") == {"N": 1, "L": 32}
    assert parse_peers("ort, tvm,ort,sod2") == ("ort", "tvm")
    with pytest.raises(BenchError, match="--point 'N=0'"):
        parse_point("N=0")
    with pytest.raises(BenchError, match="unknown tensorrt"):
        parse_peers("ort,tensorrt")


def test_a_file_with_symbols_needs_points(tiny):
    with pytest.raises(BenchError, match="--point N=8"):
        file_model(tiny.path, [])


def test_resolve_model_knows_zoo_names_files_and_neither(tiny):
    zoo = resolve_model("sam_prompt_encoder", "small", [])
    assert zoo.zoo and len(zoo.points) == 6
    assert resolve_model(str(tiny.path), "small", ["N=2"]).points[0].values() == {"N": 2}
    with pytest.raises(BenchError, match="neither a zoo model"):
        resolve_model("no_such_model", "small", [])


# -- one model, every peer: the JSON record and its rendering ------------------------------------


@pytest.fixture
def record(tiny, stand_in):
    settings = dataclasses.replace(QUICK, ablation=True)
    return json.loads(json.dumps(bench_model(tiny, settings).to_json()))


def test_record_has_every_part_of_the_schema(record, stand_in):
    assert set(record) == {
        "model", "file", "scale", "points", "threads", "repeat", "peers", "ratios_over_sod2",
        "compile", "memory", "memory_ratio_ort_over_sod2", "ablation",
    }  # fmt: skip
    assert list(record["peers"]) == ["sod2", "ort"]
    sod2 = record["peers"]["sod2"]
    assert set(sod2) == {"peer", "load_seconds", "points", "error", "summary", "mismatches"}
    assert set(sod2["summary"]) == {"min", "median", "max", "geomean"}
    assert sod2["mismatches"] == 0 and all(p["matches_ort"] for p in sod2["points"])
    assert record["ratios_over_sod2"]["ort"] > 0
    assert list(record["ablation"]) == [row for row, _ in ABLATION_ROWS]


def test_ablation_rows_compile_with_their_switches(record, stand_in):
    flags = [{k: getattr(o, k) for k in ("fusion", "sep", "dmp", "mvc")} for o in stand_in.made]
    assert flags[0] == {"fusion": True, "sep": True, "dmp": True, "mvc": True}
    assert flags[1:] == [dict(row) for _, row in ABLATION_ROWS[:-1]]


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize(
    "render", [bench.markdown_latency, bench.markdown_memory, bench.markdown_ablation]
)
def test_markdown_tables_have_a_row_per_model_and_even_columns(record, render):
    rows = _table_rows(render([record, {**record, "model": "other"}]))
    assert {row.count("|") for row in rows} == {rows[0].count("|")}
    assert sum(row.startswith("| tiny |") for row in rows) == 1
    assert sum(row.startswith("| other |") for row in rows) == 1


def test_markdown_marks_mismatches_and_lists_failures(record):
    sod2 = record["peers"]["sod2"]
    sod2["mismatches"] = 1
    sod2["points"][0].update(matches_ort=False, mismatch="y: max |difference| 3")
    record["peers"]["tvm"] = {**sod2, "error": "InternalError: no", "summary": None}
    latency = bench.markdown_latency([record])
    assert "✗" in _table_rows(latency)[2] and _table_rows(latency)[2].count(" - ") >= 2
    failures = bench.markdown_failures([record])
    assert (
        "sod2: outputs differ from onnxruntime's at 1 point(s) (y: max |difference| 3)" in failures
    )
    assert "tvm: InternalError: no" in failures


def test_targets_are_judged_from_the_figures(record):
    fast = {
        **record,
        "ratios_over_sod2": {"ort": 2.0, "torch": 4.0},
        "memory_ratio_ort_over_sod2": 2.0,
        "compile": {"sod2": {"warm_seconds": 0.5, "warm_first_run_seconds": 0.2}},
    }
    slow = {
        **fast,
        "model": "slow",
        "ratios_over_sod2": {"ort": 0.125, "torch": 0.5},
        "memory_ratio_ort_over_sod2": 1.0,
        "compile": {"sod2": {"warm_seconds": 2.5, "warm_first_run_seconds": 0.1}},
    }
    assert [reached for _, reached, _ in bench.target_results([fast])] == [True] * 4
    results = bench.target_results([fast, slow])
    assert [reached for _, reached, _ in results] == [False, True, False, False]
    assert "ort/sod2 = 0.50x over 2 models" in results[0][2]
    assert "slow 1.00x" in results[2][2] and "slow 2.6 s" in results[3][2]
    text = bench.markdown_targets([{**record, "ratios_over_sod2": {}, "compile": {}}])
    assert text.count("not measured") >= 3


# -- child processes -----------------------------------------------------------------------------


def test_peak_rss_sees_an_allocation():
    with PeakRss() as peak:
        block = np.ones(8 * 2**20)  # 64 MiB, touched
        del block
    assert peak.method and peak.growth >= 32 * 2**20


def test_the_memory_child_gives_back_the_first_instance_s_workspace(tiny):
    events = []

    def loader(model, threads):
        events.append("load")
        return Loaded(lambda feeds: {"y": feeds["x"] * 2}, release=lambda: events.append("release"))

    result = bench.child_memory(tiny, loader, 1)
    assert events == ["load", "release", "load"]  # released before the measured instance
    assert result["growth_bytes"] >= 0


def test_sod2_kernel_scratch_is_released_and_made_again():
    from sod2.backend import kernels

    kernels._scratch("patches", 1024)
    assert kernels.release_scratch() >= 4096
    assert kernels.release_scratch() == 0  # nothing held any more
    assert kernels._scratch("patches", 16).shape == (16,)
    kernels.release_scratch()


def test_memory_and_compile_children_measure_onnxruntime(tiny):
    memory = bench.peak_memory(tiny, "ort", threads=1, timeout=300)
    assert not memory.error and memory.method
    assert memory.growth_bytes >= 0 and memory.peak_bytes >= memory.baseline_bytes
    times = bench.compile_times(tiny, "ort", threads=1, timeout=300)
    assert not times.error and times.cold_seconds is not None and times.warm_seconds is not None


def test_the_memory_child_compiles_sod2_with_the_flags_given(tiny):
    memory = bench.peak_memory(tiny, "sod2", threads=1, timeout=300, flags={"no_such": 1})
    assert "no_such" in memory.error  # CompileOptions refused it: the flags reached the child


def test_a_failing_child_reports_its_error(tiny):
    result = bench.run_child("memory", tiny, "no_such_peer", threads=1, timeout=300)
    assert result == {
        "error": "BenchError: unknown peer 'no_such_peer'; known: sod2, ort, torch, tvm"
    }


# -- the command ---------------------------------------------------------------------------------


def test_cli_bench_on_a_zoo_model_with_onnxruntime(stand_in, capsys):
    argv = ["bench", "sam_prompt_encoder", "--repeat", "1", "--peers", "ort", "--threads", "1"]
    assert main([*argv, "--no-memory", "--no-compile"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sam_prompt_encoder (sam_prompt_encoder.onnx, 6 points")
    assert lines[2].split()[:1] == ["sod2"] and lines[3].split()[:1] == ["ort"]
    assert "match" in lines[2]


def test_cli_bench_json_on_a_file_with_points(tiny, stand_in, capsys):
    argv = ["bench", str(tiny.path), "--point", "N=2", "--point", "N=5", "--json"]
    assert main([*argv, "--repeat", "1", "--peers", "ort", "--no-memory", "--no-compile"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [p["binding"] for p in record["points"]] == [{"N": 2}, {"N": 5}]
    assert set(record["peers"]) == {"sod2", "ort"}


def test_cli_bench_unknown_model_is_an_error_message(capsys):
    assert main(["bench", "nothing_here"]) == 1
    assert "neither a zoo model" in capsys.readouterr().err
