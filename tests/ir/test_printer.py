import numpy as np

from sod2.ir import DType, Graph, Model, format_model, symbol, tensor_type

GOLDEN = """\
# opsets: ai.onnx 18
graph main(%x: float32[N, 3, H, W], %cond: bool[]) {
  %w: float32[4, 3, 1, 1] = constant
  %two: int64[] = constant 2
  %y: float32[N, 4, H, W] = Conv(%x, %w, _) {kernel_shape=[1, 1], auto_pad="NOTSET"}
  %z = If(%cond)
    then_branch: graph then() {
      %t = Relu(%y)
      return %t
    }
    else_branch: graph else() {
      return %y
    }
  %'odd name' = Identity(%z)
  return %'odd name'
}"""


def test_golden_text():
    N, H, W = symbol("N"), symbol("H"), symbol("W")
    graph = Graph("main")
    x = graph.add_input("x", tensor_type(DType.FLOAT32, [N, 3, H, W]))
    cond = graph.add_input("cond", tensor_type(DType.BOOL, []))
    w = graph.add_constant(np.zeros((4, 3, 1, 1), dtype=np.float32), "w")
    graph.add_constant(np.array(2, dtype=np.int64), "two")
    conv = graph.add_node(
        "Conv",
        [x, w, None],
        outputs=["y"],
        attrs={"kernel_shape": [1, 1], "auto_pad": "NOTSET"},
        output_types=[tensor_type(DType.FLOAT32, [N, 4, H, W])],
    )
    y = conv.outputs[0]
    then_branch = graph.new_subgraph("then")
    then_branch.set_outputs([then_branch.add_node("Relu", [y], outputs=["t"]).outputs[0]])
    else_branch = graph.new_subgraph("else")
    else_branch.set_outputs([y])
    z = graph.add_node(
        "If", [cond], outputs=["z"], attrs={"then_branch": then_branch, "else_branch": else_branch}
    ).outputs[0]
    graph.set_outputs([graph.add_node("Identity", [z], outputs=["odd name"]).outputs[0]])
    assert format_model(Model(graph, {"": 18})) == GOLDEN
