"""onnxruntime runs every shipped model over its whole sweep, with outputs of the declared shapes
and dtypes and finite values. Needs no torch."""

from __future__ import annotations

import numpy as np
import pytest

from sod2.zoo import get, names
from tests.zoo.runs import sweep_runs


@pytest.mark.parametrize("name", names())
def test_outputs_have_the_declared_shapes_and_dtypes(name):
    entry = get(name)
    constants = entry.constants_at("small")
    for point, _, outputs in sweep_runs(name):
        data_dependent: dict[str, int] = {}
        for spec, output in zip(entry.outputs, outputs, strict=True):
            assert output.dtype == np.dtype(spec.dtype), (point.label(), spec.name)
            expected = spec.shape(point.values(), constants)
            assert output.ndim == len(expected), (point.label(), spec.name)
            for dim, extent, declared in zip(spec.dims, output.shape, expected, strict=True):
                if declared is None:
                    assert data_dependent.setdefault(dim, extent) == extent, (
                        point.label(),
                        spec.name,
                    )
                else:
                    assert extent == declared, (point.label(), spec.name, output.shape)


@pytest.mark.parametrize("name", names())
def test_outputs_are_finite(name):
    for point, _, outputs in sweep_runs(name):
        for output in outputs:
            if output.dtype.kind == "f":
                assert np.isfinite(output).all(), point.label()


def test_yolov6_detection_count_varies_over_the_sweep():
    counts = {outputs[0].shape[0] for _, _, outputs in sweep_runs("yolov6")}
    assert len(counts) > 1


def test_yolov6_detections_pass_the_threshold_in_decreasing_score_order():
    for _, _, (boxes, scores, _) in sweep_runs("yolov6"):
        assert np.all(np.diff(scores) <= 0)
        assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])


def test_ranet_takes_every_exit_over_the_sweep():
    exits = {int(outputs[1]) for _, _, outputs in sweep_runs("ranet")}
    assert exits == {0, 1, 2}


@pytest.mark.parametrize("name", ["skipnet", "dgnet", "convnet_aig", "blockdrop"])
def test_every_gate_decides_both_ways_over_the_sweep(name):
    decisions = np.stack([outputs[1] for _, _, outputs in sweep_runs(name)])
    assert decisions.any(axis=0).all() and (~decisions).any(axis=0).all()
