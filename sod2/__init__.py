"""sod2: statically optimizing dynamic neural networks.

An ONNX model whose shapes depend on its input is imported into a typed IR (`sod2.ir`), analysed
ahead of time (`sod2.analysis`), optimized with what the analyses prove (`sod2.opt`) through a pass
manager (`sod2.passes`), and run by generated code (`sod2.backend`).
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

from sod2.errors import Sod2Error
from sod2.ir import Graph, Model, load, save, verify

if TYPE_CHECKING:
    from sod2.backend.runtime import CompiledModel, CompileOptions

__version__ = "0.1.0"

__all__ = ["Graph", "Model", "Sod2Error", "__version__", "compile", "load", "save", "verify"]


def compile(
    model: Model | str | PathLike[str],
    options: CompileOptions | None = None,
    **settings: Any,
) -> CompiledModel:
    """Compile `model` (a `Model` or an ONNX file) into a `CompiledModel` that runs any binding
    of its symbols: `sod2.compile("m.onnx").run({"x": array})`. `settings` are fields of
    `sod2.backend.runtime.CompileOptions` (fusion, sep, dmp, mvc, threads, ranges)."""
    from sod2.backend.runtime import CompileOptions, compile_model

    if options is None:
        options = CompileOptions(**settings)
    elif settings:
        raise Sod2Error("sod2.compile: give either options or keyword settings, not both")
    return compile_model(model, options)
