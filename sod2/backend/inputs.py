"""Inputs for a run: read from .npy files, or drawn at random for a binding of the symbols.

`random_inputs(model, binding, seed)` gives every model input an array of its declared element
type whose shape is the input's shape evaluated at `binding` (symbol name -> int). Floats are
standard normal, integers uniform in [0, 10), booleans fair coins. A symbol left unbound is an
error that names it and the inputs that use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sod2.errors import Sod2Error
from sod2.ir.dtypes import DType
from sod2.ir.graph import Tensor
from sod2.ir.model import Model
from sod2.ir.types import TensorType


def random_inputs(
    model: Model, binding: Mapping[str, int], *, seed: int = 0, only: set[str] | None = None
) -> dict[str, np.ndarray]:
    """Random arrays for the model's inputs (those named in `only`, when given)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in model.graph.inputs:
        if only is not None and tensor.name not in only:
            continue
        if tensor.const_value is not None:
            continue  # inputs with defaults keep them unless fed explicitly
        feeds[tensor.name] = _random_array(tensor, binding, rng)
    return feeds


def unbound_symbols(model: Model, binding: Mapping[str, int]) -> dict[str, list[str]]:
    """Symbols of the model's input shapes that `binding` leaves out, with the inputs using them."""
    missing: dict[str, list[str]] = {}
    for tensor in model.graph.inputs:
        if isinstance(tensor.type, TensorType) and tensor.const_value is None:
            for symbol in sorted(tensor.type.shape.symbols, key=lambda s: s.name):
                if symbol.name not in binding:
                    missing.setdefault(symbol.name, []).append(tensor.name)
    return missing


def _random_array(
    tensor: Tensor, binding: Mapping[str, int], rng: np.random.Generator
) -> np.ndarray:
    tensor_type = tensor.type
    if not isinstance(tensor_type, TensorType) or tensor_type.dtype is None:
        raise Sod2Error(
            f"input {tensor.name!r} has type {tensor_type}; random values need a tensor type"
        )
    if tensor_type.shape.dims is None:
        raise Sod2Error(f"input {tensor.name!r} has unknown rank; give it with --input")
    missing = sorted(s.name for s in tensor_type.shape.symbols if s.name not in binding)
    if missing:
        raise Sod2Error(
            f"input {tensor.name!r} {tensor_type} needs a value for {', '.join(missing)}: "
            f"bind it, e.g. --bind {missing[0]}=8"
        )
    shape = tensor_type.shape.evaluate(binding)
    dtype = tensor_type.dtype
    if dtype.is_float:
        return rng.standard_normal(shape).astype(dtype.numpy)
    if dtype.is_integer:
        return rng.integers(0, 10, shape).astype(dtype.numpy)
    if dtype is DType.BOOL:
        return rng.random(shape) < 0.5
    raise Sod2Error(f"input {tensor.name!r}: no random values for element type {dtype}")


def load_input_files(specs: list[str]) -> dict[str, np.ndarray]:
    """Parse `NAME=FILE.npy` items into arrays by input name."""
    feeds = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise Sod2Error(f"--input {spec!r}: expected NAME=FILE.npy")
        file = Path(path)
        if not file.is_file():
            raise Sod2Error(f"--input {name}: no such file {file}")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise Sod2Error(f"--input {name}: cannot read {file} as .npy: {error}") from error
    return feeds


def parse_bindings(specs: list[str]) -> dict[str, int]:
    """Parse `SYMBOL=INT` items into a binding."""
    binding = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            number = int(value)
        except ValueError:
            number = -1
        if not sep or not name or number < 1:
            raise Sod2Error(f"--bind {spec!r}: expected SYMBOL=POSITIVE_INT, e.g. N=4")
        binding[name.strip()] = number
    return binding
