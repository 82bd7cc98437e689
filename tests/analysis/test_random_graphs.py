"""Property: on random dynamic graphs and random bindings, RDP's facts agree with execution."""

from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.testing.strategies import assert_shapes_agree, dynamic_graphs


@settings(max_examples=60)
@given(dynamic_graphs(), st.data())
def test_rdp_agrees_with_execution_on_random_graphs(case, data):
    binding = data.draw(case.bindings())
    assert_shapes_agree(case.model, case.inputs(binding))
