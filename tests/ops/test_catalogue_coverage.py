"""Every kernel in the catalogue has at least one differential case against onnxruntime.

Each `tests/ops/test_*.py` module that holds cases exposes them as a `CASES` list whose items start
with the op type. sod2's own ops (domain `sod2`, such as `Fused`) have no onnxruntime counterpart;
they are tested against the reference interpreter beside the pass that makes them.
"""

import importlib
import pkgutil

import tests.ops
from sod2.ops import catalogue


def _tested_ops() -> set[str]:
    found = set()
    for module in pkgutil.iter_modules(tests.ops.__path__):
        if module.name.startswith("test_"):
            cases = getattr(importlib.import_module(f"tests.ops.{module.name}"), "CASES", [])
            found |= {case[0] for case in cases}
    return found


def test_every_kernel_has_a_differential_case():
    registered = {op for (domain, op) in catalogue() if domain in ("", "ai.onnx")}
    assert registered - _tested_ops() == set()
