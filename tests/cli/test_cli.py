import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sod2.cli import main


@pytest.fixture
def model_file(tmp_path):
    """y = Relu(x) + (c + c), with a foldable constant computation and a dead node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    c = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "c")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["c", "c"], ["cc"], name="double"),
        helper.make_node("Neg", ["x"], ["unused"], name="dead"),
        helper.make_node("Add", ["r", "cc"], ["y"], name="add"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], initializer=[c]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def test_inspect_shows_interface_symbols_and_ops(model_file, capsys):
    assert main(["inspect", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "x: float32[N, 2]" in out and "y: float32[N, 2]" in out
    assert "symbols: N" in out
    assert re.search(r"Add\s+2", out) and re.search(r"Relu\s+1", out)


def test_inspect_ir_prints_the_graph(model_file, capsys):
    assert main(["inspect", str(model_file), "--ir"]) == 0
    assert "%r = Relu(%x)" in capsys.readouterr().out


def test_passes_lists_options(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "fold-constants:" in out and "max_bytes: int = 1048576" in out


def test_optimize_writes_a_model_with_the_pipeline_applied(model_file, tmp_path, capsys):
    out_path = tmp_path / "out.onnx"
    code = main(
        [
            "optimize",
            str(model_file),
            "-o",
            str(out_path),
            "--pipeline",
            "fold-constants,dce",
            "--time",
            "--verify",
            "--dump-after",
            "dce",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "nodes 4 -> 2" in out and "// IR after dce" in out and "total" in out
    written = onnx.load(str(out_path))
    onnx.checker.check_model(written)
    assert [n.op_type for n in written.graph.node] == ["Relu", "Add"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "missing.onnx"], "missing.onnx: no such model file"),
        (["optimize", "{model}", "-o", "x.onnx", "--pipeline", "dce,"], "expected a pass name"),
        (["optimize", "{model}", "-o", "x.onnx", "--pipeline", "nope"], "unknown pass 'nope'"),
    ],
)
def test_errors_print_one_message_and_exit_1(args, message, model_file, capsys):
    args = [a.replace("{model}", str(model_file)) for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("sod2: error:") and message in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    from sod2.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        main(["--debug", "inspect", str(tmp_path / "missing.onnx")])
    with pytest.raises(ModelLoadError):
        main(["inspect", str(tmp_path / "missing.onnx"), "--debug"])


def test_the_console_script_is_installed(model_file):
    script = Path(sys.executable).parent / "sod2"
    result = subprocess.run(
        [str(script), "inspect", str(model_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "symbols: N" in result.stdout


def test_infer_shapes_writes_every_shape_into_value_info(model_file, tmp_path, capsys):
    out_path = tmp_path / "shaped.onnx"
    assert main(["infer-shapes", str(model_file), "-o", str(out_path)]) == 0
    assert "dims resolved" in capsys.readouterr().out
    written = onnx.load(str(out_path))
    onnx.checker.check_model(written)
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in written.graph.value_info
    }
    assert shapes["r"] == ["N", 2] and shapes["cc"] == [2]


def test_inspect_shapes_lists_classes_and_symbols(model_file, capsys):
    assert main(["inspect", str(model_file), "--shapes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Relu\s+ISDOS\s+r: float32\[N, 2\]", out)
    assert "dims resolved from the input shapes (100.0%)" in out


def test_inspect_graph_writes_dot_coloured_by_class(model_file, tmp_path):
    dot = tmp_path / "graph.dot"
    assert main(["inspect", str(model_file), "--graph", str(dot)]) == 0
    text = dot.read_text()
    assert text.startswith("digraph") and "#d9f2d0" in text and "float32[N, 2]" in text


def test_run_prints_each_output_with_its_checksum(model_file, capsys):
    """`sod2 run --random` on the compiled runtime and on the reference interpreter prints the
    same line per output: name, dtype, shape, sum, digest."""
    argv = ["run", str(model_file), "--random", "--bind", "N=3"]
    assert main(argv) == 0
    compiled = capsys.readouterr().out.splitlines()
    assert main([*argv, "--reference"]) == 0
    assert capsys.readouterr().out.splitlines() == compiled
    assert len(compiled) == 1 and compiled[0].startswith("y: float32[3, 2] sum=")


def test_run_profile_prints_the_slowest_steps_and_the_time_by_op(model_file, capsys):
    """`--profile N` times each step of the compiled runtime and prints the total, the N
    slowest steps with their output shapes, and the time by op."""
    assert main(["run", str(model_file), "--random", "--bind", "N=4", "--profile", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("y: float32[4, 2]")
    header = next(i for i, line in enumerate(out) if re.match(r"\d+ steps, [\d.]+ ms in all", line))
    top = out[header + 2 : header + 3]
    assert len(top) == 1 and top[0].rstrip().endswith("/ 4x2")
    assert out[header + 3].split() == ["ms", "share", "steps", "op"]
    assert sorted(line.split()[-1] for line in out[header + 4 :]) == ["Add", "Relu"]


def test_run_profile_refuses_the_reference_interpreter(model_file, capsys):
    assert main(["run", str(model_file), "--random", "--reference", "--profile"]) == 1
    assert "--profile times the compiled runtime's steps" in capsys.readouterr().err
