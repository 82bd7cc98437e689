"""Round trip of ONNX models through sod2's IR, checked against onnxruntime.

For one model: import (after `onnx.checker` accepts the original), `verify()`, export,
`onnx.checker` on the export; then, where onnxruntime runs the original on the case's inputs, the
export must run too and give the same outputs (same dtypes and shapes; floats within 1e-5).

`python -m sod2.testing.roundtrip` runs both corpora and prints the counts and every failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from sod2.errors import ModelLoadError
from sod2.ir import load, to_onnx, verify
from sod2.testing.onnx_corpus import CorpusCase, Feeds, data_cases, node_cases


@dataclass(frozen=True)
class RoundTrip:
    """What happened to one case: `status` is pass, fail or skipped (original not valid ONNX)."""

    case_id: str
    status: str
    compared: bool
    reason: str = ""


def check_roundtrip(case: CorpusCase, *, compare: bool = True) -> RoundTrip:
    """Round-trip one case; `compare` also runs onnxruntime on the original and the export."""
    original = case.model()
    try:
        onnx.checker.check_model(original)
    except Exception as error:  # outside the promise: only checker-valid models are in scope
        return RoundTrip(case.id, "skipped", False, f"onnx.checker rejects the original: {error}")
    try:
        model = load(original, check=False)
        verify(model)
        exported = to_onnx(model)
        onnx.checker.check_model(exported)
    except Exception as error:
        return RoundTrip(case.id, "fail", False, f"{type(error).__name__}: {error}")
    if not compare:
        return RoundTrip(case.id, "pass", False, "outputs not compared")
    return _compare_with_onnxruntime(case, original, exported)


def _compare_with_onnxruntime(
    case: CorpusCase, original: onnx.ModelProto, exported: onnx.ModelProto
) -> RoundTrip:
    data_sets = case.data_sets()
    if not data_sets:
        return RoundTrip(case.id, "pass", False, "the case has no inputs to run")
    feeds = data_sets[0][0]
    try:
        expected = run_onnxruntime(original, feeds)
    except Exception as error:
        reason = (
            str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        )
        return RoundTrip(case.id, "pass", False, f"onnxruntime cannot run the original: {reason}")
    try:
        actual = run_onnxruntime(exported, feeds)
    except Exception as error:
        return RoundTrip(
            case.id, "fail", True, f"onnxruntime runs the original but not the export: {error}"
        )
    mismatch = outputs_mismatch(expected, actual)
    if mismatch:
        return RoundTrip(case.id, "fail", True, mismatch)
    return RoundTrip(case.id, "pass", True)


def run_onnxruntime(model: onnx.ModelProto, feeds: Feeds) -> list[Any]:
    """Run `model` with onnxruntime on one thread; returns the outputs in order."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def outputs_mismatch(
    expected: list[Any], actual: list[Any], *, rtol: float = 1e-5, atol: float = 1e-6
) -> str:
    """Why two output lists differ ("" when they agree)."""
    if len(expected) != len(actual):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        problem = _value_mismatch(want, got, rtol, atol)
        if problem:
            return f"output {index}: {problem}"
    return ""


def _value_mismatch(want: Any, got: Any, rtol: float, atol: float) -> str:
    if want is None or got is None:
        return (
            ""
            if want is None and got is None
            else f"got {type(got).__name__}, expected {type(want).__name__}"
        )
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return "sequence outputs differ in length or kind"
        for want_item, got_item in zip(want, got, strict=True):
            problem = _value_mismatch(want_item, got_item, rtol, atol)
            if problem:
                return problem
        return ""
    want, got = np.asarray(want), np.asarray(got)
    if want.dtype != got.dtype or want.shape != got.shape:
        return f"got {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
    if want.dtype.kind not in "biufcOUSM":  # ml_dtypes floats: bfloat16, float8 ...
        want, got = want.astype(np.float32), got.astype(np.float32)
    if want.dtype.kind in "fc":
        close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        if not close.all():
            worst = float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            return f"{int((~close).sum())} values differ (max abs difference {worst:g})"
        return ""
    if not np.array_equal(want, got):
        return f"{int((want != got).sum())} values differ"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run the round trip over both corpora and print counts and failures."""
    parser = argparse.ArgumentParser(prog="python -m sod2.testing.roundtrip", description=__doc__)
    parser.add_argument("--no-compare", action="store_true", help="skip onnxruntime comparisons")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [
        check_roundtrip(case, compare=not args.no_compare)
        for case in [*data_cases(), *node_cases()]
    ]
    for corpus in ("data", "node"):
        subset = [r for r in results if r.case_id.startswith(corpus + "/")]
        counts = Counter(r.status for r in subset)
        compared = sum(r.compared for r in subset)
        print(
            f"{corpus}: {len(subset)} cases, {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['skipped']} skipped; outputs compared with onnxruntime on {compared}"
        )
    for result in results:
        if result.status != "pass":
            print(f"  {result.status}: {result.case_id}: {result.reason}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModelLoadError as error:
        sys.exit(str(error))
