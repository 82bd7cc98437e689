"""The shipped ONNX files compute what the PyTorch models compute, over the whole sweep.

Needs torch (skipped without it). The network is rebuilt from its seed, which reproduces the
shipped weights only with the torch version that exported the file; with another version the
comparison is skipped rather than failed.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from sod2.zoo import get, names
from tests.zoo.runs import canonical_rows, sweep_runs

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from sod2.zoo.export import build_network, run_network  # noqa: E402  (needs torch)

RTOL = 1e-4
ATOL = 1e-4


@functools.cache
def _producer_version(name: str) -> str:
    return onnx.load(str(get(name).path()), load_external_data=False).producer_version


@pytest.mark.parametrize("name", names())
def test_onnxruntime_matches_torch_over_the_sweep(name):
    if _producer_version(name) != torch.__version__:
        pytest.skip(
            f"shipped file exported by torch {_producer_version(name)}, not {torch.__version__}"
        )
    entry = get(name)
    network = build_network(entry, "small")
    for point, inputs, outputs in sweep_runs(name):
        expected = canonical_rows(name, tuple(run_network(network, entry, inputs)))
        actual = canonical_rows(name, outputs)
        for spec, got, want in zip(entry.outputs, actual, expected, strict=True):
            assert got.shape == want.shape, (point.label(), spec.name)
            if got.dtype.kind == "f":
                np.testing.assert_allclose(
                    got, want, rtol=RTOL, atol=ATOL, err_msg=f"{point.label()} {spec.name}"
                )
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{point.label()} {spec.name}")
