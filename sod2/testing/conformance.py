"""ONNX conformance: run every node test case of the onnx package through the reference interpreter.

Each case ends in one of three states:
- pass: every output matches the expected value (onnx's own tolerance: rtol 1e-3, atol 1e-7);
- fail: a wrong value, or any error other than the one below;
- unsupported: the case uses an operator, type or attribute outside sod2's catalogue and stopped
  with `UnsupportedOpError`, the clear error promised for those.

ONNX leaves the cast of a float outside an integer type's range undefined; the expected outputs
of such cases are whatever the generating library (ml_dtypes, numpy) did in the version
installed, which changes between releases. In a case made only of Cast and CastLike nodes, from
a float input to an integer output, those elements are left out of the comparison
(`undefined_casts`); every element in range is compared.

A case is attributed to the operator it tests: the single op of its model, or, for `_expanded`
cases (an op's function body written out as primitive ops), the op it expands. A case is "in the
catalogue" when every op its model uses has a kernel.

`sod2 conformance [--json]` and `write_report()` (docs/conformance.md) use this module.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import ml_dtypes
import numpy as np
import onnx

from sod2.backend.reference import run_reference
from sod2.errors import Sod2Error, UnsupportedOpError
from sod2.ir import load
from sod2.ir.model import STANDARD_DOMAINS
from sod2.ops import lookup
from sod2.testing.onnx_corpus import CorpusCase, node_cases
from sod2.testing.roundtrip import outputs_mismatch

RTOL, ATOL = 1e-3, 1e-7


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one conformance case."""

    case: str
    op: str
    status: str  # "pass", "fail" or "unsupported"
    in_catalogue: bool
    reason: str = ""


def run_case(case: CorpusCase, op: str, *, compiled: bool = False) -> CaseResult:
    """Run one node test case through the reference interpreter (or, `compiled`, through the
    compiled runtime of `sod2.backend.runtime`) and compare its outputs."""
    proto = case.model()
    in_catalogue = all_ops_catalogued(proto)
    try:
        model = load(proto, check=False)
        if compiled:
            from sod2.backend.runtime import compile_model

            runner = compile_model(model).run
        else:
            runner = lambda feeds: run_reference(model, feeds).outputs  # noqa: E731
        for feeds, expected in case.data_sets():
            outputs = list(runner(feeds).values())
            expected = undefined_casts(proto, feeds, expected, outputs)
            mismatch = outputs_mismatch(expected, outputs, rtol=RTOL, atol=ATOL)
            if mismatch:
                return CaseResult(case.name, op, "fail", in_catalogue, mismatch)
    except UnsupportedOpError as error:
        return CaseResult(case.name, op, "unsupported", in_catalogue, str(error))
    except Sod2Error as error:
        return CaseResult(case.name, op, "fail", in_catalogue, f"{type(error).__name__}: {error}")
    except Exception as error:  # a crash inside a kernel is a failure, reported with its type
        return CaseResult(case.name, op, "fail", in_catalogue, f"{type(error).__name__}: {error}")
    return CaseResult(case.name, op, "pass", in_catalogue)


def undefined_casts(
    proto: onnx.ModelProto, feeds: dict[str, Any], expected: list[Any], outputs: list[Any]
) -> list[Any]:
    """`expected`, with the elements ONNX leaves undefined taken from `outputs`: in a graph of
    Cast/CastLike nodes from one float input to integer outputs, the positions whose input lies
    outside the output type's range. Any other case is returned unchanged."""
    if not proto.graph.node or any(n.op_type not in ("Cast", "CastLike") for n in proto.graph.node):
        return expected
    source = feeds.get(proto.graph.input[0].name)
    if source is None or not _is_float(np.asarray(source).dtype):
        return expected
    source = np.asarray(source).astype(np.float64)
    patched = []
    for want, got in zip(expected, outputs, strict=False):
        want, got = np.asarray(want), np.asarray(got)
        if not _is_integer(want.dtype) or want.shape != source.shape or got.shape != want.shape:
            patched.append(want)
            continue
        limits = ml_dtypes.iinfo(want.dtype)
        with np.errstate(invalid="ignore"):
            outside = ~((source >= limits.min) & (source < limits.max + 1.0))
        patched.append(np.where(outside, got.astype(want.dtype), want))
    return patched


def _is_float(dtype: np.dtype) -> bool:
    """A float type, ml_dtypes' narrow ones (bfloat16, float8 ...) included."""
    try:
        ml_dtypes.finfo(dtype)
    except (TypeError, ValueError):
        return False
    return True


def _is_integer(dtype: np.dtype) -> bool:
    """An integer type, ml_dtypes' narrow ones (int4, uint2 ...) included."""
    try:
        ml_dtypes.iinfo(dtype)
    except (TypeError, ValueError):
        return False
    return True


