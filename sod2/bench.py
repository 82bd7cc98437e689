"""Measuring a dynamic model on sod2 and on its peers: latency over a sweep, compile time, memory.

A *bench model* is an ONNX file and a sweep of input bindings (a zoo model brings its own sweep and
input generator; a plain file gets random inputs at the `--point` bindings given). A *peer* is a
runtime that loads the model once and then runs any binding: sod2's compiled runtime, onnxruntime,
PyTorch eager (zoo models only: the zoo authors every model in torch) and TVM Relax. Each peer's
loader returns a `Loaded` whose `run(feeds)` gives the outputs by name.

What is measured, and how:
- latency of one point: one warm-up run, then the median of `repeat` timed runs (a single timed
  run when the warm-up took longer than `slow_seconds`); a model's latency is the min / median /
  max over its sweep points, and a peer is compared with sod2 by the geometric mean, over the
  points both ran, of its time over sod2's;
- correctness: every peer's outputs are compared with onnxruntime's at every point
  (rtol 1e-4, atol 1e-5; rows of data-dependent outputs such as detections in a canonical order);
- compile time, cold and warm: the peer is loaded (and run once, the *first run*, where lazily
  compiled kernels are built) in a child process whose `SOD2_CACHE_DIR` and `NUMBA_CACHE_DIR` name
  a fresh temporary folder, then in a second child with the same folders;
- peak intermediate memory: in a child process, the inputs of every point are made, the peer
  is loaded and runs the whole sweep once (so that kernels compiled or loaded on first use, by a
  runtime that does so, are in place: they are code, not inference memory), and is dropped; the
  C heap is trimmed, and large allocations are always mapped in the child
  (MALLOC_MMAP_THRESHOLD_=128 KiB), so the dropped instance's memory has gone back to the
  system. A second instance is loaded, the peak resident set size is reset (writing "5" to
  /proc/self/clear_refs resets VmHWM to the current VmRSS) and every sweep point runs once; the
  growth is VmHWM minus the VmRSS right after the reset: arenas, workspace (sod2's kernel
  scratch buffers, which outlive a runtime, are given back with the first instance, so they
  count), intermediates and the outputs of the run in flight. Where clear_refs cannot be written, a
  thread samples VmRSS every millisecond instead. Inputs are made before the reset, so only what
  inference allocates counts (intermediates, arenas, the outputs of the run in flight).

Invariants: a peer that is not installed, cannot import the model or fails at a point gives a
result with its `error` set, never an exception out of `bench_model`; no number is ever compared
with a target here (timings are reported, not asserted); child processes report one JSON line
and are killed after `timeout` seconds.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sod2.backend  # noqa: F401  (sets the thread pools' variables before a peer starts OpenMP)
from sod2.errors import Sod2Error

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Runner = Callable[[Feeds], Outputs]

RTOL, ATOL = 1e-4, 1e-5
PEER_NAMES = ("sod2", "ort", "torch", "tvm")
ABLATION_ROWS: tuple[tuple[str, Mapping[str, bool]], ...] = (
    ("none", {"fusion": False, "sep": False, "dmp": False, "mvc": False}),
    ("+fusion", {"fusion": True, "sep": False, "dmp": False, "mvc": False}),
    ("+SEP", {"fusion": True, "sep": True, "dmp": False, "mvc": False}),
    ("+DMP", {"fusion": True, "sep": True, "dmp": True, "mvc": False}),
    ("+MVC", {"fusion": True, "sep": True, "dmp": True, "mvc": True}),
)
"""The cumulative ablation of sod2's optimizations; the last row is sod2 with everything on."""
RESULT_MARKER = "sod2-bench-result: "
MMAP_THRESHOLD = 128 * 1024
"""Allocations of at least this many bytes are mapped in a memory child (glibc's default, fixed)."""


class BenchError(Sod2Error):
    """A benchmark request that cannot be carried out (unknown model, bad --point, ...)."""


class PeerUnavailable(BenchError):
    """A peer that cannot measure this model at all (not installed, or needs a zoo model)."""


# -- the model and its sweep -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchPoint:
    """One binding of the model's symbols and the seed its inputs are drawn with."""

    binding: tuple[tuple[str, int], ...]
    seed: int = 0

    def values(self) -> dict[str, int]:
        """The binding as a dict."""
        return dict(self.binding)

    def label(self) -> str:
        """`L=32 N=1`, or `-` for a model without symbols."""
        return " ".join(f"{name}={value}" for name, value in self.binding) or "-"


@dataclass(frozen=True)
class BenchModel:
    """An ONNX file and the sweep it is measured over; `zoo` when it is the zoo model `name`."""

    name: str
    path: Path
    points: tuple[BenchPoint, ...]
    zoo: bool = False
    scale: str = "small"

    def feeds(self, point: BenchPoint) -> dict[str, np.ndarray]:
        """The inputs at `point`: the zoo's generator, else random arrays of the declared types."""
        if self.zoo:
            from sod2.zoo import get

            return get(self.name).make_inputs(point.values(), point.seed, self.scale)
        from sod2.backend.inputs import random_inputs

        return random_inputs(_ir_model(self.path), point.values(), seed=point.seed)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (children rebuild the model from it)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "zoo": self.zoo,
            "scale": self.scale,
            "points": [{"binding": p.values(), "seed": p.seed} for p in self.points],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> BenchModel:
        """The inverse of `to_json`."""
        points = tuple(
            BenchPoint(tuple(sorted(p["binding"].items())), p["seed"]) for p in data["points"]
        )
        return BenchModel(data["name"], Path(data["path"]), points, data["zoo"], data["scale"])


