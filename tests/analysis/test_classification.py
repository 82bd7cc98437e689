"""SoD2's four classes: every catalogued op has one, and RDP assigns them per node (control flow
is EDO unless its branches provably agree)."""

import numpy as np
import pytest

from sod2.analysis.rdp import propagate
from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ops import OpClass, shape_rules

N = symbol("N")


def test_every_shape_rule_declares_one_of_the_four_classes():
    for versions in shape_rules().values():
        for entry in versions:
            assert isinstance(entry.op_class, OpClass)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("Shape", OpClass.ISDO),
        ("Size", OpClass.ISDO),
        ("Relu", OpClass.ISDOS),
        ("Conv", OpClass.ISDOS),
        ("Reshape", OpClass.ISVDOS),
        ("Expand", OpClass.ISVDOS),
        ("NonZero", OpClass.EDO),
        ("Unique", OpClass.EDO),
    ],
)
def test_registered_class(op, expected):
    (entry, *_) = reversed(shape_rules()[("", op)])
    assert entry.op_class is expected


def _classes(build):
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 4]))
    out = build(graph, x)
    graph.set_outputs([out])
    result = propagate(Model(graph, {"": 18}))
    return result.classes[out.producer]


def test_isdo_node():
    assert _classes(lambda g, x: g.add_node("Shape", [x]).outputs[0]) is OpClass.ISDO


def test_isdos_node():
    assert _classes(lambda g, x: g.add_node("Sigmoid", [x]).outputs[0]) is OpClass.ISDOS


def test_isvdos_node():
    shape = lambda g: g.add_constant(np.array([-1], np.int64))  # noqa: E731
    assert _classes(lambda g, x: g.add_node("Reshape", [x, shape(g)]).outputs[0]) is OpClass.ISVDOS


def test_edo_node():
    assert _classes(lambda g, x: g.add_node("NonZero", [x]).outputs[0]) is OpClass.EDO


def test_topk_with_a_data_dependent_k_is_edo_and_with_a_computed_k_isvdos():
    def top_k(graph, x, k):
        return graph.add_node("TopK", [x, k], outputs=2).outputs[0]

    def data_k(graph, x):
        count = graph.add_node(
            "ReduceSum",
            [graph.add_node("Cast", [x], attrs={"to": 7}).outputs[0]],
            attrs={"keepdims": 0},
        ).outputs[0]
        return top_k(
            graph,
            x,
            graph.add_node("Reshape", [count, graph.add_constant(np.array([1]))]).outputs[0],
        )

    def shape_k(graph, x):
        shape = graph.add_node("Shape", [x]).outputs[0]
        last = graph.add_node(
            "Slice", [shape, graph.add_constant(np.array([1])), graph.add_constant(np.array([2]))]
        ).outputs[0]
        return top_k(graph, x, last)

    assert _classes(data_k) is OpClass.EDO
    assert _classes(shape_k) is OpClass.ISVDOS
