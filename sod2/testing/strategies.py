"""Hypothesis strategies for dynamic models, for sod2's tests and for its users' own.

- `bindings(entry)`: bindings of a zoo model's symbols, drawn inside their ranges (and accepted
  by the entry's own validity check);
- `dynamic_graphs()`: small random models over an input `x: float32[N, C, H, W]` whose dims are
  symbols, built from operators that are valid for every binding (elementwise ops, broadcasts
  against reductions, convolutions and pools that keep extents positive, transposes, shape
  arithmetic through Shape -> Gather -> Concat -> Reshape, slices, concatenations);
- `concrete_inputs(graph_case, binding)`: feeds of the shapes a binding gives;
- `assert_shapes_agree(model, feeds)`: the property itself: every fact RDP infers agrees with
  the execution of the model on `feeds` (see `sod2.testing.shape_check`).

Example:

    @given(dynamic_graphs(), st.data())
    def test_rdp_is_sound(case, data):
        binding = data.draw(case.bindings())
        assert_shapes_agree(case.model, case.inputs(binding))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.ir.graph import Tensor
from sod2.testing.shape_check import check_model_shapes

SYMBOL_RANGES = {"N": (1, 3), "H": (1, 24), "W": (1, 24)}


def bindings(entry: object) -> st.SearchStrategy[dict[str, int]]:
    """Bindings of a zoo model's symbols inside their ranges that the entry accepts."""
    symbols = entry.symbols  # type: ignore[attr-defined]

    @st.composite
    def draw_binding(draw: st.DrawFn) -> dict[str, int]:
        binding = {s.name: draw(st.integers(s.low, min(s.high, s.low + 512))) for s in symbols}
        try:
            entry.check_binding(binding)  # type: ignore[attr-defined]
        except Exception:
            from hypothesis import assume

            assume(False)
        return binding

    return draw_binding()


