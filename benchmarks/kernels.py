"""Micro-benchmark of sod2's fast kernels against the reference kernels and onnxruntime.

    python benchmarks/kernels.py [--repeat K] [--ops Conv,Softmax] [--strategies] [--markdown]

Each case is one ONNX node with representative shapes of the zoo (weights and shape inputs are
initializers, as in the models). For each, in this one process:
- sod2: `fast_kernel(node, opset)` writing into preallocated outputs (what the compiled runtime
  does per call), its constant weights laid out once by `prepare` as the runtime does, with the
  Conv strategy it picks per shape;
- reference: the catalogue's numpy kernel, which allocates its results;
- onnxruntime: a session of the one-node model, `intra_op_num_threads` threads, every graph
  optimization on (ORT_ENABLE_ALL), inputs fed and outputs returned by `run`.
Every figure is the best of K timed runs after one warm-up (min, not median: on a shared machine
the minimum is the figure least disturbed by other processes), in milliseconds. sod2's outputs are
checked against the reference's before timing. `--strategies` adds a table of every Conv strategy
on the Conv cases. Threads: $SOD2_BENCH_THREADS (default 2) for onnxruntime, OpenBLAS and Numba.
"""

from __future__ import annotations

import os

THREADS = int(os.environ.get("SOD2_BENCH_THREADS", "2"))
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, str(THREADS))  # before numpy and numba start their pools

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from sod2.backend.kernels import CONV_STRATEGIES, ConvKernel, _Unfit, fast_kernel  # noqa: E402
from sod2.ir import load  # noqa: E402
from sod2.ir.graph import Node  # noqa: E402
from sod2.ops.registry import KernelContext, lookup_node  # noqa: E402

OPSET = 20


