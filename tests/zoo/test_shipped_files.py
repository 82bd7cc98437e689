"""The shipped small ONNX files: present, small, valid, with the declared symbolic interface."""

from __future__ import annotations

import onnx
import pytest

from sod2.ir import load, verify
from sod2.zoo import get, names
from sod2.zoo.graph_facts import graph_facts, value_dims

MAX_SHIPPED_BYTES = 2 * 1024 * 1024


@pytest.mark.parametrize("name", names())
def test_shipped_file_is_at_most_2_mb(name):
    assert graph_facts(get(name).path("small")).file_bytes <= MAX_SHIPPED_BYTES


@pytest.mark.parametrize("name", names())
def test_shipped_file_passes_the_onnx_checker(name):
    onnx.checker.check_model(onnx.load(str(get(name).path())), full_check=True)


@pytest.mark.parametrize("name", names())
def test_inputs_carry_the_metadata_symbols_as_dim_params(name):
    entry = get(name)
    constants = entry.constants_at("small")
    graph_inputs = {
        value.name: value_dims(value) for value in onnx.load(str(entry.path())).graph.input
    }
    for spec in entry.inputs:
        expected = tuple(
            constants.get(dim, dim) if isinstance(dim, str) else dim for dim in spec.dims
        )
        assert graph_inputs[spec.name] == expected


@pytest.mark.parametrize("name", names())
def test_outputs_are_named_as_declared(name):
    entry = get(name)
    outputs = [value.name for value in onnx.load(str(entry.path())).graph.output]
    assert outputs == [spec.name for spec in entry.outputs]


@pytest.mark.parametrize("name", names())
def test_if_count_is_as_declared(name):
    entry = get(name)
    assert graph_facts(entry.path()).if_count == entry.expected_if_count("small")


@pytest.mark.parametrize("name", ["skipnet", "dgnet", "convnet_aig", "ranet", "blockdrop"])
def test_control_flow_models_have_if_nodes(name):
    assert graph_facts(get(name).path()).if_count >= 2


@pytest.mark.parametrize("name", names())
def test_sod2_ir_imports_and_verifies(name):
    model = load(get(name).path())
    verify(model)
    assert [tensor.name for tensor in model.graph.inputs] == [
        spec.name for spec in get(name).inputs
    ]