@functools.cache
def _ir_model(path: Path) -> Any:
    from sod2.ir import load

    return load(path)


def zoo_model(name: str, scale: str = "small") -> BenchModel:
    """The zoo model `name` at `scale` over its own sweep (its file must exist)."""
    from sod2.zoo import get

    entry = get(name)
    points = tuple(BenchPoint(point.binding, point.seed) for point in entry.sweep)
    return BenchModel(name, entry.existing_path(scale), points, zoo=True, scale=scale)


def file_model(path: Path, bindings: Sequence[Mapping[str, int]]) -> BenchModel:
    """An ONNX file measured at `bindings` (seeds 0, 1, ...); no binding: only for a model
    without symbols."""
    if not path.is_file():
        raise BenchError(f"{path}: no such ONNX file")
    if not bindings:
        from sod2.backend.inputs import unbound_symbols

        missing = unbound_symbols(_ir_model(path), {})
        if missing:
            raise BenchError(
                f"{path.name}: its inputs use symbols {', '.join(sorted(missing))}; give the "
                f"sweep with --point, e.g. --point {','.join(f'{s}=8' for s in sorted(missing))}"
            )
        bindings = [{}]
    points = tuple(BenchPoint(tuple(sorted(b.items())), seed) for seed, b in enumerate(bindings))
    return BenchModel(path.stem, path, points)


def parse_point(spec: str) -> dict[str, int]:
    """`N=1,L=32` -> {"N": 1, "L": 32}."""
    from sod2.backend.inputs import parse_bindings

    try:
        return parse_bindings([item for item in spec.split(",") if item.strip()])
    except Sod2Error as error:
        raise BenchError(
            f"--point {spec!r}: expected SYM=INT[,SYM=INT...], e.g. N=1,L=32"
        ) from error


def resolve_model(model: str, scale: str, points: Sequence[str]) -> BenchModel:
    """A zoo name (its sweep, unless `points` are given) or an ONNX path with `points`."""
    from sod2.zoo import REGISTRY

    bindings = [parse_point(spec) for spec in points]
    if model in REGISTRY and not Path(model).is_file():
        bench = zoo_model(model, scale)
        if not bindings:
            return bench
        entry = REGISTRY[model]
        for binding in bindings:
            entry.check_binding(binding)
        chosen = tuple(BenchPoint(tuple(sorted(b.items())), i) for i, b in enumerate(bindings))
        return BenchModel(bench.name, bench.path, chosen, zoo=True, scale=scale)
    if not Path(model).is_file():
        raise BenchError(
            f"{model!r} is neither a zoo model ({', '.join(REGISTRY)}) nor an ONNX file"
        )
    return file_model(Path(model), bindings)


# -- peers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A peer ready to run: `run(feeds)` gives outputs by name; sod2 also tells its arena size."""

    run: Runner
    arena_bytes: Callable[[Feeds], int] | None = None
    release: Callable[[], object] | None = None
    """Gives back what the peer keeps beyond an instance once the instance is dropped (sod2's
    per-thread kernel scratch buffers), so that the next instance's memory counts them."""


Loader = Callable[[BenchModel, int], Loaded]


def compile_sod2(path: Path, options: Any) -> Any:
    """`sod2.compile` of the file (the one place the benchmark reaches the runtime)."""
    from sod2.backend.runtime import compile_model

    return compile_model(path, options)


def sod2_loader(flags: Mapping[str, Any] | None = None) -> Loader:
    """A loader of sod2 with the given `CompileOptions` settings (default: everything on)."""

    def load(model: BenchModel, threads: int) -> Loaded:
        from sod2.backend.runtime import CompileOptions

        options = CompileOptions(**dict(flags or {}), threads=threads)
        from sod2.backend.kernels import release_scratch

        compiled = compile_sod2(model.path, options)
        return Loaded(compiled.run, compiled.arena_bytes, release_scratch)

    return load


def load_ort(model: BenchModel, threads: int) -> Loaded:
    """onnxruntime, CPU provider, all graph optimizations, `threads` intra-op, one inter-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def run(feeds: Feeds) -> Outputs:
        return dict(zip(names, session.run(None, dict(feeds)), strict=True))

    return Loaded(run)


def load_torch(model: BenchModel, threads: int) -> Loaded:
    """The zoo's own torch module (seeded weights, as exported), eager, under inference_mode."""
    if not model.zoo:
        raise PeerUnavailable("torch runs zoo models only (an ONNX file has no torch source)")
    try:
        import torch
    except ImportError as error:
        raise PeerUnavailable("torch is not installed") from error
    from sod2.zoo import get
    from sod2.zoo.export import build_network

    torch.set_num_threads(threads)
    entry = get(model.name)
    network = build_network(entry, model.scale)
    names = [spec.name for spec in entry.outputs]

    def run(feeds: Feeds) -> Outputs:
        with torch.inference_mode():
            result = network(*(torch.from_numpy(np.asarray(feeds[s.name])) for s in entry.inputs))
        values = result if isinstance(result, tuple | list) else (result,)
        return {name: value.numpy() for name, value in zip(names, values, strict=True)}

    return Loaded(run)


