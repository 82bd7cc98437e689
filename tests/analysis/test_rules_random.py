"""RDP rules of the random generators: random values, shapes known from the attributes or the
input, checked against execution at random shapes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ir.attributes import Attribute, AttrKind
from sod2.testing.shape_check import check_model_shapes

shapes = st.lists(st.integers(1, 4), max_size=3)


def _assert_exact(graph: Graph, outputs, feeds: dict) -> None:
    graph.set_outputs(list(outputs))
    check = check_model_shapes(Model(graph, {"": 18}), feeds)
    assert check.wrong == [] and check.unsupported == []
    assert check.resolved == check.dims


@settings(max_examples=10)
@given(shapes, st.sampled_from(["RandomNormal", "RandomUniform"]))
def test_generators_take_the_shape_attribute(shape, op):
    graph = Graph("random")
    node = graph.add_node(
        op, [], attrs={"shape": Attribute(AttrKind.INTS, tuple(shape)), "dtype": DType.FLOAT64.onnx}
    )
    _assert_exact(graph, node.outputs, {})


@settings(max_examples=15)
@given(shapes, st.sampled_from(["RandomNormalLike", "RandomUniformLike", "Bernoulli"]))
def test_like_generators_take_the_input_shape(shape, op):
    graph = Graph("random")
    dims = [symbol(f"x{i}") for i in range(len(shape))]
    x = graph.add_input("x", tensor_type(DType.FLOAT32, dims))
    node = graph.add_node(op, [x], attrs={"dtype": DType.FLOAT16.onnx})
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)}
    _assert_exact(graph, node.outputs, feeds)


@settings(max_examples=10)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5))
def test_multinomial_draws_sample_size_classes_per_row(batch, classes, samples):
    graph = Graph("multinomial")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [symbol("B"), symbol("C")]))
    node = graph.add_node("Multinomial", [x], attrs={"sample_size": samples})
    feeds = {"x": np.random.default_rng(0).standard_normal((batch, classes)).astype(np.float32)}
    _assert_exact(graph, node.outputs, feeds)