@dataclass
class GraphCase:
    """A random dynamic model, with how to draw bindings and inputs for it."""

    model: Model
    channels: int
    symbolic_channels: bool
    current_channels: int = 0
    """Channels of the tensor the generator is building on (changes with convolutions)."""

    def bindings(self) -> st.SearchStrategy[dict[str, int]]:
        """Bindings of the model's symbols within SYMBOL_RANGES."""
        ranges = dict(SYMBOL_RANGES)
        if self.symbolic_channels:
            ranges["C"] = (1, 5)
        return st.fixed_dictionaries(
            {name: st.integers(low, high) for name, (low, high) in ranges.items()}
        )

    def inputs(self, binding: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        """Random feeds of the shapes `binding` gives."""
        channels = binding.get("C", self.channels)
        shape = (binding["N"], channels, binding["H"], binding["W"])
        return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


_Step = Callable[[Graph, Tensor, st.DrawFn, "GraphCase | None"], Tensor]


def _unary(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    op = draw(st.sampled_from(["Relu", "Sigmoid", "Neg", "Abs", "Tanh"]))
    return graph.add_node(op, [x]).outputs[0]


def _broadcast_with_reduction(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    axes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
    axes_tensor = graph.add_constant(np.array(sorted(axes), dtype=np.int64))
    reduced = graph.add_node("ReduceMean", [x, axes_tensor], attrs={"keepdims": 1}).outputs[0]
    op = draw(st.sampled_from(["Add", "Mul", "Sub"]))
    return graph.add_node(op, [x, reduced]).outputs[0]


def _self_binary(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    return graph.add_node(draw(st.sampled_from(["Add", "Mul", "Max"])), [x, x]).outputs[0]


def _conv(graph: Graph, x: Tensor, draw: st.DrawFn, case: GraphCase) -> Tensor:
    kernel = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 2]))
    out_channels = draw(st.integers(1, 4))
    if case.symbolic_channels:
        return x  # a weight cannot have a symbolic channel count
    weight = graph.add_constant(
        np.ones((out_channels, case.current_channels, kernel, kernel), dtype=np.float32) * 0.1
    )
    y = graph.add_node(
        "Conv",
        [x, weight],
        attrs={
            "kernel_shape": [kernel, kernel],
            "strides": [stride, stride],
            "pads": [kernel // 2] * 4,
        },
    ).outputs[0]
    case.current_channels = out_channels
    return y


def _pool(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    attrs = {
        "kernel_shape": [3, 3],
        "strides": [2, 2],
        "pads": [1, 1, 1, 1],
        "ceil_mode": int(draw(st.booleans())),
    }
    return graph.add_node(op, [x], attrs=attrs).outputs[0]


def _transpose_twice(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    perm = draw(st.permutations([0, 1, 2, 3]))
    inverse = [perm.index(i) for i in range(4)]
    y = graph.add_node("Transpose", [x], attrs={"perm": list(perm)}).outputs[0]
    y = graph.add_node("Relu", [y]).outputs[0]
    return graph.add_node("Transpose", [y], attrs={"perm": inverse}).outputs[0]


def _reshape_roundtrip(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    """Flatten H and W through shape arithmetic, then restore them from the saved shape."""
    shape = graph.add_node("Shape", [x]).outputs[0]
    head = graph.add_node("Slice", [shape, _ints(graph, [0]), _ints(graph, [2])]).outputs[0]
    flat = graph.add_node("Concat", [head, _ints(graph, [-1])], attrs={"axis": 0}).outputs[0]
    y = graph.add_node("Reshape", [x, flat]).outputs[0]
    y = graph.add_node("Softmax", [y], attrs={"axis": -1}).outputs[0]
    return graph.add_node("Reshape", [y, shape]).outputs[0]


def _slice(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    axis = draw(st.sampled_from([2, 3]))
    step = draw(st.sampled_from([1, 2, -1]))
    # every start keeps at least one element of an extent of 1 or more: walking forward from
    # start -3 reaches the last element; walking back, a start before the first is empty
    start = draw(st.integers(-3, 0) if step > 0 else st.sampled_from([-1, 0]))
    end = 2**62 if step > 0 else -(2**62)
    return graph.add_node(
        "Slice",
        [x, _ints(graph, [start]), _ints(graph, [end]), _ints(graph, [axis]), _ints(graph, [step])],
    ).outputs[0]


def _concat(graph: Graph, x: Tensor, draw: st.DrawFn, case: object) -> Tensor:
    axis = draw(st.sampled_from([0, 2, 3]))
    return graph.add_node("Concat", [x, x], attrs={"axis": axis}).outputs[0]


def _ints(graph: Graph, values: list[int]) -> Tensor:
    return graph.add_constant(np.array(values, dtype=np.int64))


STEPS: dict[str, _Step] = {
    "unary": _unary,
    "broadcast": _broadcast_with_reduction,
    "self-binary": _self_binary,
    "conv": _conv,
    "pool": _pool,
    "transpose": _transpose_twice,
    "reshape": _reshape_roundtrip,
    "slice": _slice,
    "concat": _concat,
}


@st.composite
def dynamic_graphs(draw: st.DrawFn, max_steps: int = 6) -> GraphCase:
    """A random model over `x: float32[N, C, H, W]` (C a constant or a symbol)."""
    symbolic_channels = draw(st.booleans())
    channels = draw(st.integers(1, 4))
    graph = Graph("random")
    dims = [symbol("N"), symbol("C") if symbolic_channels else channels, symbol("H"), symbol("W")]
    x = graph.add_input("x", tensor_type(DType.FLOAT32, dims))
    case = GraphCase(Model(graph, {"": 18}), channels, symbolic_channels, channels)
    current = x
    for _ in range(draw(st.integers(1, max_steps))):
        step = STEPS[draw(st.sampled_from(sorted(STEPS)))]
        current = step(graph, current, draw, case)
    graph.set_outputs([graph.add_node("Identity", [current], outputs=["y"]).outputs[0]])
    return case


def assert_shapes_agree(model: Model, feeds: dict[str, np.ndarray]) -> None:
    """The property: RDP's facts agree with executing `model` on `feeds` (AssertionError else)."""
    check = check_model_shapes(model, feeds)
    assert not check.wrong, "\n".join(check.wrong)
    assert not check.unsupported, "\n".join(check.unsupported)