def load_tvm(model: BenchModel, threads: int) -> Loaded:
    """TVM Relax: the ONNX frontend with symbolic input dims kept, built for llvm, run on its VM.

    TVM reads TVM_NUM_THREADS when it is first imported, so `threads` holds only if this is the
    process's first use of TVM."""
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    try:
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx
    except ImportError as error:
        raise PeerUnavailable("apache-tvm is not installed") from error
    import onnx

    proto = onnx.load(str(model.path))
    constants = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value.name for value in proto.graph.input if value.name not in constants]
    names = [value.name for value in proto.graph.output]
    machine = relax.VirtualMachine(tvm.compile(from_onnx(proto), target="llvm"), tvm.cpu())

    def run(feeds: Feeds) -> Outputs:
        result = machine["main"](*(tvm.runtime.tensor(np.asarray(feeds[n])) for n in inputs))
        values = [result] if hasattr(result, "numpy") else list(result)
        return {name: value.numpy() for name, value in zip(names, values, strict=True)}

    return Loaded(run)


LOADERS: Mapping[str, Loader] = {
    "sod2": sod2_loader(),
    "ort": load_ort,
    "torch": load_torch,
    "tvm": load_tvm,
}


def loader_for(peer: str, flags: Mapping[str, Any] | None = None) -> Loader:
    """The loader of `peer` (sod2 with `flags` when given)."""
    if peer == "sod2":
        return sod2_loader(flags)
    if peer not in LOADERS:
        raise BenchError(f"unknown peer {peer!r}; known: {', '.join(PEER_NAMES)}")
    return LOADERS[peer]


def parse_peers(spec: str) -> tuple[str, ...]:
    """`ort,torch,tvm` -> ("ort", "torch", "tvm"); sod2 is always measured, so it may be left out."""
    peers = tuple(dict.fromkeys(p.strip() for p in spec.split(",") if p.strip()))
    unknown = [p for p in peers if p not in PEER_NAMES]
    if unknown:
        raise BenchError(f"--peers: unknown {', '.join(unknown)}; choose from ort, torch, tvm")
    return tuple(p for p in peers if p != "sod2")


def describe_error(error: BaseException) -> str:
    """One short line for an exception from any runtime: its type and last message line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
    return text if len(text) <= 160 else text[:157] + "..."


# -- statistics and the output check -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Min, median, max and geometric mean of some positive numbers."""

    min: float
    median: float
    max: float
    geomean: float

    @staticmethod
    def of(values: Sequence[float]) -> Summary | None:
        """The summary of `values`; None when there are none."""
        if not values:
            return None
        return Summary(min(values), statistics.median(values), max(values), geomean(values))


def geomean(values: Sequence[float]) -> float:
    """exp(mean(log v)); values are clamped to 1e-12 so a zero does not give -inf."""
    if not values:
        raise BenchError("geometric mean of no values")
    return math.exp(sum(math.log(max(v, 1e-12)) for v in values) / len(values))


def time_point(
    run: Runner, feeds: Feeds, repeat: int, slow_seconds: float
) -> tuple[float, Outputs]:
    """(median milliseconds of `repeat` runs after one warm-up, the warm-up's outputs)."""
    began = time.perf_counter()
    outputs = run(feeds)
    warmup = time.perf_counter() - began
    timings = []
    for _ in range(1 if warmup > slow_seconds else max(1, repeat)):
        began = time.perf_counter()
        run(feeds)
        timings.append(time.perf_counter() - began)
    return statistics.median(timings) * 1e3, outputs


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """How a peer's outputs compare with the reference's at one point."""

    matches: bool
    max_abs_diff: float | None
    detail: str = ""


def compare_outputs(
    actual: Outputs, expected: Outputs, data_dependent: Sequence[str] = ()
) -> OutputCheck:
    """`actual` against `expected` with rtol 1e-4, atol 1e-5 (NaNs equal), by output name; the
    outputs named in `data_dependent` are compared after putting their rows in one joint order."""
    if list(actual) != list(expected):
        return OutputCheck(False, None, f"outputs {list(actual)} != {list(expected)}")
    actual, expected = _canonical(actual, data_dependent), _canonical(expected, data_dependent)
    worst = 0.0
    for name, want in expected.items():
        got = np.asarray(actual[name])
        if got.shape != want.shape:
            return OutputCheck(False, None, f"{name}: shape {got.shape} != {want.shape}")
        difference = _max_abs_diff(got, want)
        worst = max(worst, difference)
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
            return OutputCheck(False, worst, f"{name}: max |difference| {difference:.3g}")
    return OutputCheck(True, worst)


def judge_by_float64(
    model: BenchModel,
    feeds: Feeds,
    actual: Outputs,
    expected: Outputs,
    data_dependent: Sequence[str],
    check: OutputCheck,
) -> OutputCheck:
    """`check` (a value mismatch with onnxruntime) settled by a float64 run of the model: when
    every float output that differs is no farther from the float64 answer than onnxruntime's,
    the outputs count as matching and `detail` says by how much each is off (see
    `sod2.testing.precision`). Data-dependent outputs are never judged this way."""
    import onnx

    from sod2.testing.precision import float64_outputs, max_error

    notes = []
    exact: Outputs | None = None
    for name, want in expected.items():
        got = np.asarray(actual[name])
        if np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
            continue
        if name in data_dependent or got.dtype.kind != "f":
            return check
        if exact is None:
            try:
                exact = float64_outputs(onnx.load(str(model.path)), feeds)
            except Exception:  # no float64 run: the mismatch stands
                return check
        ours, theirs = max_error(got, exact[name]), max_error(want, exact[name])
        if ours > theirs:
            return check
        notes.append(f"{name}: error vs float64 {ours:.2g}, onnxruntime's {theirs:.2g}")
    return OutputCheck(
        True, check.max_abs_diff, "closer to float64 than onnxruntime: " + "; ".join(notes)
    )


