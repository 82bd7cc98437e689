"""Check RDP against execution: every inferred dim, evaluated at the run's binding, must equal the
shape that running the model produces.

`check_model_shapes(model, feeds)` runs RDP on `model` and the reference interpreter on `feeds`,
then compares, for every top-level tensor, the element type, the rank, each dim that RDP resolved
(an int or an expression over input symbols) and each known element of a shape-tensor value, and
checks that every assumption RDP recorded holds. It reports how many dims were resolved and lists
every wrong fact. Dims RDP could not resolve (fresh symbols) are counted, never "wrong".

`symbolic_variant(model, feeds)` prepares the harder test: every dim of every data input becomes a
named symbol, and small integer inputs (shape tensors) become constants, so RDP must follow
arithmetic on symbols instead of numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from sod2.analysis.facts import MAX_VALUE_ELEMENTS
from sod2.analysis.rdp import RDPResult, propagate
from sod2.backend.reference import run_reference
from sod2.ir.dims import evaluate_dim, symbol
from sod2.ir.dtypes import DType
from sod2.ir.model import Model
from sod2.ir.types import Shape, TensorType


@dataclass
class ShapeCheck:
    """What a comparison found: counts, and one message per wrong fact."""

    dims: int = 0
    resolved: int = 0
    wrong: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def resolved_share(self) -> float:
        """Resolved dims over all dims compared (1.0 when there were none)."""
        return self.resolved / self.dims if self.dims else 1.0


def symbolic_variant(model: Model, feeds: Mapping[str, Any]) -> tuple[Model, dict[str, Any]]:
    """`model` edited in place: data inputs get symbolic dims, shape-tensor inputs become constants.

    Returns the model and the feeds that are still inputs.
    """
    graph = model.graph
    remaining = dict(feeds)
    for tensor in list(graph.inputs):
        value = feeds.get(tensor.name)
        if not isinstance(value, np.ndarray) or not isinstance(tensor.type, TensorType):
            continue
        if _is_shape_tensor(value):
            constant = graph.add_constant(value, graph.fresh_name(tensor.name + "_value"))
            tensor.replace_all_uses_with(constant) if not tensor.is_graph_output else None
            if not tensor.has_uses():
                graph.remove_input(tensor)
                remaining.pop(tensor.name, None)
            continue
        dims = [symbol(f"{_identifier(tensor.name)}_d{axis}") for axis in range(value.ndim)]
        tensor.type = TensorType(tensor.type.dtype, Shape(dims))
    return model, remaining


def _is_shape_tensor(value: np.ndarray) -> bool:
    return value.dtype.kind in "iu" and value.ndim <= 1 and value.size <= MAX_VALUE_ELEMENTS


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else "t_" + cleaned


def binding_of(model: Model, feeds: Mapping[str, Any]) -> dict[str, int]:
    """Symbol name -> extent, read off the fed arrays."""
    binding: dict[str, int] = {}
    for tensor in model.graph.inputs:
        value = feeds.get(tensor.name)
        if not isinstance(value, np.ndarray) or not isinstance(tensor.type, TensorType):
            continue
        for dim, actual in zip(tensor.type.shape.dims or (), value.shape, strict=False):
            if isinstance(dim, sympy.Symbol):
                binding[dim.name] = actual
    return binding


def check_model_shapes(
    model: Model, feeds: Mapping[str, Any], *, executor: str = "reference"
) -> ShapeCheck:
    """Compare RDP's facts with one execution of `model` on `feeds` (see the module docstring);
    `executor` is "reference" (sod2's interpreter) or "onnxruntime"."""
    result = propagate(model)
    if executor == "onnxruntime":
        values = onnxruntime_intermediates(model, feeds, result)
    else:
        values = run_reference(model, feeds, intermediates=True).intermediates
    binding = binding_of(model, feeds)
    binding.update(
        {
            s.name: _bound(v, binding)
            for s, v in result.learned.items()
            if _bound(v, binding) is not None
        }
    )
    check = ShapeCheck(unsupported=list(result.unsupported))
    for tensor, fact in result.facts.items():
        actual = values.get(tensor.name)
        if tensor.graph is model.graph and isinstance(actual, np.ndarray):
            _compare(tensor.name, fact, actual, result, binding, check)
    for assumption in result.assumptions:
        if _evaluate(assumption.holds, binding) is False:
            check.wrong.append(f"assumption does not hold: {assumption.describe()}")
    return check


def _bound(value: Any, binding: Mapping[str, int]) -> int | None:
    try:
        return evaluate_dim(value, binding)
    except Exception:
        return None


def _evaluate(holds: sympy.Basic, binding: Mapping[str, int]) -> bool | None:
    names = {s.name for s in holds.free_symbols}
    if not names <= binding.keys():
        return None
    substituted = holds.xreplace({s: sympy.Integer(binding[s.name]) for s in holds.free_symbols})
    return bool(substituted) if substituted in (sympy.true, sympy.false) else None


def _compare(
    name: str,
    fact: Any,
    actual: np.ndarray,
    result: RDPResult,
    binding: Mapping[str, int],
    check: ShapeCheck,
) -> None:
    if (
        fact.dtype is not None
        and fact.dtype is not DType.STRING
        and fact.dtype.numpy != actual.dtype
    ):
        check.wrong.append(f"{name}: element type {fact.dtype}, ran as {actual.dtype}")
    dims = fact.shape.dims
    if dims is None:
        check.dims += actual.ndim
        return
    if len(dims) != actual.ndim:
        check.wrong.append(f"{name}: rank {len(dims)} {fact.shape}, ran as {list(actual.shape)}")
        return
    for axis, (dim, extent) in enumerate(zip(dims, actual.shape, strict=True)):
        check.dims += 1
        if not result.is_resolved(dim):
            continue
        check.resolved += 1
        value = _bound(dim, binding)
        if value != extent:
            check.wrong.append(
                f"{name}: dim {axis} is {dim} = {value}, ran as {extent} "
                f"(shape {fact.shape} vs {list(actual.shape)})"
            )
    if fact.value is not None:
        flat = actual.reshape(-1)
        if len(fact.value) != flat.size:
            check.wrong.append(f"{name}: value of {len(fact.value)} elements, ran with {flat.size}")
            return
        for index, element in enumerate(fact.value):
            if element is None or not result.is_resolved(element):
                continue
            value = _bound(element, binding)
            if value is not None and value != int(flat[index]):
                check.wrong.append(
                    f"{name}: element {index} is {element} = {value}, ran as {flat[index]}"
                )


def check_corpus_case(case: Any, variant: str) -> ShapeCheck | None:
    """Check RDP on one ONNX node test case, as given ("static") or with symbolic input dims
    ("symbolic"). None when the reference interpreter cannot run the case (no kernel)."""
    from sod2.errors import UnsupportedOpError
    from sod2.ir import load

    data_sets = case.data_sets()
    if not data_sets:
        return None
    feeds = data_sets[0][0]
    model = load(case.model(), check=False)
    if variant == "symbolic":
        model, feeds = symbolic_variant(model, feeds)
    try:
        return check_model_shapes(model, feeds)
    except UnsupportedOpError:
        return None


def onnxruntime_intermediates(
    model: Model, feeds: Mapping[str, Any], result: RDPResult | None = None
) -> dict[str, np.ndarray]:
    """Every top-level tensor's value when onnxruntime runs `model` (graph optimizations off,
    every node output exposed as a model output)."""
    session, feeds = _exposing_session(model, feeds, result)
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, feeds)
    found = dict(zip(names, values, strict=True))
    found.update({k: np.asarray(v) for k, v in feeds.items() if isinstance(v, np.ndarray)})
    return found


