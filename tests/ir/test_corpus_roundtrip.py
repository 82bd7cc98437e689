"""Round trip of every model that ships inside the onnx package (see sod2.testing.roundtrip).

Each case: import, verify(), export, onnx.checker; where onnxruntime runs the original, the export
must give the same outputs. `python -m sod2.testing.roundtrip` prints the counts.
"""

import pytest

from sod2.testing.onnx_corpus import data_cases, node_cases
from sod2.testing.roundtrip import check_roundtrip

CASES = [*data_cases(), *node_cases()]

# Cases expected to fail, with the reason. Empty: every case round-trips.
EXPECTED_FAILURES: dict[str, str] = {}


def test_both_corpora_are_present():
    corpora = {case.corpus for case in CASES}
    assert corpora == {"data", "node"}
    assert sum(case.corpus == "data" for case in CASES) >= 100
    assert sum(case.corpus == "node" for case in CASES) >= 1500


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_roundtrip(case):
    if case.id in EXPECTED_FAILURES:
        pytest.xfail(EXPECTED_FAILURES[case.id])
    result = check_roundtrip(case)
    if result.status == "skipped":
        pytest.skip(result.reason)
    assert result.status == "pass", result.reason
