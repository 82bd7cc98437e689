"""The registry and metadata: names, lookups, symbol ranges, sweeps, input generators."""

from __future__ import annotations

import numpy as np
import pytest

from sod2.errors import Sod2Error
from sod2.zoo import REGISTRY, SCALES, get, names
from sod2.zoo.errors import InvalidBindingError, UnknownModelError, UnknownScaleError

PAPER_MODELS = {
    "StableDiffusion",
    "SegmentAnything",
    "Conformer",
    "CodeBERT",
    "YOLO-V6",
    "SkipNet",
    "DGNet",
    "ConvNet-AIG",
    "RaNet",
    "BlockDrop",
}


def test_zoo_covers_the_ten_paper_models():
    assert {entry.family for entry in REGISTRY.values()} == PAPER_MODELS


def test_get_unknown_name_lists_known_models():
    with pytest.raises(UnknownModelError) as error:
        get("resnet")
    assert isinstance(error.value, Sod2Error)
    assert "skipnet" in str(error.value) and "codebert" in str(error.value)


def test_unknown_scale_is_rejected():
    with pytest.raises(UnknownScaleError, match="huge"):
        get("skipnet").path("huge")


@pytest.mark.parametrize("name", names())
def test_sweep_has_5_to_8_points_inside_the_ranges(name):
    entry = get(name)
    assert 5 <= len(entry.sweep) <= 8
    for point in entry.sweep:
        values = point.values()
        assert set(values) == set(entry.symbol_names)
        for symbol in entry.symbols:
            assert symbol.low <= values[symbol.name] <= symbol.high


@pytest.mark.parametrize("name", names())
def test_sweep_moves_every_symbol(name):
    entry = get(name)
    for symbol in entry.symbol_names:
        assert len({point.values()[symbol] for point in entry.sweep}) > 1, symbol


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("scale", SCALES)
def test_inputs_match_their_specs_at_both_scales(name, scale):
    entry = get(name)
    point = entry.sweep[0]
    inputs = entry.make_inputs(point.values(), point.seed, scale)
    constants = entry.constants_at(scale)
    for spec in entry.inputs:
        assert inputs[spec.name].shape == spec.shape(point.values(), constants)
        assert inputs[spec.name].dtype == np.dtype(spec.dtype)


@pytest.mark.parametrize("name", names())
def test_inputs_are_reproducible_by_seed(name):
    entry = get(name)
    point = entry.sweep[-1]
    first = entry.make_inputs(point.values(), point.seed)
    again = entry.make_inputs(point.values(), point.seed)
    other = entry.make_inputs(point.values(), point.seed + 1)
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert any(not np.array_equal(first[key], other[key]) for key in first)


def test_binding_outside_range_is_rejected():
    with pytest.raises(InvalidBindingError, match="L=600"):
        get("codebert").make_inputs({"N": 1, "L": 600})


def test_binding_missing_a_symbol_is_rejected():
    with pytest.raises(InvalidBindingError, match="missing"):
        get("yolov6").make_inputs({"H": 320})


@pytest.mark.parametrize("name", ["codebert", "sd_text_encoder"])
@pytest.mark.parametrize("scale", SCALES)
def test_token_ids_stay_inside_the_vocabulary(name, scale):
    entry = get(name)
    vocab = entry.constants_at(scale)["vocab"]
    for point in entry.sweep:
        ids = entry.make_inputs(point.values(), point.seed, scale)["input_ids"]
        assert ids.min() >= 0 and ids.max() < vocab


def test_codebert_mask_marks_exactly_the_non_padding_tokens():
    entry = get("codebert")
    for point in entry.sweep:
        inputs = entry.make_inputs(point.values(), point.seed)
        assert np.array_equal(inputs["attention_mask"] == 0, inputs["input_ids"] == 1)
        assert inputs["attention_mask"][0].all()


def test_conformer_lengths_fit_the_padded_batch():
    entry = get("conformer")
    for point in entry.sweep:
        inputs = entry.make_inputs(point.values(), point.seed)
        lengths = inputs["feature_lengths"]
        assert lengths.max() == point.values()["T"] and lengths.min() >= 1
