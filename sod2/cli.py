"""The `sod2` command.

    sod2 inspect MODEL [--ir]                 what sod2 sees in a model
    sod2 passes                               registered passes and their options
    sod2 optimize MODEL -o OUT --pipeline P   run a pipeline and write the result
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
    _add_demo(commands)
    return parser


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
    sub.add_argument("--no-check", action="store_true", help="skip onnx.checker on load")


def _inspect(args: argparse.Namespace) -> int:
    model = load(args.model, check=not args.no_check)
    print(model_summary(model, str(args.model)))
    if args.ir:
        print()
        print(format_model(model))
    return 0


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


# -- demo ------------------------------------------------------------------------------------


def _add_demo(commands: argparse._SubParsersAction) -> None:
    _command(commands, "demo", _demo, "Show what sod2 sees in a dynamic model shipped with it.")


def _demo(args: argparse.Namespace) -> int:
    from sod2.demo import run_demo

    run_demo(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
