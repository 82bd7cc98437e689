"""Workspace sizes: for every convolution strategy, a region of the size the plan gives holds
all the scratch the kernel takes (nothing spills to the thread's buffers), and the symbolic size
is the concrete one at every binding."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.analysis.facts import TensorFact
from sod2.backend import kernels
from sod2.backend.kernels import ConvKernel, ConvTransposeKernel
from sod2.backend.scratch import NAME_SLACK, workspace_bytes, workspace_floats
from sod2.ir.dims import symbol
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph
from sod2.ir.types import Shape, TensorType
from sod2.ops.registry import KernelContext, lookup_node

OPSET = 21
F32 = DType.FLOAT32

KINDS = {  # a convolution of each strategy: channels, filters, kernel, stride, depthwise
    "pointwise": (12, 10, (1, 1), (1, 1), False),
    "direct": (12, 12, (3, 3), (1, 1), True),
    "direct strided": (4, 4, (3, 3), (1, 2), True),
    "winograd": (130, 130, (3, 3), (1, 1), False),
    "kn2row": (12, 10, (5, 3), (1, 1), False),
    "im2col": (4, 12, (3, 3), (2, 2), False),
    "tiles": (12, 10, (5, 3), (1, 1), False),
    "tiles strided": (4, 12, (3, 3), (2, 2), False),
}
STATIC = {"kn2row", "im2col"}
"""Kinds whose small weights would take `tiles`, unless TILES_MAX_WEIGHT_BYTES says not (and,
for small images, of every kind but `tiles`', TILES_SMALL_IMAGE_WEIGHT_BYTES)."""

shapes = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 2),
        "pads": st.booleans(),
        "constant": st.booleans(),
        "size": st.tuples(st.integers(5, 40), st.integers(5, 40)),
    }
)


def case_of(kind: str, shape: dict) -> dict:
    channels, filters, kernel, stride, depthwise = KINDS[kind]
    return {
        **shape,
        "channels": channels,
        "filters": filters,
        "kernel": kernel,
        "stride": stride,
        "depthwise": depthwise,
    }


