"""Every ONNX node test case runs through the reference interpreter (sod2.testing.conformance).

A case must pass, or stop with UnsupportedOpError (its op, type or attribute is outside the
catalogue). Known failures are listed below with their reason; a listed case that starts passing
fails this test too, so the list stays true.
"""

import pytest

from sod2.testing.conformance import case_ops, run_case
from sod2.testing.onnx_corpus import node_cases

NODE_CASES = node_cases()
OPS = case_ops(NODE_CASES)

# case name -> why it fails (empty: every supported case passes)
EXPECTED_FAILURES: dict[str, str] = {}


@pytest.mark.parametrize("case", NODE_CASES, ids=[c.name for c in NODE_CASES])
def test_conformance_case(case):
    result = run_case(case, OPS[case.name])
    if case.name in EXPECTED_FAILURES:
        assert result.status == "fail", f"{case.name} now {result.status}: update EXPECTED_FAILURES"
        return
    assert result.status in ("pass", "unsupported"), result.reason
    if result.status == "unsupported":
        assert "catalogue" in result.reason or "node" in result.reason, result.reason