@dataclass
class Case:
    """One node: its op, attributes, fed inputs and initializers (name -> array, in order)."""

    label: str
    op: str
    inputs: list[tuple[str, np.ndarray | None, bool]]
    """(name, value, is_initializer); a None value is an omitted optional input."""
    attrs: dict[str, object] = field(default_factory=dict)
    outputs: int = 1


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _conv(rng: np.random.Generator, x: tuple, m: int, k: int, pad: int, **attrs: object) -> Case:
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    w = _f32(rng, m, x[1] // group, k, k) * np.float32(0.1)
    stride = attrs.get("strides", [1])[0]  # type: ignore[index]
    label = (
        f"{'x'.join(map(str, x))} {k}x{k} -> {m}"
        + (f" g{group}" if group > 1 else "")
        + (f" s{stride}" if stride != 1 else "")
    )
    return Case(
        label,
        "Conv",
        [("x", _f32(rng, *x), False), ("w", w, True), ("b", _f32(rng, m), True)],
        {"pads": [pad] * 4, **attrs},
    )


def cases(rng: np.random.Generator) -> list[Case]:
    """The benchmark's nodes: the brief's shapes first, then the zoo's heaviest ones."""
    f32 = _f32
    return [
        _conv(rng, (1, 64, 128, 128), 64, 3, 1),
        _conv(rng, (1, 256, 24, 32), 256, 3, 1),
        _conv(rng, (1, 512, 64, 64), 512, 3, 1),
        _conv(rng, (1, 4, 64, 64), 64, 3, 1),
        _conv(rng, (1, 320, 32, 32), 320, 1, 0),
        _conv(rng, (1, 16, 512, 512), 16, 3, 1),
        _conv(rng, (1, 48, 64, 64), 48, 3, 1),
        _conv(rng, (2, 32, 96, 128), 32, 3, 1),
        _conv(rng, (1, 64, 64, 64), 128, 3, 1, strides=[2, 2]),
        _conv(rng, (1, 64, 64, 64), 64, 3, 1, group=64),
        _conv(rng, (1, 3, 640, 640), 8, 7, 3, strides=[2, 2]),
        _conv(rng, (1, 1024, 14, 14), 1, 3, 1),
        _conv(rng, (1, 64, 56, 56), 1, 3, 1),
        _conv(rng, (1, 16, 64, 64), 2, 3, 1),
        _conv(rng, (1, 512, 7, 7), 512, 3, 1),
        _conv(rng, (1, 256, 14, 14), 512, 3, 1, strides=[2, 2]),
        _conv(rng, (1, 3, 384, 448), 8, 7, 3, strides=[2, 2]),
        _conv(rng, (1, 16, 52, 52), 16, 3, 1),
        _conv(rng, (1, 16, 28, 28), 16, 3, 1),
        _conv(rng, (1, 48, 7, 7), 48, 3, 1),
        _conv(rng, (1, 128, 7, 7), 128, 3, 1),
        Case(
            "8x128x768 @ 768x3072",
            "MatMul",
            [("a", f32(rng, 8, 128, 768), False), ("b", f32(rng, 768, 3072), True)],
        ),
        Case(
            "1x768 @ 768x768",
            "MatMul",
            [("a", f32(rng, 1, 768), False), ("b", f32(rng, 768, 768), True)],
        ),
        Case(
            "1x8x768 @ 768x3072",
            "MatMul",
            [("a", f32(rng, 1, 8, 768), False), ("b", f32(rng, 768, 3072), True)],
        ),
        Case(
            "1x32x3072 @ 3072x768",
            "MatMul",
            [("a", f32(rng, 1, 32, 3072), False), ("b", f32(rng, 3072, 768), True)],
        ),
        Case(
            "1x1x4096x4096 @ 1x1x4096x48",
            "MatMul",
            [("a", f32(rng, 1, 1, 4096, 4096), False), ("b", f32(rng, 1, 1, 4096, 48), False)],
        ),
        Case(
            "8x12x128x64 @ 8x12x64x128",
            "MatMul",
            [("a", f32(rng, 8, 12, 128, 64), False), ("b", f32(rng, 8, 12, 64, 128), False)],
        ),
        Case(
            "64x512 @ (1000x512)^T + C",
            "Gemm",
            [
                ("a", f32(rng, 64, 512), False),
                ("b", f32(rng, 1000, 512), True),
                ("c", f32(rng, 1000), True),
            ],
            {"transB": 1},
        ),
        Case("8x12x128x128", "Softmax", [("x", f32(rng, 8, 12, 128, 128) * 4, False)]),
        Case("1x1x4096x4096", "Softmax", [("x", f32(rng, 1, 1, 4096, 4096) * 4, False)]),
        Case(
            "8x128x768",
            "LayerNormalization",
            [
                ("x", f32(rng, 8, 128, 768), False),
                ("s", f32(rng, 768), True),
                ("b", f32(rng, 768), True),
            ],
            {"axis": -1},
        ),
        Case(
            "1x128x64x64",
            "InstanceNormalization",
            [
                ("x", f32(rng, 1, 128, 64, 64), False),
                ("s", f32(rng, 128), True),
                ("b", f32(rng, 128), True),
            ],
        ),
        Case(
            "1x8x524288",
            "InstanceNormalization",
            [
                ("x", f32(rng, 1, 8, 524288), False),
                ("s", f32(rng, 8), True),
                ("b", f32(rng, 8), True),
            ],
        ),
        Case(
            "1x64x128x128",
            "BatchNormalization",
            [("x", f32(rng, 1, 64, 128, 128), False)]
            + [(name, np.abs(f32(rng, 64)) + 0.5, True) for name in ("s", "b", "m", "v")],
        ),
        Case(
            "1x64x128x128 k3 s2 p1",
            "MaxPool",
            [("x", f32(rng, 1, 64, 128, 128), False)],
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        ),
        Case(
            "1x64x64x64 k2 s2",
            "AveragePool",
            [("x", f32(rng, 1, 64, 64, 64), False)],
            {"kernel_shape": [2, 2], "strides": [2, 2]},
        ),
        Case("1x512x16x16", "GlobalAveragePool", [("x", f32(rng, 1, 512, 16, 16), False)]),
        Case(
            "8x128x768 axis -1",
            "ReduceMean",
            [("x", f32(rng, 8, 128, 768), False), ("axes", np.array([-1], np.int64), True)],
        ),
        Case(
            "1x64x64x64 x2 nearest",
            "Resize",
            [
                ("x", f32(rng, 1, 64, 64, 64), False),
                ("roi", None, False),
                ("scales", np.array([1, 1, 2, 2], np.float32), True),
            ],
            {
                "mode": "nearest",
                "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor",
            },
        ),
        Case(
            "1x64x64x64 x2 linear",
            "Resize",
            [
                ("x", f32(rng, 1, 64, 64, 64), False),
                ("roi", None, False),
                ("scales", np.array([1, 1, 2, 2], np.float32), True),
            ],
            {"mode": "linear"},
        ),
        Case(
            "8x128x12x64 perm 0213",
            "Transpose",
            [("x", f32(rng, 8, 128, 12, 64), False)],
            {"perm": [0, 2, 1, 3]},
        ),
        Case(
            "1x4096x256 perm 021",
            "Transpose",
            [("x", f32(rng, 1, 4096, 256), False)],
            {"perm": [0, 2, 1]},
        ),
        Case(
            "2 x 1x64x64x64 axis 1",
            "Concat",
            [("x", f32(rng, 1, 64, 64, 64), False), ("y", f32(rng, 1, 64, 64, 64), False)],
            {"axis": 1},
        ),
        Case(
            "30522x768 [8x128]",
            "Gather",
            [("x", f32(rng, 30522, 768), True), ("i", rng.integers(0, 30522, (8, 128)), False)],
        ),
        Case(
            "1x64x128x128 [1:-1, ::2]",
            "Slice",
            [
                ("x", f32(rng, 1, 64, 128, 128), False),
                ("starts", np.array([1, 0], np.int64), True),
                ("ends", np.array([-1, 128], np.int64), True),
                ("axes", np.array([2, 3], np.int64), True),
                ("steps", np.array([1, 2], np.int64), True),
            ],
        ),
        Case(
            "1x1x128x128 -> 8x12x128x128",
            "Expand",
            [("x", f32(rng, 1, 1, 128, 128), False), ("shape", np.array([8, 12, 128, 128]), True)],
        ),
        Case(
            "1x64x128x128 pads 1",
            "Pad",
            [
                ("x", f32(rng, 1, 64, 128, 128), False),
                ("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1]), True),
            ],
        ),
    ]


def one_node_model(case: Case) -> onnx.ModelProto:
    """The case as an ONNX model: fed inputs are graph inputs, the others initializers."""
    graph_inputs, initializers, names = [], [], []
    for name, value, constant in case.inputs:
        if value is None:
            names.append("")
            continue
        names.append(name)
        if constant:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, value.shape))
    outputs = [f"y{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, names, outputs, **case.attrs)
    graph = helper.make_graph(
        [node],
        case.op.lower(),
        graph_inputs,
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return onnx.shape_inference.infer_shapes(model)


def best_of(run: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` timed runs after one warm-up, in milliseconds."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


@dataclass
class Row:
    """The measured times of one case (ms)."""

    case: Case
    sod2: float | None
    reference: float
    onnxruntime: float
    note: str
    strategies: dict[str, float] = field(default_factory=dict)


def measure(case: Case, repeat: int, strategies: bool) -> Row:
    """Time the case in sod2, the reference and onnxruntime; check sod2 against the reference."""
    proto = one_node_model(case)
    model = load(proto)
    node: Node = model.graph.nodes[0]
    opset = model.opset("")
    values = [value for _, value, _ in case.inputs]
    reference = lookup_node(node, opset).kernel
    context = KernelContext(node, opset)
    wants = [np.asarray(v) for v in reference(context, values)]
    # C-contiguous, as the arena's views are (empty_like would copy a transposed view's order)
    outs = [np.empty(w.shape, w.dtype) for w in wants]
    reference_ms = best_of(lambda: reference(context, values), repeat)
    kernel = fast_kernel(node, opset)
    sod2_ms, note, by_strategy = None, "no fast kernel", {}
    if kernel is not None:
        values = prepared(kernel, case, values)
        kernel(values, outs)
        for got, want in zip(outs, wants, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=case.label)
        sod2_ms = best_of(lambda: kernel(values, outs), repeat)
        note = ""
        if case.op == "Conv":
            conv = ConvKernel(node, opset)
            note = conv.strategy_for(values[0].shape, values[1].shape)
            if strategies:
                by_strategy = _strategy_times(node, opset, values, outs[0], wants[0], repeat)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {
        name: value for name, value, constant in case.inputs if value is not None and not constant
    }
    ort_ms = best_of(lambda: session.run(None, feeds), repeat)
    return Row(case, sod2_ms, reference_ms, ort_ms, note, by_strategy)


def prepared(kernel: object, case: Case, values: list) -> list:
    """The inputs as the compiled runtime hands them to the kernel: a constant weight (input 1)
    laid out once by the kernel's `prepare`, in the layout it returns where it returns one."""
    prepare = getattr(getattr(kernel, "body", None), "prepare", None)
    if prepare is None or len(case.inputs) < 2 or not case.inputs[1][2]:
        return values
    laid_out = prepare(values[1])
    return values if laid_out is None else [values[0], laid_out, *values[2:]]


def _strategy_times(
    node: Node, opset: int, values: list, out: np.ndarray, want: np.ndarray, repeat: int
) -> dict[str, float]:
    times = {}
    picked = ConvKernel(node, opset).strategy_for(values[0].shape, values[1].shape)
    for strategy in CONV_STRATEGIES:
        if strategy == "pointwise" and picked != "pointwise":
            continue  # for 1x1 unpadded unit-stride kernels only
        kernel = ConvKernel(node, opset, strategy=strategy)
        kernel.prepare(values[1])  # as the runtime does for constant weights
        try:
            kernel(values, [out])
        except _Unfit:  # the strategy has no loop for this shape ('-' in the table)
            continue
        np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3, err_msg=strategy)
        times[strategy] = best_of(lambda k=kernel: k(values, [out]), repeat)
    return times


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: Sequence[Row]) -> str:
    """The main table, as markdown."""
    lines = [
        f"| op | shapes | sod2 ms | reference ms | onnxruntime ms ({THREADS} threads) | sod2 / ORT | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = "-" if row.sod2 is None else f"{row.sod2 / row.onnxruntime:.2f}"
        lines.append(
            f"| {row.case.op} | {row.case.label} | {_ms(row.sod2)} | {_ms(row.reference)} | "
            f"{_ms(row.onnxruntime)} | {ratio} | {row.note} |"
        )
    return "\n".join(lines)


def strategy_table(rows: Sequence[Row]) -> str:
    """Every Conv strategy on the Conv cases, as markdown."""
    lines = [
        "| Conv | "
        + " | ".join(f"{s} ms" for s in CONV_STRATEGIES)
        + " | picked | onnxruntime ms |",
        "|---|" + "---:|" * len(CONV_STRATEGIES) + "---|---:|",
    ]
    for row in rows:
        if not row.strategies:
            continue
        cells = " | ".join(_ms(row.strategies.get(s)) for s in CONV_STRATEGIES)
        lines.append(f"| {row.case.label} | {cells} | {row.note} | {_ms(row.onnxruntime)} |")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure")
    parser.add_argument("--ops", default="", help="comma-separated op types (default all)")
    parser.add_argument("--strategies", action="store_true", help="time every Conv strategy")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every case and print the tables."""
    arguments = parse_arguments(argv)
    wanted = {op for op in arguments.ops.split(",") if op}
    rows = []
    for case in cases(np.random.default_rng(arguments.seed)):
        if wanted and case.op not in wanted:
            continue
        row = measure(case, arguments.repeat, arguments.strategies)
        rows.append(row)
        print(
            f"{case.op:22s} {case.label:32s} sod2 {_ms(row.sod2):>9s}  ref {_ms(row.reference):>9s}  "
            f"ort {_ms(row.onnxruntime):>9s}  {row.note}",
            flush=True,
        )
    print()
    print(table(rows))
    if arguments.strategies:
        print()
        print(strategy_table(rows))


if __name__ == "__main__":
    main()
