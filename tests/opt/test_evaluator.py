"""Generated evaluators compute exactly what sympy computes, in integers, with either backend;
compiled ones are cached on disk and loaded by the next process."""

import json
import os
import subprocess
import sys

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from sod2.analysis.symbolic import ceil_div, floor_div
from sod2.cache import CACHE_ENV
from sod2.ir import symbol
from sod2.opt.evaluator import Evaluator, EvaluatorError, evaluator_cache_dir, ref

H, W = symbol("H"), symbol("W")


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from([H, W, sympy.Integer(draw(st.integers(0, 9)))]))
    a, b = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    kind = draw(st.sampled_from(["add", "mul", "floor", "ceil", "max", "min"]))
    if kind == "add":
        return a + b
    if kind == "mul":
        return a * b
    divisor = draw(st.integers(1, 7))
    if kind == "floor":
        return floor_div(a, divisor)
    if kind == "ceil":
        return ceil_div(a, divisor)
    return (sympy.Max if kind == "max" else sympy.Min)(a, b)


@given(expressions(), st.integers(1, 500), st.integers(1, 500))
def test_python_code_agrees_with_sympy(expr, h, w):
    evaluator = Evaluator([H, W], [("e", expr)], ["e"], backend="python")
    expected = int(sympy.sympify(expr).subs({H: h, W: w}))
    assert evaluator({"H": h, "W": w}).tolist() == [expected]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Compiled evaluators go to a fresh directory, never the home directory."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def test_numba_and_python_agree_and_names_chain():
    program = [
        ("a", 64 * floor_div(H + 1, 2) * W),
        ("b", sympy.Max(ref("a") + 3, H * W, evaluate=False)),
        ("c", ceil_div(H, 3) + H),
    ]
    fast = Evaluator([H, W], program, ["a", "b", "c"], backend="numba")
    slow = Evaluator([H, W], program, ["a", "b", "c"], backend="python")
    for h, w in [(1, 1), (7, 2), (1000, 3)]:
        assert fast({"H": h, "W": w}).tolist() == slow({"H": h, "W": w}).tolist()
    assert slow({"H": 7, "W": 2}).tolist() == [512, 515, 10]
    assert fast.backend == "numba"


def test_errors_name_the_symbol():
    with pytest.raises(EvaluatorError, match="unknown symbols"):
        Evaluator([H], [("e", H + W)], ["e"])
    evaluator = Evaluator([H, W], [("e", H + W)], ["e"])
    with pytest.raises(EvaluatorError, match="no value for symbol W"):
        evaluator({"H": 3})
    with pytest.raises(EvaluatorError, match="unknown evaluator backend 'llvm'"):
        Evaluator([H], [("e", H)], ["e"], backend="llvm")


def test_outputs_sharing_a_value_read_one_slot():
    program = [("a", H * W), ("b", H * W), ("c", 7), ("d", H + 1)]
    evaluator = Evaluator([H, W], program, ["a", "c", "b", "d", "a", "c"], backend="python")
    assert evaluator.source.count("out[") == 3
    assert evaluator({"H": 3, "W": 5}).tolist() == [15, 7, 15, 4, 15, 7]


def test_compiled_source_lands_in_the_cache_directory(cache_dir):
    evaluator = Evaluator([H, W], [("e", sympy.Max(H, W))], ["e"], backend="numba")
    assert evaluator({"H": 3, "W": 5}).tolist() == [5]
    assert evaluator_cache_dir() == cache_dir / "evaluators"
    modules = list((cache_dir / "evaluators").glob("sod2_evaluator_*.py"))
    assert [m.read_text() for m in modules] == [evaluator.source]
    assert list((cache_dir / "evaluators" / "__pycache__").glob("*.nbi"))


SECOND_PROCESS = """
import json, sympy
from sod2.ir import symbol
from sod2.opt.evaluator import Evaluator
H, W = symbol("H"), symbol("W")
evaluator = Evaluator([H, W], [("e", sympy.Max(H * W, W + 3))], ["e"], backend="numba")
value = evaluator({"H": 2, "W": 9}).tolist()
stats = evaluator._function.stats
print(json.dumps([value, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


def test_a_second_process_loads_the_compiled_evaluator(cache_dir):
    env = {**os.environ, CACHE_ENV: str(cache_dir)}
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", SECOND_PROCESS], env=env, capture_output=True, check=True
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == [[18], 0, 1]  # compiled
    assert runs[1] == [[18], 1, 0]  # loaded from disk
