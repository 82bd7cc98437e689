"""Rebuilding a shipped model gives the same graph: op types in order (branches included), node
and `If` counts, interface names, dtypes and dims, initializer shapes, opsets.

Needs torch (skipped without it); slow, since it exports every model again.
"""

from __future__ import annotations

import onnx
import pytest

from sod2.zoo import get, names
from sod2.zoo.graph_facts import structure_signature

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_rebuild_gives_the_shipped_graph(name, tmp_path):
    shipped = onnx.load(str(get(name).path()))
    if shipped.producer_version != torch.__version__:
        pytest.skip(
            f"shipped file exported by torch {shipped.producer_version}, not {torch.__version__}"
        )
    rebuilt = onnx.load(str(get(name).build("small", tmp_path / f"{name}.onnx")))
    assert structure_signature(rebuilt) == structure_signature(shipped)
