"""Property: for random bindings of a zoo model's symbols within their ranges, RDP's facts agree
with execution (the cheaper models; the sweep test covers every model)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sod2.ir import load
from sod2.testing.shape_check import check_model_shapes
from sod2.testing.strategies import bindings
from sod2.zoo import get

CHEAP = ["codebert", "sd_text_encoder", "sam_prompt_encoder", "skipnet", "ranet"]


@pytest.mark.parametrize("name", CHEAP)
def test_random_bindings(name):
    entry = get(name)
    model = load(entry.path())

    @settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
    @given(bindings(entry), st.integers(0, 2**16))
    def check(binding, seed):
        feeds = entry.make_inputs(binding, seed=seed)
        assert check_model_shapes(model, feeds).wrong == []

    check()
