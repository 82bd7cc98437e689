"""The ONNX models that ship inside the `onnx` package, as test cases.

Two corpora:
- `data_cases()`: every `model.onnx` under `onnx/backend/test/data/` (light, simple,
  pytorch-converted, pytorch-operator, ...), with its first `test_data_set_*` when present;
- `node_cases()`: every case of `onnx.backend.test.case.node.collect_testcases()`, one small model
  per operator feature, with its inputs and expected outputs.

A case loads lazily, so listing the corpora is cheap and a test can pick cases by name.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Feeds = dict[str, Any]


@dataclass(frozen=True)
class CorpusCase:
    """One model of a corpus with (optionally) a set of inputs and expected outputs."""

    corpus: str
    name: str
    _load: Callable[[], tuple[onnx.ModelProto, list[tuple[Feeds, list[Any]]]]] = field(repr=False)

    @property
    def id(self) -> str:
        """`corpus/name`, unique over both corpora."""
        return f"{self.corpus}/{self.name}"

    def model(self) -> onnx.ModelProto:
        """A fresh copy of the model (callers may mutate it)."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self._load()[0])
        return proto

    def data_sets(self) -> list[tuple[Feeds, list[Any]]]:
        """(inputs by name, expected outputs in order) pairs; may be empty."""
        return self._load()[1]


def data_root() -> Path:
    """The folder of model files inside the installed onnx package."""
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def data_cases() -> list[CorpusCase]:
    """Every model file under `onnx/backend/test/data/`, sorted by path."""
    root = data_root()
    cases = []
    for path in sorted(root.rglob("*.onnx")):
        name = (
            str(path.parent.relative_to(root))
            if path.name == "model.onnx"
            else str(path.relative_to(root))
        )
        cases.append(
            CorpusCase("data", name, functools.cache(functools.partial(_load_file_case, path)))
        )
    return cases


def node_cases() -> list[CorpusCase]:
    """Every node test case that the onnx package generates, sorted by name."""
    return [
        CorpusCase("node", case.name, functools.cache(functools.partial(_node_case_data, case)))
        for case in sorted(_collect_node_testcases(), key=lambda c: c.name)
    ]


@functools.cache
def _collect_node_testcases() -> tuple[Any, ...]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def _node_case_data(case: Any) -> tuple[onnx.ModelProto, list[tuple[Feeds, list[Any]]]]:
    model: onnx.ModelProto = case.model
    names = _feed_names(model)
    data_sets = []
    for inputs, outputs in case.data_sets or []:
        feeds = {name: _as_value(value) for name, value in zip(names, inputs, strict=False)}
        data_sets.append((feeds, [_as_value(value) for value in outputs]))
    return model, data_sets


def _as_value(value: Any) -> Any:
    """Feeds as runtimes take them: arrays (not numpy scalars or TensorProtos), lists, None."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_as_value(item) for item in value]
    if value is None or isinstance(value, dict):
        return value
    return np.asarray(value)


def _load_file_case(path: Path) -> tuple[onnx.ModelProto, list[tuple[Feeds, list[Any]]]]:
    model = onnx.load(str(path))
    data_dir = path.parent / "test_data_set_0"
    if not data_dir.is_dir():
        return model, []
    names = _feed_names(model)
    types = {v.name: v.type for v in model.graph.input}
    inputs = {}
    for index, name in enumerate(names):
        file = data_dir / f"input_{index}.pb"
        if file.exists():
            inputs[name] = _read_value(file, types[name])
    outputs = [
        _read_value(file, model.graph.output[index].type)
        for index, file in enumerate(sorted(data_dir.glob("output_*.pb"), key=_pb_index))
    ]
    return model, [(inputs, outputs)]


def _pb_index(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def _feed_names(model: onnx.ModelProto) -> list[str]:
    """Graph inputs the caller must feed (initializer-backed inputs are optional)."""
    initialized = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initialized]


def _read_value(path: Path, type_proto: onnx.TypeProto) -> Any:
    data = path.read_bytes()
    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        sequence = onnx.SequenceProto()
        sequence.ParseFromString(data)
        return numpy_helper.to_list(sequence)
    if kind == "optional_type":
        optional = onnx.OptionalProto()
        optional.ParseFromString(data)
        return numpy_helper.to_optional(optional)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)
