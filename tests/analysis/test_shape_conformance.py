"""RDP on every ONNX node test case, static and with every data-input dim made symbolic: no
inferred dim, element type, rank, shape-tensor value or assumption may contradict execution."""

import pytest

from sod2.ops import catalogue, shape_rules
from sod2.testing.onnx_corpus import node_cases
from sod2.testing.shape_check import check_corpus_case

NODE_CASES = node_cases()


@pytest.mark.parametrize("variant", ["static", "symbolic"])
@pytest.mark.parametrize("case", NODE_CASES, ids=[c.name for c in NODE_CASES])
def test_inferred_shapes_agree_with_execution(case, variant):
    check = check_corpus_case(case, variant)
    if check is None:
        pytest.skip("the reference interpreter cannot run this case")
    assert check.wrong == []


def test_every_op_with_a_kernel_has_a_shape_rule():
    missing = sorted({op for (_, op) in catalogue()} - {op for (_, op) in shape_rules()})
    assert missing == []
