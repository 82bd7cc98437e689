"""The `sod2` command.

    sod2 inspect MODEL [--ir] [--shapes] [--graph FILE]   what sod2 sees in a model
    sod2 infer-shapes IN -o OUT               RDP's shapes written into value_info
    sod2 passes                               registered passes and their options
    sod2 optimize MODEL -o OUT --pipeline P   run a pipeline and write the result
    sod2 run MODEL [--input N=F.npy] [--random --bind SYM=V]   run a model, print its outputs
    sod2 bench MODEL [--peers ort,torch,tvm] [--json]   latency, compile time, memory vs peers
    sod2 conformance [--json] [--write PATH]  ONNX node test cases through the interpreter
    sod2 zoo list | build NAME | path NAME    the dynamic model zoo
    sod2 demo                                 a tour on a model shipped with sod2

Errors that sod2 raises on purpose (`Sod2Error`) print as one message and exit with status 1;
`--debug` shows the traceback instead. Each subcommand is a small function taking the parsed
arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sod2.errors import Sod2Error
from sod2.ir import format_model, load, save
from sod2.passes import (
    DumpIRInstrument,
    PassContext,
    PassManager,
    TimingInstrument,
    VerifyInstrument,
    registered_passes,
)
from sod2.summary import model_summary
from sod2.zoo.cli import add_zoo_parser

if TYPE_CHECKING:
    from sod2.analysis.rdp import RDPResult
    from sod2.backend.runtime import StepTime
    from sod2.ir.graph import Node, Tensor
    from sod2.ir.model import Model

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except Sod2Error as error:
        if getattr(args, "debug", False):
            raise
        print(f"sod2: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sod2", description="Statically optimize dynamic neural networks (ONNX)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of sod2 errors")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_inspect(commands)
    _add_passes(commands)
    _add_optimize(commands)
    _add_infer_shapes(commands)
    _add_run(commands)
    _add_bench(commands)
    _add_plan(commands)
    _add_conformance(commands)
    _add_demo(commands)
    add_zoo_parser(commands)
    return parser


def _repeatable(sub: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """An option that may be given several times, collected into a list."""
    sub.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def _command(
    commands: argparse._SubParsersAction, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help, description=help)
    sub.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub.set_defaults(handler=handler)
    return sub


# -- inspect ---------------------------------------------------------------------------------


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands, "inspect", _inspect, "Show a model's inputs, symbols, outputs and ops."
    )
    sub.add_argument("model", type=Path, help="ONNX model file")
    sub.add_argument("--ir", action="store_true", help="also print the whole IR")
    sub.add_argument(
        "--shapes",
        action="store_true",
        help="each node's SoD2 class and its outputs' inferred shapes (RDP)",
    )
    sub.add_argument(
        "--graph",
        type=Path,
        default=None,
        metavar="FILE",
        help="draw the graph coloured by SoD2 class (.dot, or .svg/.png with Graphviz)",
    )
    sub.add_argument(
        "--fusion", action="store_true", help="the groups fusion forms (after RDP), one per line"
    )
    sub.add_argument("--no-check", action="store_true", help="skip onnx.checker on load")


def _inspect(args: argparse.Namespace) -> int:
    model = load(args.model, check=not args.no_check)
    print(model_summary(model, str(args.model)))
    if args.ir:
        print()
        print(format_model(model))
    if args.shapes or args.graph:
        from sod2.analysis.rdp import propagate
        from sod2.summary import resolution_summary, shapes_report

        result = propagate(model)
        if args.shapes:
            print()
            print(shapes_report(model, result))
            print(resolution_summary(model, result))
        if args.graph:
            _draw(model, result, args.graph)
    if args.fusion:
        from sod2.opt.fusion import fuse, group_table

        print()
        print(group_table(fuse(model)))
    return 0


CLASS_COLOURS = {"ISDO": "#cfe8ff", "ISDOS": "#d9f2d0", "ISVDOS": "#ffe9b3", "EDO": "#ffc9c9"}


def _draw(model: Model, result: RDPResult, path: Path) -> None:
    from sod2.ir.dot import render, to_dot

    def colour(node: Node) -> str:
        op_class = result.classes.get(node)
        return CLASS_COLOURS.get(op_class.name, "white") if op_class else "white"

    def label(tensor: Tensor) -> str:
        fact = result.facts.get(tensor)
        return f"{tensor.name}\n{fact}" if fact is not None else tensor.name

    render(to_dot(model.graph, colour=colour, label=label, legend=CLASS_COLOURS), path)
    print(f"graph written to {path}")


# -- passes ----------------------------------------------------------------------------------


def _add_passes(commands: argparse._SubParsersAction) -> None:
    _command(commands, "passes", _passes, "List the registered passes and their options.")


def _passes(args: argparse.Namespace) -> int:
    for name, cls in registered_passes().items():
        print(f"{name}: {cls.summary()}")
        for opt in cls.options():
            choices = f" (one of {', '.join(opt.choices)})" if opt.choices else ""
            print(f"    {opt.name}: {opt.type} = {opt.default!r}{choices}  {opt.help}")
    return 0


# -- optimize --------------------------------------------------------------------------------

DEFAULT_PIPELINE = "fold-constants,dce,toposort"


def _add_optimize(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands, "optimize", _optimize, "Run a pass pipeline on a model and write the result."
    )
    sub.add_argument("model", type=Path, help="ONNX model file")
    sub.add_argument("-o", "--output", type=Path, required=True, help="where to write the result")
    sub.add_argument(
        "--pipeline", default=DEFAULT_PIPELINE, help=f"passes to run (default: {DEFAULT_PIPELINE})"
    )
    sub.add_argument("--time", action="store_true", help="print the time each pass took")
    sub.add_argument(
        "--verify", action="store_true", help="verify the IR before and after every pass"
    )
    sub.add_argument(
        "--dump-after",
        metavar="PASSES",
        default=None,
        help="print the IR after these passes (comma-separated, or 'all')",
    )
    sub.add_argument(
        "--dump-dir", type=Path, default=None, help="write IR dumps to files in this folder"
    )


def _optimize(args: argparse.Namespace) -> int:
    manager = PassManager.parse(args.pipeline)
    model = load(args.model)
    timing = TimingInstrument()
    instruments = _instruments(args, timing)
    nodes_before = sum(1 for _ in model.graph.walk())
    manager.run(model, PassContext.with_instruments(instruments))
    save(model, args.output)
    nodes_after = sum(1 for _ in model.graph.walk())
    print(f"{args.model} -> {args.output}: {manager.spec()}; nodes {nodes_before} -> {nodes_after}")
    if args.time:
        print(timing.report())
    return 0


def _instruments(args: argparse.Namespace, timing: TimingInstrument) -> list:
    instruments: list = [timing]
    if args.verify:
        instruments.append(VerifyInstrument())
    if args.dump_after or args.dump_dir:
        names = "" if args.dump_after in (None, "all") else args.dump_after
        after = frozenset(n.strip() for n in names.split(",") if n.strip())
        instruments.append(
            DumpIRInstrument(after=after, stream=sys.stdout, directory=args.dump_dir)
        )
    return instruments


# -- infer-shapes ----------------------------------------------------------------------------


def _add_infer_shapes(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands,
        "infer-shapes",
        _infer_shapes,
        "Write every shape RDP infers into the model's value_info.",
    )
    sub.add_argument("model", type=Path, help="ONNX model file")
    sub.add_argument("-o", "--output", type=Path, required=True, help="where to write the result")


def _infer_shapes(args: argparse.Namespace) -> int:
    from sod2.analysis.rdp import RDP
    from sod2.summary import resolution_summary

    model = load(args.model)
    context = PassContext()
    PassManager.parse("infer-shapes").run(model, context)
    save(model, args.output)
    print(
        f"{args.model} -> {args.output}: "
        f"{resolution_summary(model, context.analyses.get(RDP, model))}"
    )
    return 0


# -- run -------------------------------------------------------------------------------------


def _add_run(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands, "run", _run, "Run a model; print each output's shape, dtype and checksum."
    )
    sub.add_argument("model", type=Path, help="ONNX model file")
    _repeatable(sub, "--input", "NAME=FILE.npy", "value of an input (repeatable)")
    sub.add_argument("--random", action="store_true", help="random values for inputs not given")
    _repeatable(sub, "--bind", "SYM=VALUE", "value of a shape symbol for --random (repeatable)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    sub.add_argument("--save-dir", type=Path, default=None, help="save outputs as NAME.npy here")
    sub.add_argument(
        "--reference",
        action="store_true",
        help="run with the reference interpreter instead of the compiled runtime",
    )
    sub.add_argument("--repeat", type=int, default=1, help="run this many times, print timings")
    sub.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=20,
        default=None,
        metavar="N",
        help="time each step of the compiled runtime (least time over --repeat runs, 5 if not "
        "given) and print the N slowest (20 if N is not given) and the time by op",
    )


def _run(args: argparse.Namespace) -> int:
    import time

    from sod2.backend.inputs import load_input_files, parse_bindings, random_inputs
    from sod2.backend.reference import ReferenceInterpreter
    from sod2.backend.runtime import compile_model

    if args.reference and args.profile is not None:
        raise Sod2Error("--profile times the compiled runtime's steps: drop --reference")
    model = load(args.model)
    feeds = load_input_files(args.input)
    if args.random:
        missing = {t.name for t in model.graph.inputs} - set(feeds)
        feeds |= random_inputs(model, parse_bindings(args.bind), seed=args.seed, only=missing)
    if args.reference:
        interpreter = ReferenceInterpreter(model)

        def execute() -> dict:
            return interpreter.run(feeds).outputs
    else:
        compiled = compile_model(args.model)
        print(compiled.describe(), file=sys.stderr)
        execute = lambda: compiled.run(feeds)  # noqa: E731
    times = []
    for _ in range(max(1, args.repeat)):
        began = time.perf_counter()
        outputs = execute()
        times.append(time.perf_counter() - began)
    if args.repeat > 1:
        ms = sorted(t * 1e3 for t in times)
        print(
            f"{len(ms)} runs: min {ms[0]:.2f} ms, median {ms[len(ms) // 2]:.2f} ms, "
            f"max {ms[-1]:.2f} ms",
            file=sys.stderr,
        )
    for name, value in outputs.items():
        print(describe_value(name, value))
        if args.save_dir is not None:
            _save_output(args.save_dir, name, value)
    if args.profile is not None:
        repeat = args.repeat if args.repeat > 1 else 5
        print(format_profile(compiled.profile(feeds, repeat), args.profile))
    return 0


def format_profile(times: Sequence[StepTime], top: int) -> str:
    """A profile (`CompiledModel.profile`) as text: the total, the `top` slowest steps with
    their share of it, then the time by op (a fused group by its kind)."""
    total = sum(t.seconds for t in times) or 1e-12
    lines = [f"{len(times)} steps, {total * 1e3:.3f} ms in all (least time of each step)"]
    lines.append(f"{'ms':>9} {'share':>6}  {'step':>5}  {'kind':<9} op / node / output shapes")
    for t in sorted(times, key=lambda t: -t.seconds)[: max(0, top)]:
        shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in t.shapes)
        lines.append(
            f"{t.seconds * 1e3:9.3f} {t.seconds / total:6.1%}  {t.step:5d}  {t.kind:<9} "
            f"{t.op} / {t.node} / {shapes}"
        )
    by_op: dict[str, tuple[float, int]] = {}
    for t in times:
        op = t.op.split(":")[0] + "]" if t.op.startswith("Fused[") else t.op
        seconds, count = by_op.get(op, (0.0, 0))
        by_op[op] = seconds + t.seconds, count + 1
    lines.append(f"{'ms':>9} {'share':>6}  {'steps':>5}  op")
    for op, (seconds, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{seconds * 1e3:9.3f} {seconds / total:6.1%}  {count:5d}  {op}")
    return "\n".join(lines)


def describe_value(name: str, value: object) -> str:
    """One line: name, dtype, shape, sum and a short digest of the bytes."""
    import hashlib

    import numpy as np

    if isinstance(value, list):
        return f"{name}: sequence of {len(value)}"
    if value is None:
        return f"{name}: empty optional"
    array = np.asarray(value)
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]
    total = float(array.astype(np.float64).sum()) if array.dtype.kind in "biuf" else float("nan")
    return f"{name}: {array.dtype}{list(array.shape)} sum={total:.6g} sha256={digest}"


def _save_output(directory: Path, name: str, value: object) -> None:
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    np.save(directory / f"{safe}.npy", np.asarray(value))


# -- conformance -----------------------------------------------------------------------------


def _add_plan(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands,
        "plan",
        _plan,
        "Plan a model's memory once (order search, views, in-place, symbolic arena) and show "
        "the plan at a binding next to greedy-by-size, online best-fit and no reuse.",
    )
    sub.add_argument("model", type=Path, help="ONNX model file")
    _repeatable(
        sub, "--bind", "SYM=VALUE", "value of a symbol (repeatable; every input symbol is needed)"
    )
    _repeatable(
        sub,
        "--range",
        "SYM=LOW:HIGH",
        "range of an input symbol the plan must be good over (repeatable; zoo models "
        "come with theirs; default 1:1024)",
    )
    sub.add_argument("--json", action="store_true", help="print the figures as JSON")
    sub.add_argument(
        "--plot", type=Path, default=None, metavar="FILE", help="draw the plan (.png/.svg)"
    )
    sub.add_argument(
        "--exact", action="store_true", help="also compute the exact optimal order peak"
    )
    sub.add_argument("--no-search", action="store_true", help="keep the model's own order (no SEP)")
    sub.add_argument("--no-inplace", action="store_true", help="no in-place reuse of inputs")


def _plan(args: argparse.Namespace) -> int:
    import json

    from sod2.backend.inputs import parse_bindings
    from sod2.opt.memory_plan import PlanOptions, plan_memory
    from sod2.opt.memory_report import figures

    model = load(args.model)
    ranges = {**_zoo_ranges(args.model), **_parse_ranges(args.range)}
    options = PlanOptions(
        ranges=ranges, search_order=not args.no_search, inplace=not args.no_inplace
    )
    plan = plan_memory(model, options=options)
    binding = parse_bindings(args.bind)
    result = figures(plan, binding, exact=args.exact)
    if args.plot is not None:
        from sod2.opt.plan_plot import draw_plan

        draw_plan(plan.top, binding, args.plot)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print(f"memory plan of {args.model} at {' '.join(f'{k}={v}' for k, v in binding.items())}")
    print(
        f"  {result.storages} storages holding {result.tensors_planned} tensors "
        f"({result.views} views, {result.inplace} in place, {result.unplanned} unplanned), "
        f"{result.versions} plan version(s)"
    )
    for key, value in result.to_dict().items():
        if key.endswith("_bytes") and value is not None:
            print(f"  {key:28s} {value:>14,d}")
    print(f"  {'instantiate_us':28s} {result.instantiate_us:>14.1f}")
    if args.plot is not None:
        print(f"  plot written to {args.plot}")
    return 0


def _parse_ranges(specs: list[str]) -> dict[str, tuple[int, int]]:
    """Parse `SYM=LOW:HIGH` items."""
    ranges = {}
    for spec in specs:
        name, _, bounds = spec.partition("=")
        low, _, high = bounds.partition(":")
        try:
            ranges[name.strip()] = (int(low), int(high))
        except ValueError:
            raise Sod2Error(f"--range {spec!r}: expected SYMBOL=LOW:HIGH, e.g. H=64:1024") from None
    return ranges


def _zoo_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """The symbol ranges of the zoo model a file is (by its name: NAME.onnx, NAME.paper.onnx)."""
    from sod2.zoo import REGISTRY

    entry = REGISTRY.get(path.name.split(".")[0])
    return {} if entry is None else {s.name: (s.low, s.high) for s in entry.symbols}


def _add_conformance(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands,
        "conformance",
        _conformance,
        "Run ONNX's node test cases through the reference interpreter.",
    )
    sub.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    sub.add_argument("--write", type=Path, default=None, help="also write the report to a file")
    sub.add_argument(
        "--compiled", action="store_true", help="run through the compiled runtime instead"
    )
    sub.add_argument("cases", nargs="*", help="only these case names (default: all)")


def _conformance(args: argparse.Namespace) -> int:
    import json

    from sod2.testing.conformance import report_json, report_markdown, run_conformance

    results = run_conformance(args.cases or None, compiled=args.compiled)
    text = json.dumps(report_json(results), indent=1) if args.json else report_markdown(results)
    print(text)
    if args.write is not None:
        args.write.write_text(text if text.endswith("\n") else text + "\n")
    return 1 if any(r.status == "fail" for r in results) else 0


# -- bench -----------------------------------------------------------------------------------


def _add_bench(commands: argparse._SubParsersAction) -> None:
    sub = _command(
        commands,
        "bench",
        _bench,
        "Measure a model on sod2 and its peers: latency over a sweep, compile time, peak memory.",
    )
    sub.add_argument("model", help="zoo model name, or an ONNX file (give its sweep with --point)")
    sub.add_argument("--json", action="store_true", help="print the JSON record instead")
    sub.add_argument("--scale", choices=("small", "paper"), default="small", help="zoo scale")
    sub.add_argument("--threads", type=int, default=None, help="threads per runtime (all cores)")
    sub.add_argument("--repeat", type=int, default=3, help="timed runs per point (median)")
    sub.add_argument(
        "--peers", default="ort,torch,tvm", help="peers beside sod2 (onnxruntime always runs)"
    )
    _repeatable(sub, "--point", "N=1,L=32", "a binding of the sweep (repeatable)")
    sub.add_argument("--ablation", action="store_true", help="also time each ablation row")
    sub.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    sub.add_argument(
        "--no-compile", action="store_true", help="skip the cold/warm compile children"
    )
    sub.add_argument(
        "--slow-seconds", type=float, default=5.0, help="one timed run when the warm-up is slower"
    )


def _bench(args: argparse.Namespace) -> int:
    import json
    import os

    from sod2.bench import BenchSettings, bench_model, format_text, parse_peers, resolve_model

    model = resolve_model(args.model, args.scale, args.point)
    settings = BenchSettings(
        threads=max(1, args.threads or os.cpu_count() or 1),
        repeat=max(1, args.repeat),
        slow_seconds=args.slow_seconds,
        peers=parse_peers(args.peers),
        memory=not args.no_memory,
        compile=not args.no_compile,
        ablation=args.ablation,
    )
    record = bench_model(model, settings, log=lambda line: print(line, file=sys.stderr)).to_json()
    print(json.dumps(record, indent=1) if args.json else format_text(record))
    return 0


# -- demo ------------------------------------------------------------------------------------


def _add_demo(commands: argparse._SubParsersAction) -> None:
    _command(commands, "demo", _demo, "Show what sod2 sees in a dynamic model shipped with it.")


def _demo(args: argparse.Namespace) -> int:
    from sod2.demo import run_demo

    run_demo(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
