"""What a zoo entry is: a dynamic model's interface, the symbols its shapes depend on, and its sweep.

A `ZooModel` describes one exported network without needing torch: its inputs and outputs as
`TensorSpec`s whose dims are ints, symbol names (`"N"`, `"H"`), per-scale constant names (`"C"`)
or arithmetic over those (`"floor(H/8)"`, `"P + 2*B"`); the range of every symbol; a sweep of 5 to
8 `SweepPoint`s (a binding of every symbol plus the seed of the input generator) that together
take every branch of every `If` in the model; and a generator of valid inputs for a binding.

Invariants, checked when an entry is created:
- every symbol named by an input dim has a range, and every symbol with a range is used by an input;
- every sweep point and the export example bind exactly the symbols, inside their ranges;
- the export example binds every symbol to at least 2 (torch specializes sizes 0 and 1);
- an output dim that is a bare name which is neither a symbol nor a constant is data-dependent
  (e.g. the number of detections `D`): any extent, the same wherever it appears in one run.

Torch is imported only by `build` (through `sod2.zoo.export`), never by this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sod2.ir.dims import evaluate_dim, parse_dim
from sod2.zoo.errors import InvalidBindingError, ModelNotBuiltError, ZooError
from sod2.zoo.locations import SCALES, check_scale, model_path

Binding = Mapping[str, int]
Arrays = dict[str, np.ndarray]
InputMaker = Callable[[Binding, np.random.Generator, Mapping[str, int]], Arrays]
"""(binding, random generator, the scale's constants) -> one array per input name."""
NetworkFactory = Callable[[str, Sequence[Arrays]], Any]
"""(scale, calibration inputs) -> a torch module in eval mode; imports torch itself."""

SWEEP_SIZES = range(5, 9)


@dataclass(frozen=True, slots=True)
class SymbolRange:
    """A symbol an input dim is named by, and the closed range of extents it may take."""

    name: str
    low: int
    high: int
    meaning: str

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise ZooError(
                f"symbol {self.name}: empty or non-positive range [{self.low}, {self.high}]"
            )

    def contains(self, value: int) -> bool:
        """True when `value` lies in `[low, high]`."""
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: its name, numpy dtype name and dims (see the module docstring)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]
    meaning: str

    def shape(self, binding: Binding, constants: Mapping[str, int]) -> tuple[int | None, ...]:
        """The concrete shape at `binding`; None stands for a data-dependent extent."""
        return tuple(resolve_dim(dim, binding, constants) for dim in self.dims)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One binding of every symbol, and the seed the input generator uses at that binding."""

    binding: tuple[tuple[str, int], ...]
    seed: int

    @staticmethod
    def of(seed: int, **binding: int) -> SweepPoint:
        """`SweepPoint.of(3, H=224, W=320)`: the point with that seed and binding."""
        return SweepPoint(tuple(sorted(binding.items())), seed)

    def values(self) -> dict[str, int]:
        """The binding as a dict from symbol name to extent."""
        return dict(self.binding)

    def label(self) -> str:
        """A short text such as `H=224 W=320 seed=3`."""
        return " ".join([*(f"{name}={value}" for name, value in self.binding), f"seed={self.seed}"])


def resolve_dim(dim: int | str, binding: Binding, constants: Mapping[str, int]) -> int | None:
    """The extent of one spec dim at `binding`; None when it names a data-dependent extent."""
    if isinstance(dim, int):
        return dim
    if dim in binding:
        return binding[dim]
    if dim in constants:
        return constants[dim]
    if dim.isidentifier():
        return None
    return evaluate_dim(parse_dim(dim), {**constants, **binding})


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: metadata, input generator, and how to build its ONNX file."""

    name: str
    family: str
    summary: str
    source: str
    dynamism: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    symbols: tuple[SymbolRange, ...]
    sweep: tuple[SweepPoint, ...]
    example: SweepPoint
    constants: Mapping[str, Mapping[str, int]]
    input_maker: InputMaker = field(repr=False)
    network_factory: NetworkFactory = field(repr=False)
    if_counts: Mapping[str, int] = field(default_factory=lambda: {"small": 0, "paper": 0})

    def __post_init__(self) -> None:
        self._check_symbols()
        self._check_constants()
        if len(self.sweep) not in SWEEP_SIZES:
            raise ZooError(f"{self.name}: a sweep has 5 to 8 points, not {len(self.sweep)}")
        for point in (*self.sweep, self.example):
            self.check_binding(point.values())
        if any(value < 2 for _, value in self.example.binding):
            raise ZooError(f"{self.name}: the export example must bind every symbol to >= 2")

    def _check_symbols(self) -> None:
        used = {dim for spec in self.inputs for dim in spec.dims if isinstance(dim, str)}
        used = {dim for dim in used if not self._is_constant(dim)}
        declared = {symbol.name for symbol in self.symbols}
        if used != declared:
            raise ZooError(
                f"{self.name}: input dims use symbols {sorted(used)} but ranges are given for {sorted(declared)}"
            )

    def _check_constants(self) -> None:
        if set(self.constants) != set(SCALES):
            raise ZooError(f"{self.name}: constants must be given for each scale {SCALES}")
        names = {frozenset(values) for values in self.constants.values()}
        if len(names) != 1:
            raise ZooError(f"{self.name}: every scale must define the same constants")

    def expected_if_count(self, scale: str = "small") -> int:
        """How many `If` nodes (subgraphs included) the model has at `scale`."""
        return self.if_counts[check_scale(scale)]

    def _is_constant(self, name: str) -> bool:
        return name in self.constants["small"]

    @property
    def symbol_names(self) -> tuple[str, ...]:
        """The names of the symbols, in declaration order."""
        return tuple(symbol.name for symbol in self.symbols)

    def constants_at(self, scale: str) -> Mapping[str, int]:
        """The fixed extents (vocabulary size, embedding width...) of this model at `scale`."""
        return self.constants[check_scale(scale)]

    def check_binding(self, binding: Binding) -> None:
        """Raise `InvalidBindingError` unless `binding` gives every symbol a value in its range."""
        missing = [name for name in self.symbol_names if name not in binding]
        unknown = sorted(set(binding) - set(self.symbol_names))
        if missing or unknown:
            raise InvalidBindingError(
                f"{self.name}: binding {dict(binding)} must bind exactly {list(self.symbol_names)}"
                f" (missing {missing}, unknown {unknown})"
            )
        for symbol in self.symbols:
            if not symbol.contains(binding[symbol.name]):
                raise InvalidBindingError(
                    f"{self.name}: {symbol.name}={binding[symbol.name]} is outside [{symbol.low}, {symbol.high}]"
                )

    def make_inputs(self, binding: Binding, seed: int = 0, scale: str = "small") -> Arrays:
        """Valid inputs at `binding`: arrays of the spec's shapes and dtypes, reproducible by `seed`."""
        self.check_binding(binding)
        constants = self.constants_at(scale)
        arrays = self.input_maker(binding, np.random.default_rng(seed), constants)
        for spec in self.inputs:
            self._check_array(spec, arrays.get(spec.name), binding, constants)
        return {spec.name: arrays[spec.name] for spec in self.inputs}

    def _check_array(
        self,
        spec: TensorSpec,
        array: np.ndarray | None,
        binding: Binding,
        constants: Mapping[str, int],
    ) -> None:
        expected = spec.shape(binding, constants)
        if array is None or array.shape != expected or array.dtype != np.dtype(spec.dtype):
            got = "nothing" if array is None else f"{array.dtype}{list(array.shape)}"
            raise ZooError(
                f"{self.name}: the input generator made {got} for {spec.name}, expected {spec.dtype}{list(expected)}"
            )

    def sweep_inputs(self, scale: str = "small") -> list[tuple[SweepPoint, Arrays]]:
        """Every sweep point with the inputs the generator makes for it."""
        return [
            (point, self.make_inputs(point.values(), point.seed, scale)) for point in self.sweep
        ]

    def path(self, scale: str = "small") -> Path:
        """Where this model's ONNX file at `scale` lives (shipped for small, cache for paper)."""
        return model_path(self.name, scale)

    def existing_path(self, scale: str = "small") -> Path:
        """`path(scale)`, or `ModelNotBuiltError` saying how to build the file if it is missing."""
        location = self.path(scale)
        if not location.is_file():
            flag = "" if scale == "small" else f" --scale {scale}"
            raise ModelNotBuiltError(
                f"{self.name} ({scale}) is not built yet ({location}); run: sod2 zoo build {self.name}{flag}"
            )
        return location

    def build(self, scale: str = "small", out_path: str | Path | None = None) -> Path:
        """Export this model at `scale` to ONNX (default location: `path(scale)`); needs torch."""
        from sod2.zoo.export import export_model

        target = Path(out_path) if out_path is not None else self.path(scale)
        return export_model(self, check_scale(scale), target)