def onnxruntime_shapes(
    model: Model, feeds: Mapping[str, Any], result: RDPResult | None = None, *, chunk: int = 64
) -> dict[str, tuple[int, ...]]:
    """Every top-level tensor's shape when onnxruntime runs `model`, fetching `chunk` tensors per
    run so that a large model's intermediates never have to fit in memory all at once."""
    session, feeds = _exposing_session(model, feeds, result)
    names = [o.name for o in session.get_outputs()]
    shapes = {k: np.shape(v) for k, v in feeds.items()}
    for first in range(0, len(names), chunk):
        wanted = names[first : first + chunk]
        for name, value in zip(wanted, session.run(wanted, feeds), strict=True):
            shapes[name] = np.shape(value)
    return shapes


def _exposing_session(
    model: Model, feeds: Mapping[str, Any], result: RDPResult | None
) -> tuple[Any, dict[str, Any]]:
    """An onnxruntime session of `model` with every node output exposed, and its feeds."""
    import onnx
    import onnxruntime

    from sod2.ir.onnx_export import to_onnx

    result = result or propagate(model)
    proto = to_onnx(model)
    declared = {o.name for o in proto.graph.output}
    for node in model.graph.nodes:
        for tensor in node.outputs:
            fact = result.facts.get(tensor) if tensor is not None else None
            if tensor is None or tensor.name in declared or fact is None or fact.dtype is None:
                continue
            if isinstance(tensor.type, TensorType) or tensor.type is None:
                proto.graph.output.append(
                    onnx.helper.make_tensor_value_info(tensor.name, fact.dtype.onnx, None)
                )
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inputs = {i.name for i in session.get_inputs()}
    return session, {k: v for k, v in feeds.items() if k in inputs}
