"""Running shipped zoo models in onnxruntime over their sweeps, cached once per test process."""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort

from sod2.zoo import get
from sod2.zoo.spec import Arrays, SweepPoint


@functools.cache
def session(name: str) -> ort.InferenceSession:
    """An onnxruntime session on the shipped small file of `name` (2 threads, CPU)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(get(name).path()), options, providers=["CPUExecutionProvider"])


@functools.cache
def sweep_runs(name: str) -> tuple[tuple[SweepPoint, Arrays, tuple[np.ndarray, ...]], ...]:
    """Every sweep point of `name` with its inputs and onnxruntime's outputs."""
    runner = session(name)
    return tuple(
        (point, inputs, tuple(runner.run(None, inputs)))
        for point, inputs in get(name).sweep_inputs()
    )


def canonical_rows(entry_name: str, outputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Outputs whose first dim is data-dependent (detections), reordered jointly into a canonical
    row order, so that implementations that order tied scores differently compare equal."""
    entry = get(entry_name)
    constants = entry.constants_at("small")
    dynamic = [
        index
        for index, spec in enumerate(entry.outputs)
        if spec.dims
        and isinstance(spec.dims[0], str)
        and spec.dims[0].isidentifier()
        and spec.dims[0] not in entry.symbol_names
        and spec.dims[0] not in constants
    ]
    if not dynamic:
        return outputs
    columns = [
        np.round(outputs[i].reshape(len(outputs[i]), -1).astype(np.float64), 3) for i in dynamic
    ]
    keys = np.concatenate(columns, axis=1)
    order = np.lexsort(keys.T[::-1])
    return tuple(
        output[order] if index in dynamic else output for index, output in enumerate(outputs)
    )