def _max_abs_diff(got: np.ndarray, want: np.ndarray) -> float:
    """The largest finite |got - want| (0 for empty arrays or where both are NaN or inf)."""
    difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
    finite = difference[np.isfinite(difference)]
    return float(finite.max()) if finite.size else 0.0


def _canonical(outputs: Outputs, data_dependent: Sequence[str]) -> Outputs:
    """Rows of the `data_dependent` outputs (same length) sorted jointly by their rounded values,
    so runtimes that order tied detections differently compare equal."""
    names = [n for n in data_dependent if n in outputs and np.ndim(outputs[n]) >= 1]
    if not names or len({len(outputs[n]) for n in names}) != 1:
        return outputs
    columns = [
        np.round(outputs[n].reshape(len(outputs[n]), -1).astype(np.float64), 3) for n in names
    ]
    order = np.lexsort(np.concatenate(columns, axis=1).T[::-1])
    return {n: (v[order] if n in names else v) for n, v in outputs.items()}


def data_dependent_outputs(model: BenchModel) -> list[str]:
    """Outputs of a zoo model whose first dim is a data-dependent extent (e.g. detections D)."""
    if not model.zoo:
        return []
    from sod2.zoo import get

    entry = get(model.name)
    constants = entry.constants_at(model.scale)
    return [
        spec.name
        for spec in entry.outputs
        if spec.dims
        and isinstance(spec.dims[0], str)
        and spec.dims[0].isidentifier()
        and spec.dims[0] not in entry.symbol_names
        and spec.dims[0] not in constants
    ]


# -- one peer over the sweep -------------------------------------------------------------------


@dataclass
class PointResult:
    """One sweep point on one peer."""

    binding: dict[str, int]
    seed: int
    latency_ms: float | None = None
    matches_ort: bool | None = None
    max_abs_diff: float | None = None
    mismatch: str = ""
    """Which output differs from onnxruntime's, and how (when `matches_ort` is False)."""
    error: str = ""
    """Why the point did not run (then `latency_ms` is None)."""


