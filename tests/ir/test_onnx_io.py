import os

import numpy as np
import onnx
import pytest
import sympy
from onnx import TensorProto, helper, numpy_helper

from sod2.errors import ModelLoadError, OnnxImportError, UnknownDomainError
from sod2.ir import (
    DType,
    Graph,
    Model,
    load,
    save,
    symbol,
    tensor_type,
    to_onnx,
    verify,
)
from sod2.testing.roundtrip import outputs_mismatch, run_onnxruntime

H, W = symbol("H"), symbol("W")


def make_model(nodes, inputs, outputs, *, initializers=(), value_info=(), opset=18, functions=()):
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, initializer=list(initializers), value_info=list(value_info)
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions)
    )
    model.ir_version = 9
    return model


def value(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def test_dim_params_become_symbols_and_unnamed_dims_fresh_ones():
    proto = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [value("x", ["N", None, 3])],
        [value("y", ["N", "unk__0", 3])],  # a name our fresh symbols must avoid
    )
    model = load(proto)
    (x,) = model.graph.inputs
    n, fresh, three = x.shape.dims
    assert n == symbol("N") and three == 3
    assert isinstance(fresh, sympy.Symbol) and fresh.name not in ("N", "unk__0")
    verify(model)


def test_symbolic_expressions_are_written_as_dim_params_and_read_back():
    graph = Graph("g")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [H, W]))
    pooled = graph.add_node(
        "MaxPool",
        [x],
        attrs={"kernel_shape": [2, 2], "strides": [2, 2]},
        output_types=[tensor_type(DType.FLOAT32, [sympy.floor(H / 2), sympy.floor(W / 2)])],
    ).outputs[0]
    doubled = graph.add_node(
        "Concat",
        [pooled, pooled],
        attrs={"axis": 0},
        output_types=[tensor_type(DType.FLOAT32, [2 * sympy.floor(H / 2), sympy.floor(W / 2)])],
    ).outputs[0]
    graph.set_outputs([doubled])
    proto = to_onnx(Model(graph, {"": 18}))
    infos = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*proto.graph.value_info, *proto.graph.output]
    }
    assert infos[pooled.name] == ["floor(H/2)", "floor(W/2)"]
    assert infos[doubled.name] == ["2*floor(H/2)", "floor(W/2)"]
    back = load(proto, check=False)
    assert back.graph.tensor(doubled.name).shape.dims == (
        2 * sympy.floor(H / 2),
        sympy.floor(W / 2),
    )


def test_every_typed_intermediate_is_in_value_info():
    proto = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Abs", ["b"], ["y"]),
        ],
        [value("x", ["N"])],
        [value("y", ["N"])],
        value_info=[value("a", ["N"])],
    )
    model = load(proto)
    model.graph.tensor("b").type = tensor_type(DType.FLOAT32, [symbol("N")])
    names = {v.name for v in to_onnx(model).graph.value_info}
    assert names == {"a", "b"}


def test_initializer_that_is_an_input_becomes_an_input_with_a_default():
    bias = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "b")
    proto = make_model(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        [value("x", [2]), value("b", [2])],
        [value("y", [2])],
        initializers=[bias],
    )
    model = load(proto)
    b = model.graph.tensor("b")
    assert b.is_graph_input and not b.is_constant
    np.testing.assert_array_equal(b.const_value, [1.0, 2.0])
    exported = to_onnx(model)
    assert [i.name for i in exported.graph.input] == ["x", "b"]
    assert [t.name for t in exported.graph.initializer] == ["b"]


def test_constant_nodes_become_constants_and_subgraph_constants_export_as_nodes():
    then_graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], value_float=3.0),
            helper.make_node("Add", ["x", "k"], ["t"]),
        ],
        "then",
        [],
        [value("t", [2])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])], "else", [], [value("e", [2])]
    )
    proto = make_model(
        [
            helper.make_node("Constant", [], ["c"], value_ints=[1, 2]),
            helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph),
            helper.make_node("Shape", ["c"], ["s"]),
        ],
        [value("x", [2]), value("cond", [], TensorProto.BOOL)],
        [value("y", [2]), value("s", [1], TensorProto.INT64)],
    )
    model = load(proto)
    assert [n.op_type for n in model.graph.walk()] == ["If", "Identity", "Add", "Shape"]
    assert model.graph.tensor("c").is_constant and model.graph.tensor("k").is_constant
    exported = to_onnx(model)
    onnx.checker.check_model(exported)
    assert [t.name for t in exported.graph.initializer] == ["c"]
    branches = {a.name: a.g for a in exported.graph.node[0].attribute}
    then_ops = [n.op_type for n in branches["then_branch"].node]
    assert then_ops == ["Constant", "Add"]
    feeds = {"x": np.array([1.0, 2.0], np.float32), "cond": np.array(True)}
    assert outputs_mismatch(run_onnxruntime(proto, feeds), run_onnxruntime(exported, feeds)) == ""


def test_a_name_shadowed_in_a_subgraph_is_renamed_there_only():
    then_graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],  # "y" is also the model output's name
        "then",
        [],
        [value("y", [2])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["n"])], "else", [], [value("n", [2])]
    )
    proto = make_model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        [value("x", [2]), value("cond", [], TensorProto.BOOL)],
        [value("y", [2])],
    )
    model = load(proto, check=False)
    verify(model)
    assert model.graph.outputs[0].name == "y"
    exported = to_onnx(model)
    for cond in (True, False):
        feeds = {"x": np.array([-1.0, 2.0], np.float32), "cond": np.array(cond)}
        assert (
            outputs_mismatch(run_onnxruntime(proto, feeds), run_onnxruntime(exported, feeds)) == ""
        )


