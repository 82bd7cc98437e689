"""Every branch of every `If` of every shipped model is executed somewhere in its sweep, as
observed in onnxruntime's profile of the executed nodes (see `branch_coverage`). Needs no torch."""

from __future__ import annotations

import onnx
import pytest

from sod2.zoo import get, names
from tests.zoo.branch_coverage import BRANCHES, branches_taken

CONTROL_FLOW = [name for name in names() if get(name).expected_if_count("small") > 0]


@pytest.mark.parametrize("name", CONTROL_FLOW)
def test_sweep_takes_every_branch_of_every_if(name):
    entry = get(name)
    model = onnx.load(str(entry.path()))
    taken = branches_taken(model, [inputs for _, inputs in entry.sweep_inputs()])
    assert len(taken) == entry.expected_if_count("small")
    missing = {
        path: set(BRANCHES) - sides for path, sides in taken.items() if sides != set(BRANCHES)
    }
    assert not missing, f"branches never taken over the sweep: {missing}"


def test_one_input_cannot_take_both_branches_of_an_if():
    entry = get("convnet_aig")
    point = entry.sweep[0]
    taken = branches_taken(
        onnx.load(str(entry.path())), [entry.make_inputs(point.values(), point.seed)]
    )
    assert all(len(sides) == 1 for sides in taken.values())


def test_nested_ifs_are_observed_inside_their_parent_branch():
    entry = get("ranet")
    taken = branches_taken(
        onnx.load(str(entry.path())), [inputs for _, inputs in entry.sweep_inputs()]
    )
    nested = [path for path in taken if ".else_branch/" in path]
    assert len(nested) == 1 and taken[nested[0]] == set(BRANCHES)
