"""The `sod2 zoo` command: list the zoo, build a model, print where its ONNX file is.

    sod2 zoo list                                 models, symbols and ranges, sweeps, file sizes
    sod2 zoo build NAME [--scale S] [-o PATH]     export NAME to ONNX (needs torch)
    sod2 zoo path NAME [--scale S]                the ONNX file of NAME (must exist)

`add_zoo_parser(subparsers)` adds the command to the main parser; every handler takes the parsed
arguments, prints to stdout and returns the exit status. Errors are `Sod2Error`s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sod2.zoo.graph_facts import graph_facts
from sod2.zoo.locations import SCALES
from sod2.zoo.registry import REGISTRY, get
from sod2.zoo.spec import ZooModel


def add_zoo_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `zoo` with its `list`, `build` and `path` subcommands to `subparsers`."""
    zoo = subparsers.add_parser(
        "zoo", help="The dynamic model zoo.", description="The dynamic model zoo."
    )
    commands = zoo.add_subparsers(title="zoo commands", metavar="ZOO_COMMAND")
    zoo.set_defaults(handler=lambda args: _usage(zoo))
    listing = commands.add_parser("list", help="List the models, their symbols, sweeps and files.")
    listing.set_defaults(handler=list_models)
    build = commands.add_parser("build", help="Export a model to ONNX (needs torch).")
    build.add_argument("name", help="model name (see `sod2 zoo list`)")
    build.add_argument("--scale", choices=SCALES, default="small", help="small (shipped) or paper")
    build.add_argument("-o", "--output", type=Path, default=None, help="where to write the file")
    build.set_defaults(handler=build_model)
    path = commands.add_parser("path", help="Print where a model's ONNX file is.")
    path.add_argument("name", help="model name (see `sod2 zoo list`)")
    path.add_argument("--scale", choices=SCALES, default="small", help="small (shipped) or paper")
    path.set_defaults(handler=print_path)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def list_models(args: argparse.Namespace) -> int:
    """Print every model with its symbols, sweep and the files present at each scale."""
    for entry in REGISTRY.values():
        print(describe(entry))
        print()
    return 0


def describe(entry: ZooModel) -> str:
    """A few lines about one model: summary, inputs, symbol ranges, sweep, files."""
    lines = [f"{entry.name}  [{entry.family}, {entry.dynamism}]  {entry.summary}"]
    for spec in entry.inputs:
        dims = ", ".join(str(dim) for dim in spec.dims)
        lines.append(f"  input  {spec.name}: {spec.dtype}[{dims}]")
    for symbol in entry.symbols:
        lines.append(f"  symbol {symbol.name} in [{symbol.low}, {symbol.high}]: {symbol.meaning}")
    lines.append("  sweep  " + "; ".join(point.label() for point in entry.sweep))
    lines.append("  files  " + "; ".join(_file_status(entry, scale) for scale in SCALES))
    return "\n".join(lines)


def _file_status(entry: ZooModel, scale: str) -> str:
    """Size of the file at `scale`; node and `If` counts for shipped files only, since parsing a
    paper-scale file (up to 500 MB) just to count its nodes would make listing slow."""
    path = entry.path(scale)
    if not path.is_file():
        return f"{scale}: not built"
    if scale != "small":
        return f"{scale}: {path.stat().st_size / 1e6:.2f} MB"
    facts = graph_facts(path)
    return f"{scale}: {facts.file_bytes / 1e6:.2f} MB, {facts.nodes} nodes, {facts.if_count} If"


def build_model(args: argparse.Namespace) -> int:
    """Export the model at the requested scale and print the file written."""
    path = get(args.name).build(args.scale, args.output)
    facts = graph_facts(path)
    print(f"{path}: {facts.nodes} nodes, {facts.if_count} If, {facts.file_bytes / 1e6:.2f} MB")
    return 0


def print_path(args: argparse.Namespace) -> int:
    """Print the path of the model's ONNX file; an error says how to build it if missing."""
    print(get(args.name).existing_path(args.scale))
    return 0