def conv_graph(case: dict, dims: tuple, op: str = "Conv"):
    """A graph of one Conv (or ConvTranspose) over X of `dims`, its node and the facts RDP would
    give it, with the weights of `case`."""
    channels, filters = case["channels"], case["filters"]
    group = channels if case["depthwise"] and op == "Conv" else 1
    if group > 1:
        filters = channels * max(1, filters // channels)
    kh, kw = case["kernel"]
    rng = np.random.default_rng(0)
    shape = (filters, channels // group, kh, kw) if op == "Conv" else (channels, filters, kh, kw)
    w = rng.standard_normal(shape).astype(np.float32)
    graph = Graph()
    x = graph.add_input("x", TensorType(F32, Shape(dims)))
    weight = graph.add_constant(w, "w") if case["constant"] else graph.add_input("w", None)
    pads = [kh // 2, kw // 2, kh // 2, kw // 2] if case["pads"] else [0, 0, 0, 0]
    attrs = {"strides": list(case["stride"]), "pads": pads}
    if op == "Conv":
        attrs["group"] = group
    node = graph.add_node(op, [x, weight], outputs=["y"], attrs=attrs)
    return graph, node, w


def facts_of(node, x_dims, w_shape, y_dims) -> dict:
    tensors = (node.inputs[0], node.inputs[1], node.outputs[0])
    return {
        t: TensorFact(F32, Shape(d))
        for t, d in zip(tensors, (x_dims, w_shape, y_dims), strict=True)
    }


def reference(node, arrays):
    return lookup_node(node, OPSET).kernel(KernelContext(node, OPSET), arrays)[0]


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=15, deadline=None)
@given(shapes)
def test_a_region_of_the_planned_size_holds_every_strategys_scratch(kind, shape):
    with pytest.MonkeyPatch.context() as patch:
        if kind in STATIC:
            patch.setattr(kernels, "TILES_MAX_WEIGHT_BYTES", 0)
        if not kind.startswith("tiles"):
            patch.setattr(kernels, "TILES_SMALL_IMAGE_WEIGHT_BYTES", 0)
        region_holds_scratch(kind, shape)


def region_holds_scratch(kind: str, shape: dict) -> None:
    case = case_of(kind, shape)
    batch, channels = case["batch"], case["channels"]
    h, w_ = case["size"]
    dims = (batch, channels, h, w_)
    graph, node, w = conv_graph(case, dims)
    x = np.random.default_rng(1).standard_normal(dims).astype(np.float32)
    want = reference(node, [x, w])
    facts = facts_of(node, dims, w.shape, want.shape)
    floats = workspace_floats(node, facts)
    kernel = ConvKernel(node, OPSET)
    assert kernel.strategy_for(x.shape, w.shape) == kind.split()[0]
    if case["constant"]:
        kernel.prepare(w)
    out = np.full(want.shape, np.nan, np.float32)
    kernels.release_scratch()
    region = None
    if floats:
        size = workspace_bytes(node, facts, 1 << 40) // 4
        assert size == -(-(floats + NAME_SLACK) // 16) * 16
        region = kernels.Workspace(np.empty(size, np.float32))
    kernels.use_workspace(region)
    try:
        kernel([x, w], [out])
    finally:
        kernels.use_workspace(None)
    assert kernels.release_scratch() == 0, kernel.strategy_for(x.shape, w.shape)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    if region is not None:  # not much more than it took
        assert region.high > 0
        assert floats <= 3 * region.high + NAME_SLACK, kernel.strategy_for(x.shape, w.shape)


@settings(max_examples=30, deadline=None)
@given(shapes, st.sampled_from(list(KINDS)))
def test_conv_transpose_scratch_fits_its_region(shape, kind):
    case = {**case_of(kind, shape), "depthwise": False, "pads": False}
    dims = (case["batch"], case["channels"], *case["size"])
    graph, node, w = conv_graph(case, dims, "ConvTranspose")
    x = np.random.default_rng(1).standard_normal(dims).astype(np.float32)
    want = reference(node, [x, w])
    facts = facts_of(node, dims, w.shape, want.shape)
    size = workspace_bytes(node, facts, 1 << 40) // 4
    region = kernels.Workspace(np.empty(size, np.float32))
    out = np.full(want.shape, np.nan, np.float32)
    kernels.release_scratch()
    kernels.use_workspace(region)
    try:
        ConvTransposeKernel(node, OPSET)([x, w], [out])
    finally:
        kernels.use_workspace(None)
    assert kernels.release_scratch() == 0
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=20, deadline=None)
@given(shapes, st.tuples(st.integers(5, 300), st.integers(5, 300)))
def test_the_symbolic_size_is_the_concrete_one_at_every_binding(kind, shape, binding):
    case = {**case_of(kind, shape), "pads": True}  # (pads keep a symbolic output positive)
    n, h, w_ = symbol("N"), symbol("H"), symbol("W")
    graph, node, w = conv_graph(case, (n, case["channels"], h, w_))
    kh, kw = case["kernel"]
    sh, sw = case["stride"]
    out_h = (h + 2 * (kh // 2) - kh) // sh + 1
    out_w = (w_ + 2 * (kw // 2) - kw) // sw + 1
    filters = w.shape[0]
    symbolic = workspace_bytes(
        node,
        facts_of(node, (n, case["channels"], h, w_), w.shape, (n, filters, out_h, out_w)),
        1 << 23,
    )
    values = {n: case["batch"], h: binding[0], w_: binding[1]}
    concrete_y = tuple(int(sympy.sympify(d).subs(values)) for d in (n, filters, out_h, out_w))
    concrete_x = (case["batch"], case["channels"], *binding)
    concrete = workspace_bytes(node, facts_of(node, concrete_x, w.shape, concrete_y), 1 << 23)
    # (xreplace, as the plan's generated evaluator does: sympy 1.14's subs turns
    # Min(H, floor(c / (N * ceiling(W / 2)))) into H when it substitutes H before W)
    found = (
        symbolic
        if symbolic is None or isinstance(symbolic, int)
        else int(symbolic.xreplace(values))
    )
    assert found == concrete
    if concrete is not None:
        assert 0 < concrete <= 1 << 23