def all_ops_catalogued(proto: object) -> bool:
    """True when every node of the model (subgraphs included) has a catalogue entry."""
    opsets = {entry.domain: entry.version for entry in proto.opset_import}  # type: ignore[attr-defined]
    for node in _proto_nodes(proto.graph):  # type: ignore[attr-defined]
        domain = "" if node.domain in STANDARD_DOMAINS else node.domain
        try:
            lookup(node.op_type, domain, opsets.get(node.domain, opsets.get("", 1)))
        except Sod2Error:
            return False
    return True


def _proto_nodes(graph: object) -> Iterable:
    for node in graph.node:  # type: ignore[attr-defined]
        if node.op_type == "Constant":
            continue
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _proto_nodes(sub)


def case_ops(cases: list[CorpusCase]) -> dict[str, str]:
    """The operator each case tests (see the module docstring)."""
    single: dict[str, str] = {}
    for case in cases:
        kinds = {(n.domain, n.op_type) for n in case.model().graph.node if n.op_type != "Constant"}
        if len(kinds) == 1:
            domain, op_type = kinds.pop()
            single[case.name] = op_type if domain in STANDARD_DOMAINS else f"{domain}::{op_type}"
    attributed = {}
    for case in cases:
        if case.name in single and "_expanded" not in case.name:
            attributed[case.name] = single[case.name]
            continue
        base = re.sub(r"_expanded(_ver\d+)?$", "", case.name)
        base = re.sub(r"_expanded", "", base)
        versioned = re.sub(r"_ver\d+$", "", base)
        attributed[case.name] = single.get(base) or single.get(versioned) or _composite(case)
    return attributed


def _composite(case: CorpusCase) -> str:
    ops = sorted({n.op_type for n in case.model().graph.node if n.op_type != "Constant"})
    return "+".join(ops) if len(ops) <= 3 else f"{ops[0]}+{len(ops) - 1} more"


def run_conformance(
    names: Iterable[str] | None = None, *, compiled: bool = False
) -> list[CaseResult]:
    """Run every node test case (or those named) and return the results in case order."""
    cases = node_cases()
    ops = case_ops(cases)
    wanted = None if names is None else set(names)
    return [
        run_case(c, ops[c.name], compiled=compiled)
        for c in cases
        if wanted is None or c.name in wanted
    ]


# -- reporting -------------------------------------------------------------------------------


def summary(results: list[CaseResult]) -> dict[str, object]:
    """Totals over all cases and over the cases whose ops are all in the catalogue."""
    counts = Counter(r.status for r in results)
    catalogued = [r for r in results if r.in_catalogue]
    passed = sum(r.status == "pass" for r in catalogued)
    return {
        "cases": len(results),
        "pass": counts["pass"],
        "fail": counts["fail"],
        "unsupported": counts["unsupported"],
        "catalogued_cases": len(catalogued),
        "catalogued_pass": passed,
        "catalogued_pass_rate": passed / len(catalogued) if catalogued else 0.0,
    }


def report_json(results: list[CaseResult]) -> dict[str, object]:
    """Summary plus every case, as plain data."""
    return {"summary": summary(results), "cases": [asdict(r) for r in results]}


def report_markdown(results: list[CaseResult]) -> str:
    """The conformance table: totals, then one row per operator."""
    totals = summary(results)
    lines = [
        "# ONNX conformance of the reference interpreter",
        "",
        "Every node test case of `onnx.backend.test.case.node.collect_testcases()`, run by",
        "`sod2.backend.reference` (regenerate: `sod2 conformance --write docs/conformance.md`).",
        "A case is *catalogued* when every operator it uses has a kernel in `sod2.ops`;",
        "*unsupported* cases stop with sod2's `UnsupportedOpError`.",
        "",
        f"- cases: {totals['cases']}: {totals['pass']} pass, {totals['fail']} fail, "
        f"{totals['unsupported']} unsupported",
        f"- catalogued cases: {totals['catalogued_cases']}, of which {totals['catalogued_pass']} "
        f"pass ({100 * float(totals['catalogued_pass_rate']):.1f}%)",  # type: ignore[arg-type]
        "",
        "| op | cases | pass | fail | unsupported |",
        "|---|---:|---:|---:|---:|",
    ]
    by_op: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        by_op[result.op][result.status] += 1
    for op in sorted(by_op, key=str.lower):
        c = by_op[op]
        lines.append(
            f"| {op} | {sum(c.values())} | {c['pass']} | {c['fail']} | {c['unsupported']} |"
        )
    failures = [r for r in results if r.status == "fail"]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{r.case}` ({r.op}): {r.reason[:300]}" for r in failures]
    return "\n".join(lines) + "\n"