def test_nodes_out_of_order_are_imported_in_dependency_order():
    proto = make_model(
        [helper.make_node("Neg", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])],
        [value("x", [2])],
        [value("y", [2])],
    )
    model = load(proto, check=False)
    assert [n.op_type for n in model.graph.nodes] == ["Relu", "Neg"]


def test_dangling_reference_names_the_node_and_tensor():
    proto = make_model(
        [helper.make_node("Relu", ["ghost"], ["y"], name="r")], [value("x", [2])], [value("y", [2])]
    )
    with pytest.raises(OnnxImportError, match=r"node 'r' \(Relu\) reads tensor 'ghost'"):
        load(proto, check=False)


def test_unknown_domain_names_the_node_and_domain():
    proto = make_model(
        [helper.make_node("Foo", ["x"], ["y"], name="f", domain="com.example")],
        [value("x", [2])],
        [value("y", [2])],
    )
    with pytest.raises(UnknownDomainError, match=r"node 'f' \(Foo\) is in domain 'com.example'"):
        load(proto, check=False)
    with pytest.raises(ModelLoadError, match=r"com\.example"):
        load(proto)


def test_custom_domains_that_are_imported_are_kept():
    proto = make_model(
        [helper.make_node("Foo", ["x"], ["y"], domain="com.example")],
        [value("x", [2])],
        [value("y", [2])],
    )
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    model = load(proto)
    assert model.graph.nodes[0].qualified_op == "com.example::Foo"
    assert model.opset("com.example") == 1
    onnx.checker.check_model(to_onnx(model))


def test_unreadable_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelLoadError, match=r"missing\.onnx: no such model file"):
        load(missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff not a model")
    with pytest.raises(ModelLoadError, match=r"garbage\.onnx: cannot read"):
        load(garbage)


def test_checker_rejections_are_load_errors(tmp_path):
    proto = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", [2])]
    )
    proto.graph.node[0].input[0] = ""  # Relu needs its input
    path = tmp_path / "bad.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelLoadError, match=r"bad\.onnx: rejected by onnx\.checker"):
        load(path)


def test_a_file_that_passed_the_checker_is_not_checked_again_until_it_changes(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SOD2_CACHE_DIR", str(tmp_path / "cache"))
    checked = []
    real = onnx.checker.check_model
    monkeypatch.setattr(
        onnx.checker, "check_model", lambda m, *a, **k: (checked.append(m), real(m, *a, **k))
    )
    proto = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", [2])]
    )
    path = tmp_path / "good.onnx"
    onnx.save(proto, str(path))
    load(path)
    load(path)
    assert checked == [str(path)]  # the checker reads the file itself, once
    proto.graph.node[0].input[0] = ""  # now invalid: a changed file is checked again
    onnx.save(proto, str(path))
    os.utime(path, ns=(0, 1))  # even if its modification time went back
    with pytest.raises(ModelLoadError, match=r"good\.onnx: rejected by onnx\.checker"):
        load(path)
    fresh = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", [2])]
    )
    load(fresh)
    assert len(checked) == 3 and checked[-1] is fresh  # a proto is always checked


def test_external_data_is_loaded_and_can_be_written(tmp_path):
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32), "w")
    proto = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [value("x", [4096])],
        [value("y", [4096])],
        initializers=[weight],
    )
    source = tmp_path / "external.onnx"
    onnx.save_model(
        proto, str(source), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    assert (tmp_path / "weights.bin").exists()
    model = load(source)
    np.testing.assert_array_equal(model.graph.tensor("w").const_value, np.arange(4096))
    target = tmp_path / "out" / "copy.onnx"
    target.parent.mkdir()
    save(model, target, external_data=True)
    assert (target.parent / "copy.onnx.data").exists()
    np.testing.assert_array_equal(load(target).graph.tensor("w").const_value, np.arange(4096))


def test_local_functions_are_inlined():
    function = helper.make_function(
        "local",
        "Twice",
        ["a"],
        ["b"],
        [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", 18)],
    )
    proto = make_model(
        [helper.make_node("Twice", ["x"], ["y"], domain="local")],
        [value("x", [2])],
        [value("y", [2])],
        functions=[function],
    )
    proto.opset_import.append(helper.make_opsetid("local", 1))
    model = load(proto)
    assert [n.op_type for n in model.graph.nodes] == ["Add"]
    exported = to_onnx(model)
    feeds = {"x": np.array([1.0, 2.0], np.float32)}
    assert outputs_mismatch(run_onnxruntime(proto, feeds), run_onnxruntime(exported, feeds)) == ""


def test_model_metadata_survives_the_round_trip():
    proto = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", [2])]
    )
    proto.producer_name, proto.model_version = "maker", 7
    helper.set_model_props(proto, {"author": "someone"})
    exported = to_onnx(load(proto))
    assert exported.producer_name == "maker" and exported.model_version == 7
    assert {p.key: p.value for p in exported.metadata_props} == {"author": "someone"}