@dataclass
class PeerResult:
    """One peer over the sweep; `error` when it could not load the model at all."""

    peer: str
    load_seconds: float | None = None
    points: list[PointResult] = field(default_factory=list)
    error: str = ""

    def latencies(self) -> dict[int, float]:
        """Milliseconds by point index, for the points that ran."""
        return {i: p.latency_ms for i, p in enumerate(self.points) if p.latency_ms is not None}

    def summary(self) -> Summary | None:
        """Min / median / max / geomean of the point latencies (None: no point ran)."""
        return Summary.of(list(self.latencies().values()))

    def mismatches(self) -> int:
        """How many points gave outputs that differ from onnxruntime's."""
        return sum(p.matches_ort is False for p in self.points)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the summary."""
        summary = self.summary()
        return {
            **asdict(self),
            "summary": None if summary is None else asdict(summary),
            "mismatches": self.mismatches(),
        }


def measure_peer(
    name: str,
    loader: Loader,
    model: BenchModel,
    inputs: Sequence[Feeds],
    settings: BenchSettings,
    reference: Sequence[Outputs | None] | None = None,
) -> tuple[PeerResult, list[Outputs | None]]:
    """Load once, time every point, check outputs against `reference` (onnxruntime's, per point).
    Returns the result and the outputs of every point (None where it failed)."""
    result = PeerResult(name)
    began = time.perf_counter()
    try:
        loaded = loader(model, settings.threads)
    except Exception as error:  # a peer that cannot load the model is a result, not a crash
        result.error = describe_error(error)
        return result, [None] * len(model.points)
    result.load_seconds = time.perf_counter() - began
    outputs: list[Outputs | None] = []
    ordered = data_dependent_outputs(model)
    for index, (point, feeds) in enumerate(zip(model.points, inputs, strict=True)):
        entry = PointResult(point.values(), point.seed)
        result.points.append(entry)
        try:
            entry.latency_ms, produced = time_point(
                loaded.run, feeds, settings.repeat, settings.slow_seconds
            )
        except Exception as error:  # as above: a failing point is recorded
            entry.error = describe_error(error)
            outputs.append(None)
            continue
        expected = reference[index] if reference is not None else None
        if expected is not None:
            check = compare_outputs(produced, expected, ordered)
            if not check.matches and check.max_abs_diff is not None:
                check = judge_by_float64(model, feeds, produced, expected, ordered, check)
            entry.matches_ort, entry.max_abs_diff = check.matches, check.max_abs_diff
            entry.mismatch = check.detail
        outputs.append(produced)
    return result, outputs


# -- child processes: compile time and memory --------------------------------------------------


def _status_kib(field_name: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, flags=re.M)
    if match is None:
        raise BenchError(f"/proc/self/status has no {field_name} (needs Linux)")
    return int(match.group(1))


class PeakRss:
    """The peak growth of this process's resident set over a `with` block, in bytes.

    Resets VmHWM through /proc/self/clear_refs where allowed; else samples VmRSS every ms."""

    def __init__(self) -> None:
        self.baseline = self.peak = 0
        self.method = ""
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "VmRSS sampled every 1 ms"
            self._sampler = threading.Thread(target=self._sample, daemon=True)
        self.baseline = self.peak = _status_kib("VmRSS") * 1024
        if self._sampler is not None:
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _status_kib("VmRSS") * 1024)

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak = max(self.peak, _status_kib("VmRSS") * 1024)
        else:
            self.peak = _status_kib("VmHWM") * 1024

    @property
    def growth(self) -> int:
        """Peak minus baseline bytes."""
        return max(0, self.peak - self.baseline)


@dataclass
class CompileTimes:
    """Loading (compiling) a peer in a fresh process, with empty (cold) and filled (warm) caches."""

    cold_seconds: float | None = None
    warm_seconds: float | None = None
    cold_first_run_seconds: float | None = None
    warm_first_run_seconds: float | None = None
    error: str = ""


@dataclass
class PeakMemory:
    """Peak RSS growth of a peer over the sweep, measured in a child (module docstring)."""

    baseline_bytes: int | None = None
    peak_bytes: int | None = None
    growth_bytes: int | None = None
    arena_bytes: int | None = None
    method: str = ""
    error: str = ""


def child_load(model: BenchModel, loader: Loader, threads: int) -> dict[str, Any]:
    """In a child: seconds to load the peer, and to run the first sweep point once."""
    feeds = model.feeds(model.points[0])
    began = time.perf_counter()
    loaded = loader(model, threads)
    loaded_at = time.perf_counter()
    loaded.run(feeds)
    return {"load_seconds": loaded_at - began, "first_run_seconds": time.perf_counter() - loaded_at}


def child_memory(model: BenchModel, loader: Loader, threads: int) -> dict[str, Any]:
    """In a child: peak RSS growth over one run of every point, by a second instance of the
    peer loaded after a first one ran the whole sweep and was dropped (module docstring)."""
    inputs = [model.feeds(point) for point in model.points]
    first = loader(model, threads)
    for feeds in inputs:
        first.run(feeds)
    release = first.release
    del first
    if release is not None:
        release()
    gc.collect()
    _trim_heap()
    loaded = loader(model, threads)
    with PeakRss() as peak:
        for feeds in inputs:
            loaded.run(feeds)  # outputs dropped at once: only the run in flight counts
    arena = None
    if loaded.arena_bytes is not None:
        arena = max(loaded.arena_bytes(feeds) for feeds in inputs)
    return {
        "baseline_bytes": peak.baseline,
        "peak_bytes": peak.peak,
        "growth_bytes": peak.growth,
        "arena_bytes": arena,
        "method": peak.method,
    }


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim), where there is one."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


CHILD_TASKS: Mapping[str, Callable[[BenchModel, Loader, int], dict[str, Any]]] = {
    "load": child_load,
    "memory": child_memory,
}


def run_child(
    task: str,
    model: BenchModel,
    peer: str,
    threads: int,
    *,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Run `task` for `peer` in a fresh Python process (`python -m sod2.bench`); its JSON result,
    or {"error": ...} when it failed or ran past `timeout` seconds."""
    job = {
        "task": task,
        "peer": peer,
        "flags": dict(flags) if flags else None,
        "threads": threads,
        "model": model.to_json(),
    }
    environment = {**os.environ, **(env or {}), "TVM_NUM_THREADS": str(threads)}
    try:
        process = subprocess.run(
            [sys.executable, "-m", "sod2.bench"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{task} of {peer} ran past {timeout:.0f} s"}
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    tail = [line for line in process.stderr.splitlines() if line.strip()][-1:]
    return {"error": f"child exited with status {process.returncode}: {' '.join(tail)}"[:200]}


@contextmanager
def fresh_caches() -> Iterator[dict[str, str]]:
    """Environment variables pointing sod2's and Numba's kernel caches at a new empty folder."""
    with tempfile.TemporaryDirectory(prefix="sod2-bench-cache-") as scratch:
        yield {
            "SOD2_CACHE_DIR": str(Path(scratch) / "sod2"),
            "NUMBA_CACHE_DIR": str(Path(scratch) / "numba"),
        }


def compile_times(
    model: BenchModel, peer: str, threads: int, timeout: float = 1800.0
) -> CompileTimes:
    """Cold then warm load of `peer` in two children sharing one fresh cache folder."""
    with fresh_caches() as env:
        cold = run_child("load", model, peer, threads, env=env, timeout=timeout)
        warm = run_child("load", model, peer, threads, env=env, timeout=timeout)
    return CompileTimes(
        cold.get("load_seconds"),
        warm.get("load_seconds"),
        cold.get("first_run_seconds"),
        warm.get("first_run_seconds"),
        cold.get("error") or warm.get("error") or "",
    )


def peak_memory(
    model: BenchModel,
    peer: str,
    threads: int,
    timeout: float = 1800.0,
    flags: Mapping[str, Any] | None = None,
) -> PeakMemory:
    """Peak intermediate memory of `peer` (sod2: compiled with `flags`, `CompileOptions`
    settings) over the sweep, in a child process (module docstring). The child's large
    allocations are always mapped (MALLOC_MMAP_THRESHOLD_), so memory freed before the
    measurement goes back to the system instead of serving it unseen."""
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    result = run_child("memory", model, peer, threads, flags=flags, env=env, timeout=timeout)
    return PeakMemory(**result)


def child_main() -> int:
    """The child entry point: read one job (JSON) from stdin, print one result line."""
    job = json.loads(sys.stdin.read())
    try:
        model = BenchModel.from_json(job["model"])
        loader = loader_for(job["peer"], job.get("flags"))
        result = CHILD_TASKS[job["task"]](model, loader, int(job["threads"]))
    except Exception as error:  # reported to the parent as data
        result = {"error": describe_error(error)}
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


# -- one model, every peer ---------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    """How to measure: threads, timed runs per point, the slow-point cut-off, what else to do."""

    threads: int = 2
    repeat: int = 3
    slow_seconds: float = 5.0
    peers: tuple[str, ...] = ("ort", "torch", "tvm")
    memory: bool = True
    compile: bool = True
    ablation: bool = False
    timeout: float = 1800.0


@dataclass
class ModelBench:
    """Everything measured on one model."""

    model: BenchModel
    settings: BenchSettings
    peers: dict[str, PeerResult] = field(default_factory=dict)
    compile: dict[str, CompileTimes] = field(default_factory=dict)
    memory: dict[str, PeakMemory] = field(default_factory=dict)
    ablation: dict[str, PeerResult] = field(default_factory=dict)

    def ratio(self, peer: str) -> float | None:
        """Geometric mean over the points both ran of peer's latency over sod2's."""
        mine, theirs = self.peers["sod2"].latencies(), self.peers[peer].latencies()
        common = sorted(set(mine) & set(theirs))
        return geomean([theirs[i] / mine[i] for i in common]) if common else None

    def to_json(self) -> dict[str, Any]:
        """The model's record in `benchmarks/results/latency.<scale>.json`."""
        ratios = {p: self.ratio(p) for p in self.peers if p != "sod2"}
        memory_ratio = None
        sod2_memory, ort_memory = self.memory.get("sod2"), self.memory.get("ort")
        if sod2_memory and ort_memory and sod2_memory.growth_bytes and ort_memory.growth_bytes:
            memory_ratio = ort_memory.growth_bytes / sod2_memory.growth_bytes
        return {
            "model": self.model.name,
            "file": self.model.path.name,
            "scale": self.model.scale if self.model.zoo else None,
            "points": self.model.to_json()["points"],
            "threads": self.settings.threads,
            "repeat": self.settings.repeat,
            "peers": {name: result.to_json() for name, result in self.peers.items()},
            "ratios_over_sod2": ratios,
            "compile": {name: asdict(times) for name, times in self.compile.items()},
            "memory": {name: asdict(memory) for name, memory in self.memory.items()},
            "memory_ratio_ort_over_sod2": memory_ratio,
            "ablation": {row: result.to_json() for row, result in self.ablation.items()},
        }


def bench_model(
    model: BenchModel, settings: BenchSettings, log: Callable[[str], None] = lambda _: None
) -> ModelBench:
    """Measure `model` on sod2 and the settings' peers (onnxruntime always: it is the reference
    of the output check), then compile times, memory and the ablation as the settings ask.
    Peers that could not load the model get no compile or memory entry."""
    bench = ModelBench(model, settings)
    inputs = [model.feeds(point) for point in model.points]
    reference_result, reference = measure_peer("ort", load_ort, model, inputs, settings)
    for peer in ("sod2", "ort", *(p for p in settings.peers if p != "ort")):
        if peer == "ort":
            bench.peers[peer] = reference_result
        else:
            bench.peers[peer], _ = measure_peer(
                peer, loader_for(peer), model, inputs, settings, reference
            )
        log(f"{model.name} {peer}: {_log_line(bench.peers[peer])}")
    loaded = [peer for peer, result in bench.peers.items() if not result.error]
    if settings.compile:
        for peer in (p for p in ("sod2", "ort", "tvm") if p in loaded):
            times = bench.compile[peer] = compile_times(
                model, peer, settings.threads, settings.timeout
            )
            log(
                f"{model.name} {peer} compile: cold {_seconds_text(times.cold_seconds)}, "
                f"warm {_seconds_text(times.warm_seconds)} {times.error}"
            )
    if settings.memory:
        for peer in (p for p in ("sod2", "ort") if p in loaded):
            memory = bench.memory[peer] = peak_memory(
                model, peer, settings.threads, settings.timeout
            )
            log(f"{model.name} {peer} memory: {fmt_mib(memory.growth_bytes)} MiB {memory.error}")
    if settings.ablation:
        _measure_ablation(bench, inputs, reference, log)
    return bench


def _measure_ablation(
    bench: ModelBench,
    inputs: Sequence[Feeds],
    reference: Sequence[Outputs | None],
    log: Callable[[str], None],
) -> None:
    """Every ablation row but the last, which is sod2 as already measured."""
    for row, flags in ABLATION_ROWS[:-1]:
        bench.ablation[row], _ = measure_peer(
            "sod2", sod2_loader(flags), bench.model, inputs, bench.settings, reference
        )
        log(f"{bench.model.name} ablation {row}: {_log_line(bench.ablation[row])}")
    bench.ablation[ABLATION_ROWS[-1][0]] = bench.peers["sod2"]


def _seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _log_line(result: PeerResult) -> str:
    summary = result.summary()
    if summary is None:
        return f"- ({result.error or _first_error(result)})"
    return f"{summary.min:.2f} / {summary.median:.2f} / {summary.max:.2f} ms"


def _first_error(result: PeerResult) -> str:
    return next((p.error for p in result.points if p.error), "no point ran")


# -- rendering ---------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    """Milliseconds to about three significant digits; '-' for None."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio such as 1.52x; '-' for None."""
    return "-" if value is None else f"{value:.2f}x"


def fmt_mib(value: int | None) -> str:
    """Bytes as MiB with two decimals; '-' for None."""
    return "-" if value is None else f"{value / 2**20:.2f}"


def fmt_seconds(value: float | None) -> str:
    """Seconds with two decimals; '-' for None."""
    return "-" if value is None else f"{value:.2f}"


def _marks(result: Mapping[str, Any]) -> str:
    """' ✗' when some point's outputs differ from onnxruntime's, ' *' when some point failed."""
    marks = " ✗" if result["mismatches"] else ""
    return marks + (" *" if any(p["latency_ms"] is None for p in result["points"]) else "")


def latency_cell(result: Mapping[str, Any] | None) -> str:
    """`min–max` ms of a peer's record with its marks; '-' when no point ran or not measured."""
    if result is None or result["summary"] is None:
        return "-"
    summary = result["summary"]
    return f"{fmt_ms(summary['min'])}–{fmt_ms(summary['max'])}{_marks(result)}"


def geomean_cell(result: Mapping[str, Any] | None) -> str:
    """The geometric mean latency (ms) of a peer's record with its marks, or '-'."""
    if result is None or result["summary"] is None:
        return "-"
    return fmt_ms(result["summary"]["geomean"]) + _marks(result)


def failures(record: Mapping[str, Any]) -> list[str]:
    """`what: why` for everything in a record that failed or differs from onnxruntime."""
    results = [
        *record["peers"].items(),
        *((f"sod2 {row}", r) for row, r in record.get("ablation", {}).items() if row != "+MVC"),
    ]
    reasons = []
    for label, result in results:
        failed = [p for p in result["points"] if p["latency_ms"] is None]
        differ = [p for p in result["points"] if p["matches_ort"] is False]
        closer = [p for p in result["points"] if p["matches_ort"] and p["mismatch"]]
        if result["error"]:
            reasons.append(f"{label}: {result['error']}")
        elif failed:
            reasons.append(
                f"{label}: {len(failed)} of {len(result['points'])} point(s) failed ({failed[0]['error']})"
            )
        if differ:
            reasons.append(
                f"{label}: outputs differ from onnxruntime's at {len(differ)} point(s) ({differ[0]['mismatch']})"
            )
        if closer:
            reasons.append(
                f"{label}: beyond rtol 1e-4 / atol 1e-5 of onnxruntime at {len(closer)} point(s), "
                f"but {closer[-1]['mismatch']} (counted as matching)"
            )
    for kind in ("compile", "memory"):
        reasons += [
            f"{peer} {kind}: {v['error']}"
            for peer, v in record.get(kind, {}).items()
            if v.get("error")
        ]
    return reasons


def format_text(record: Mapping[str, Any]) -> str:
    """The `sod2 bench` report of one model: a line per runtime, then memory and failures."""
    header = (
        f"{record['model']} ({record['file']}, {len(record['points'])} points, "
        f"{record['threads']} threads, median of {record['repeat']} runs per point)"
    )
    rows = [
        (
            "runtime",
            "min ms",
            "median ms",
            "max ms",
            "time/sod2",
            "outputs",
            "load s",
            "compile cold / warm s",
        )
    ]
    for peer, result in record["peers"].items():
        summary = result["summary"] or {}
        times = record["compile"].get(peer)
        rows.append(
            (
                peer,
                fmt_ms(summary.get("min")),
                fmt_ms(summary.get("median")),
                fmt_ms(summary.get("max")),
                _time_over_sod2(record, peer),
                "reference" if peer == "ort" else _check_text(result),
                fmt_seconds(result["load_seconds"]),
                "-"
                if times is None
                else f"{fmt_seconds(times['cold_seconds'])} / {fmt_seconds(times['warm_seconds'])}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if record["memory"]:
        parts = [f"{peer} {fmt_mib(m['growth_bytes'])} MiB" for peer, m in record["memory"].items()]
        ratio = record["memory_ratio_ort_over_sod2"]
        lines.append(
            "peak intermediate memory (RSS growth over the sweep): "
            + ", ".join(parts)
            + ("" if ratio is None else f"; ort/sod2 {ratio:.2f}x")
        )
    lines += [f"  {reason}" for reason in failures(record)]
    return "\n".join(lines)


def _time_over_sod2(record: Mapping[str, Any], peer: str) -> str:
    if peer == "sod2":
        return "1.00x" if record["peers"]["sod2"]["summary"] else "-"
    return fmt_ratio(record["ratios_over_sod2"].get(peer))


def _check_text(result: Mapping[str, Any]) -> str:
    checked = [p for p in result["points"] if p["matches_ort"] is not None]
    if not checked:
        return "-"
    differ = sum(p["matches_ort"] is False for p in checked)
    return "match" if not differ else f"{differ}/{len(checked)} differ"


PEER_TITLES = {"sod2": "sod2", "ort": "onnxruntime", "torch": "PyTorch eager", "tvm": "TVM Relax"}


def markdown_latency(records: Sequence[Mapping[str, Any]]) -> str:
    """Latency min–max (ms) over each model's sweep per runtime, and each peer's geometric-mean
    time over sod2's; a last row with the geometric mean of those ratios over the models."""
    peers = ["ort", "torch", "tvm"]
    lines = [
        "| model | points | "
        + " | ".join(f"{PEER_TITLES[p]} ms" for p in ["sod2", *peers])
        + " | "
        + " | ".join(f"{p}/sod2" for p in peers)
        + " |",
        "|---|---:|" + "---:|" * (2 * len(peers) + 1),
    ]
    ratios: dict[str, list[float]] = {p: [] for p in peers}
    for record in records:
        cells = [latency_cell(record["peers"].get(p)) for p in ["sod2", *peers]]
        for peer in peers:
            value = record["ratios_over_sod2"].get(peer)
            if value is not None:
                ratios[peer].append(value)
        cells += [fmt_ratio(record["ratios_over_sod2"].get(p)) for p in peers]
        lines.append(f"| {record['model']} | {len(record['points'])} | " + " | ".join(cells) + " |")
    means = [fmt_ratio(geomean(ratios[p])) if ratios[p] else "-" for p in peers]
    lines.append("| geomean | | | | | | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def markdown_memory(records: Sequence[Mapping[str, Any]]) -> str:
    """Peak intermediate memory of sod2 and onnxruntime and their ratio, sod2's arena, and the
    compile times (cold / warm, and the first run after each)."""
    lines = [
        "| model | sod2 peak MiB | onnxruntime peak MiB | ort/sod2 | sod2 arena MiB "
        "| sod2 compile s cold / warm | sod2 first run s cold / warm | onnxruntime load s | TVM build s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        memory, times = record["memory"], record["compile"]
        sod2_memory, ort_memory = memory.get("sod2", {}), memory.get("ort", {})
        sod2_times = times.get("sod2", {})
        lines.append(
            f"| {record['model']} | {fmt_mib(sod2_memory.get('growth_bytes'))} "
            f"| {fmt_mib(ort_memory.get('growth_bytes'))} "
            f"| {fmt_ratio(record['memory_ratio_ort_over_sod2'])} "
            f"| {fmt_mib(sod2_memory.get('arena_bytes'))} "
            f"| {_pair(sod2_times, 'cold_seconds', 'warm_seconds')} "
            f"| {_pair(sod2_times, 'cold_first_run_seconds', 'warm_first_run_seconds')} "
            f"| {fmt_seconds(times.get('ort', {}).get('warm_seconds'))} "
            f"| {fmt_seconds(times.get('tvm', {}).get('warm_seconds'))} |"
        )
    return "\n".join(lines) + "\n"


def _pair(values: Mapping[str, Any], first: str, second: str) -> str:
    return f"{fmt_seconds(values.get(first))} / {fmt_seconds(values.get(second))}"


def markdown_ablation(records: Sequence[Mapping[str, Any]]) -> str:
    """Per model, the geometric-mean latency (ms) over the sweep of each cumulative ablation row."""
    rows = [row for row, _ in ABLATION_ROWS]
    lines = ["| model | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for record in records:
        ablation = record.get("ablation", {})
        lines.append(
            f"| {record['model']} | "
            + " | ".join(geomean_cell(ablation.get(r)) for r in rows)
            + " |"
        )
    return "\n".join(lines) + "\n"


TARGETS = (
    "geometric-mean latency at or below onnxruntime's (ort/sod2 >= 1)",
    "geometric-mean latency below PyTorch eager's (torch/sod2 > 1)",
    "peak intermediate memory at most 0.6x onnxruntime's, on every model",
    "a warm start (compile with filled caches, then the first run) under 2 s, on every model",
)
"""The performance targets the benchmark reports on (never asserted by tests)."""


def target_results(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """Each of TARGETS with whether `records` reach it (None: not measured) and the figures."""
    results: list[tuple[str, bool | None, str]] = []
    for peer, target, strict in (("ort", TARGETS[0], False), ("torch", TARGETS[1], True)):
        ratios = [r["ratios_over_sod2"][peer] for r in records if r["ratios_over_sod2"].get(peer)]
        if not ratios:
            results.append((target, None, "not measured"))
            continue
        mean = geomean(ratios)
        reached = mean > 1.0 if strict else mean >= 1.0
        results.append((target, reached, f"{peer}/sod2 = {mean:.2f}x over {len(ratios)} models"))
    memory = [
        (r["model"], 1.0 / r["memory_ratio_ort_over_sod2"])
        for r in records
        if r.get("memory_ratio_ort_over_sod2")
    ]
    if memory:
        over = [f"{name} {ratio:.2f}x" for name, ratio in memory if ratio > 0.6]
        worst = max(ratio for _, ratio in memory)
        text = f"sod2/ort from {min(r for _, r in memory):.2f}x to {worst:.2f}x"
        text += f"; above 0.6x: {', '.join(over)}" if over else ""
        results.append((TARGETS[2], not over, text))
    else:
        results.append((TARGETS[2], None, "not measured"))
    starts = []
    for record in records:
        times = record["compile"].get("sod2", {})
        load, first = times.get("warm_seconds"), times.get("warm_first_run_seconds")
        if load is not None and first is not None:
            starts.append((record["model"], load + first))
    if starts:
        slow = [f"{name} {seconds:.1f} s" for name, seconds in starts if seconds >= 2.0]
        text = f"up to {max(s for _, s in starts):.2f} s"
        text += f"; 2 s or more: {', '.join(slow)}" if slow else ""
        results.append((TARGETS[3], not slow, text))
    else:
        results.append((TARGETS[3], None, "not measured"))
    return results


def markdown_targets(records: Sequence[Mapping[str, Any]]) -> str:
    """The targets as a list: reached, not reached or not measured, with the figures."""
    marks = {True: "reached", False: "**not reached**", None: "not measured"}
    lines = [
        f"- {target}: {marks[reached]} ({text})"
        for target, reached, text in target_results(records)
    ]
    return "\n".join(lines) + "\n"


def markdown_failures(records: Sequence[Mapping[str, Any]]) -> str:
    """A bullet per model listing what failed or differed (empty when nothing did)."""
    lines = []
    for record in records:
        reasons = failures(record)
        if reasons:
            lines.append(f"- {record['model']}: " + "; ".join(reasons) + ".")
    return "\n".join(lines) + ("\n" if lines else "")


if __name__ == "__main__":
    sys.exit(child_main())
