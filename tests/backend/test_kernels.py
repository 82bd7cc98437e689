"""Fast kernels against the reference kernels of the same nodes, on random shapes and attributes:
outputs written in place equal the reference's, the epilogue covers the first axis exactly once,
unsupported types and attributes get no kernel, and inputs a kernel has no loop for are computed
by the reference kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sod2.backend import kernels, panel
from sod2.backend.kernels import CONV_STRATEGIES, ConvKernel, fast_kernel, supported_ops
from sod2.errors import Sod2Error
from sod2.ir.dtypes import DType
from sod2.ir.graph import Graph, Node
from sod2.ir.types import Shape, TensorType
from sod2.ops.registry import KernelContext, lookup_node

OPSET = 21
SMALL = settings(max_examples=20, deadline=None)


def node_of(
    op: str,
    inputs: int,
    *,
    absent: tuple[int, ...] = (),
    outputs: int | list[str | None] = 1,
    dtype: DType | None = DType.FLOAT32,
    **attrs: object,
) -> Node:
    """A single-node graph: `inputs` inputs (those in `absent` omitted), first one of `dtype`."""
    graph = Graph()
    tensors = []
    for i in range(inputs):
        kind = (
            None if dtype is None else TensorType(dtype if i == 0 else DType.FLOAT32, Shape(None))
        )
        tensors.append(None if i in absent else graph.add_input(f"x{i}", kind))
    return graph.add_node(op, tensors, outputs=outputs, attrs=attrs)


def reference(node: Node, arrays: list, opset: int = OPSET) -> list[np.ndarray]:
    return list(lookup_node(node, opset).kernel(KernelContext(node, opset), arrays))


def run_fast(kernel, wants: list, arrays: list) -> tuple[list[np.ndarray], list[int]]:
    """Run `kernel` into NaN-filled outputs shaped like `wants`; count epilogue rows."""
    outs = [
        np.full(w.shape, np.nan, w.dtype) if w.dtype.kind == "f" else np.zeros_like(w)
        for w in wants
    ]
    rows = outs[0].shape[0] if outs[0].ndim else 1
    covered = np.zeros(rows, dtype=np.int64)

    def epilogue(lo: int, hi: int) -> None:
        assert 0 <= lo <= hi <= rows
        covered[lo:hi] += 1

    kernel(arrays, outs, epilogue)
    return outs, covered.tolist()


def check(node: Node, arrays: list, opset: int = OPSET, kernel=None) -> None:
    """The fast kernel's outputs equal the reference's; the epilogue covers each row once."""
    wants = reference(node, arrays, opset)
    kernel = kernel or fast_kernel(node, opset)
    assert kernel is not None
    outs, covered = run_fast(kernel, wants, arrays)
    for got, want in zip(outs, wants, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert covered == [1] * len(covered)


def rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


@pytest.fixture(autouse=True)
def no_fallback(monkeypatch):
    """A fast kernel that hands its inputs to the reference fails the test, unless the test asks
    for `allow_reference`: otherwise a kernel that always declined would pass every check."""
    original = kernels._Kernel.run_reference

    def refuse(self, inputs, outputs, epilogue):
        raise AssertionError(f"{self.node.op_type} fell back to the reference kernel")

    monkeypatch.setattr(kernels._Kernel, "run_reference", refuse)
    return original


@pytest.fixture
def allow_reference(monkeypatch, no_fallback):
    monkeypatch.setattr(kernels._Kernel, "run_reference", no_fallback)


@pytest.fixture
def static_strategies(monkeypatch):
    """Convolutions by the strategy their weights' shape picks (`conv_strategy`), not the
    `panels` and `tiles` that small images and small weights take instead."""
    monkeypatch.setattr(kernels, "TILES_MAX_WEIGHT_BYTES", 0)
    monkeypatch.setattr(kernels, "TILES_WINOGRAD_WEIGHT_BYTES", 0)
    monkeypatch.setattr(kernels, "CONV_PANEL_MAX_POSITIONS", 0)


@pytest.fixture
def small_blocks(monkeypatch):
    """im2col and matrix products in blocks of a few rows, even for tiny inputs."""
    monkeypatch.setattr(kernels, "IM2COL_BLOCK_BYTES", 1 << 10)
    monkeypatch.setattr(kernels, "MATMUL_BLOCK_BYTES", 1 << 8)


# -- Conv ----------------------------------------------------------------------------------------


def conv_attrs(kernel, stride, dilation, padding, groups: int = 1) -> dict:
    attrs = {"group": groups, "strides": list(stride), "dilations": list(dilation)}
    if padding == "pads":
        attrs["pads"] = [1, 0, 2, 1]
    elif padding != "none":
        attrs["auto_pad"] = padding
    return attrs


CONV_GEOMETRY = {
    "kernel": st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 1)]),
    "stride": st.sampled_from([(1, 1), (2, 2), (3, 1)]),
    "dilation": st.sampled_from([(1, 1), (2, 1)]),
    "padding": st.sampled_from(["none", "pads", "SAME_UPPER", "SAME_LOWER", "VALID"]),
}

RESIZES = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["nearest", "linear"]),
        "coordinate_transformation_mode": st.sampled_from(
            ["half_pixel", "align_corners", "asymmetric"]
        ),
        "scales": st.sampled_from([(2.0, 2.0), (1.5, 1.0), (0.5, 2.0), (3.0, 0.75)]),
    }
)


def chain_stage(kind, geometry, resize, channels, filters, groups, bias, rng):
    """A stage of a chain: (node, kernel, params) for a Conv or a Resize."""
    if kind == "Resize":
        attrs = {k: v for k, v in resize.items() if k != "scales"}
        node = node_of("Resize", 3, absent=(1,), **attrs)
        scales = np.array([1.0, 1.0, *resize["scales"]], np.float32)
        return node, kernels._resize(node, OPSET), [None, scales], channels
    w = rand(rng, filters * groups, channels // groups, *geometry["kernel"])
    b = rand(rng, filters * groups) if bias else None
    node = node_of("Conv", 3 if bias else 2, **conv_attrs(**geometry, groups=groups))
    return node, ConvKernel(node, OPSET), [w, b], filters * groups


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 4),
    widths=st.tuples(st.integers(1, 4), st.integers(1, 3)),
    kinds=st.sampled_from(
        [("Conv", "Conv"), ("Conv", "Conv", "Conv"), ("Resize", "Conv"), ("Conv", "Resize", "Conv")]
    ),
    geometries=st.lists(st.fixed_dictionaries(CONV_GEOMETRY), min_size=3, max_size=3),
    resize=RESIZES,
    groups=st.sampled_from([1, 2]),
    band_bytes=st.sampled_from([1, 300, 3000, 1 << 20]),
    bias=st.booleans(),
    size=st.tuples(st.integers(6, 20), st.integers(5, 9)),
    winograd=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_band_chain_equals_its_stages_run_whole(
    batch,
    channels,
    widths,
    kinds,
    geometries,
    resize,
    groups,
    band_bytes,
    bias,
    size,
    winograd,
    seed,
):
    """The last stage's output made band by band (blocks of one row up to the whole image, any
    Conv geometry and grouping, nearest and linear Resizes, 3x3 stages as Winograd or not)
    equals the stages run one after the other on whole tensors, with an epilogue (tanh)
    finishing each band."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "WINOGRAD_MIN_CHANNELS", 1 if winograd else 1 << 30)
        patch.setattr(kernels, "CHAIN_BAND_BYTES", band_bytes)
        patch.setattr(kernels, "CHAIN_MIN_ROWS", 1)
        check_chain(batch, channels, widths, kinds, geometries, resize, groups, bias, size, seed)


def check_chain(batch, channels, widths, kinds, geometries, resize, groups, bias, size, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, batch, channels, *size)
    stages, value, width = [], x, channels
    for k, kind in enumerate(kinds):
        last = k == len(kinds) - 1
        g = groups if last and width % groups == 0 else 1
        filters = widths[k % 2] if not last else max(1, widths[1] // g)
        node, kernel, params, width = chain_stage(
            kind, geometries[k], resize, width, filters, g, bias, rng
        )
        try:
            value = reference(node, [value, *params])[0]
        except Sod2Error:
            assume(False)
        assume(min(value.shape[2:]) >= 1)
        if not last:
            value = np.tanh(value)
        stages.append((kernel, [p for p in params]))
    chain = kernels.BandChain([k for k, _ in stages])
    out = np.full(value.shape, np.nan, np.float32)
    images = []
    params = [p for _, p in stages]
    layout = chain._layout(x.shape, params, out.shape)
    tanh = [lambda band: np.tanh(band, out=band)] * (len(stages) - 1)
    done = chain(x, params, out, tanh, lambda lo, hi: images.append((lo, hi)))
    if layout is None:  # a block of the last stage reads padding only: declined, nothing written
        assert not done and np.isnan(out).all() and images == []
        return
    assert done
    np.testing.assert_allclose(out, value, rtol=1e-4, atol=1e-5)
    assert images == [(n, n + 1) for n in range(batch)]


SAME_SIZE_STAGES = st.sampled_from(
    [
        # (kind, kernel, stride, dilation) with SAME_UPPER padding, or a Resize by `stride`
        [("Conv", (1, 1), 1, 1), ("Conv", (3, 3), 1, 1), ("Conv", (1, 1), 1, 1)],
        [("Conv", (3, 3), 1, 1), ("Conv", (3, 3), 1, 2)],
        [("Conv", (5, 3), 1, 1), ("Conv", (1, 1), 1, 1)],
        [("Conv", (3, 3), 2, 1), ("Resize", None, 2, 1)],
        [("Conv", (1, 1), 1, 1), ("Conv", (3, 3), 1, 1), ("Conv", (3, 3), 1, 1)],
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 4),
    middle=st.integers(1, 5),
    stages=SAME_SIZE_STAGES,
    band_bytes=st.sampled_from([1, 200, 2000, 1 << 20]),
    min_rows=st.sampled_from([1, 2, 8]),
    residual=st.booleans(),
    height=st.sampled_from([4, 8, 13, 20]),
    width=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_band_chain_writes_over_its_input(
    batch, channels, middle, stages, band_bytes, min_rows, residual, height, width, seed
):
    """A chain whose output has its input's shape may write it over the input's bytes (the
    planner's in-place, `overwritable_inputs`): blocks of any height, windows that reach one
    or more rows into the next block, with and without a residual epilogue that reads the
    input at the rows it writes, give the chain's out-of-place result (rows a later block still
    reads wait, finished, until it has read them, past several blocks where a window is taller
    than a block)."""
    rng = np.random.default_rng(seed)
    x = rand(rng, batch, channels, height * 2, width * 2)
    params, kernels_, value, width_now = [], [], x, channels
    for k, (kind, kernel, stride, dilation) in enumerate(stages):
        last = k == len(stages) - 1
        if kind == "Resize":
            node = node_of("Resize", 3, absent=(1,), mode="nearest")
            scales = np.array([1.0, 1.0, float(stride), float(stride)], np.float32)
            stage_params, kernel_ = [None, scales], kernels._resize(node, OPSET)
        else:
            convs_after = [kind for kind, *_ in stages[k + 1 :] if kind == "Conv"]
            filters = middle if convs_after else channels
            w = rand(rng, filters, width_now, *kernel)
            attrs = conv_attrs(kernel, (stride, stride), (dilation, dilation), "SAME_UPPER")
            node = node_of("Conv", 2, **attrs)
            stage_params, kernel_, width_now = [w, None], ConvKernel(node, OPSET), filters
        value = reference(node, [value, *stage_params])[0]
        if not last:
            value = np.tanh(value)
        params.append(stage_params)
        kernels_.append(kernel_)
    assert value.shape == x.shape
    expected = value + x if residual else value
    chain = kernels.BandChain(kernels_)
    tanh = [lambda band: np.tanh(band, out=band)] * (len(stages) - 1)
    both = x.copy()

    def finish_block(block, n, r0, r1, upto):
        block += x_rows(n, r0, r1)
        both[n : n + 1, :, r0:upto] = block[:, :, : upto - r0]

    def x_rows(n, r0, r1):
        return both[n : n + 1, :, r0:r1].copy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "CHAIN_BAND_BYTES", band_bytes)
        patch.setattr(kernels, "CHAIN_MIN_ROWS", min_rows)
        if residual:
            done = chain(both, params, both, tanh, None, finish_block)
        else:
            done = chain(both, params, both, tanh, None)
    assert done
    np.testing.assert_allclose(both, expected, rtol=1e-4, atol=1e-5)


def test_band_chain_declines_what_it_has_no_loop_for():
    node = node_of("Conv", 2, pads=[1, 1, 1, 1])
    chain = kernels.BandChain([ConvKernel(node, OPSET), ConvKernel(node, OPSET)])
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((2, 2, 3, 3), np.float32)
    out = np.zeros((1, 2, 5, 5), np.float32)
    assert chain(x, [[w, None], [w, None]], out, [None], None)
    np.testing.assert_allclose(out[0, 0, 2, 2], 2 * 9 * 18)
    assert not chain(x.astype(np.float64), [[w, None], [w, None]], out, [None], None)
    assert not chain(x[0], [[w[0], None], [w[0], None]], out[0], [None], None)  # 1-D
    assert not chain(x, [[w, None], [w, None]], out[:, :, :4], [None], None)  # the wrong output
    assert not chain(x, [[w[:, :1], None], [w, None]], out, [None], None)  # channels do not fit
    assert kernels.band_chain([fast_kernel(node, OPSET), None]) is None
    assert isinstance(kernels.band_chain([fast_kernel(node, OPSET)] * 2), kernels.BandChain)


class Region:
    """A workspace region inside a NaN-filled canvas: `outside_untouched` says whether every
    byte around it is still NaN."""

    def __init__(self, floats: int) -> None:
        self.canvas = np.full(floats + 64, np.nan, np.float32)
        self.floats = floats

    def __enter__(self) -> Region:
        kernels.release_scratch()
        kernels.use_workspace(self.canvas[32 : 32 + self.floats])
        return self

    def __exit__(self, *exc: object) -> None:
        kernels.use_workspace(None)

    def outside_untouched(self) -> bool:
        return bool(np.isnan(self.canvas[:32]).all() and np.isnan(self.canvas[-32:]).all())


@pytest.mark.parametrize("strategies", [("im2col", "kn2row", "im2col"), ("kn2row",) * 3])
def test_band_chain_in_a_workspace_region_takes_all_its_scratch_from_it(strategies):
    """A chain's blocks and stages take their scratch from the step's region, each block and
    each stage's call from the same floats again (`_ScratchScope`): stages that ask for more
    than the one before, and blocks whose bands differ (at the image's edges), spill nothing
    into the thread's buffers, and nothing is written outside the region."""
    rng = np.random.default_rng(11)
    x = rand(rng, 2, 8, 40, 24)
    stages, params, value = [], [], x
    for k, strategy in enumerate(strategies):
        filters = 12 if k % 2 == 0 else 6
        node = node_of("Conv", 3, pads=[1, 1, 1, 1])
        w, b = rand(rng, filters, value.shape[1], 3, 3, scale=0.2), rand(rng, filters)
        value = reference(node, [value, w, b])[0]
        stages.append(ConvKernel(node, OPSET, strategy=strategy))
        params.append([w, b])
    chain = kernels.BandChain(stages)
    out = np.full(value.shape, np.nan, np.float32)
    with Region(1 << 14) as region:
        assert chain(x, params, out, [None] * (len(stages) - 1), None)
        spilled = kernels.release_scratch()
        blocks = chain._layouts[chain._key(x.shape, params, out.shape)][1]
    assert len(blocks) > 2  # the region is what sizes the blocks
    assert spilled == 0 and region.outside_untouched()
    np.testing.assert_allclose(out, value, rtol=1e-4, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from(["im2col", "kn2row", "winograd"]),
    channels=st.integers(1, 6),
    filters=st.integers(1, 6),
    kernel=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
    padding=st.sampled_from(["none", "pads", "SAME_UPPER"]),
    size=st.tuples(st.integers(3, 12), st.integers(3, 9)),
    floats=st.sampled_from([16, 200, 1000, 1 << 16]),
    seed=st.integers(0, 2**16),
)
def test_conv_in_a_workspace_region(
    strategy, channels, filters, kernel, padding, size, floats, seed
):
    """In a workspace region of any size, a convolution sizes its blocks to the region, takes
    its scratch from it when it fits (else from the thread's buffers) and never writes outside
    it; the result is the reference's."""
    assume(strategy != "winograd" or kernel == (3, 3))  # its only kernel
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, 1, channels, *size), rand(rng, filters, channels, *kernel)]
    attrs = {"pads": [1, 0, 2, 1]} if padding == "pads" else {}
    if padding == "SAME_UPPER":
        attrs["auto_pad"] = padding
    node = node_of("Conv", 2, **attrs)
    with Region(floats) as region:
        check(node, arrays, kernel=ConvKernel(node, OPSET, strategy=strategy))
        spilled = kernels.release_scratch()
    assert region.outside_untouched()
    if floats == 1 << 16:  # room for any block of these sizes: nothing spills
        assert spilled == 0


def test_workspace_region_names_keep_their_slices_and_spill_when_full():
    kernels.release_scratch()
    canvas = np.zeros(100, np.float32)
    kernels.use_workspace(canvas)
    try:
        a = kernels._scratch("a", 10)
        assert np.shares_memory(a, canvas) and kernels._scratch("a", 8).base is a.base
        b = kernels._scratch("b", 50)  # starts on the next 16-float boundary
        assert np.shares_memory(b, canvas) and not np.shares_memory(a, b)
        assert kernels._budget(1 << 20, "b") == 4 * (100 - 16 - 64 + 50) - 64
        c = kernels._scratch("c", 40)  # no room left: the thread's buffer
        assert not np.shares_memory(c, canvas) and kernels.release_scratch() == 160
    finally:
        kernels.use_workspace(None)
    assert kernels._budget(1 << 20) == 1 << 20


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 4),
    widths=st.tuples(st.integers(1, 4), st.integers(1, 3)),
    kinds=st.sampled_from([("Conv", "Conv"), ("Conv", "Conv", "Conv"), ("Resize", "Conv")]),
    geometries=st.lists(st.fixed_dictionaries(CONV_GEOMETRY), min_size=3, max_size=3),
    resize=RESIZES,
    floats=st.sampled_from([64, 600, 4000, 1 << 16]),
    size=st.tuples(st.integers(6, 20), st.integers(5, 9)),
    seed=st.integers(0, 2**16),
)
def test_band_chain_in_a_workspace_region(
    channels, widths, kinds, geometries, resize, floats, size, seed
):
    """A chain sizes its bands to the region it runs in and stays inside it."""
    with pytest.MonkeyPatch.context() as patch, Region(floats) as region:
        patch.setattr(kernels, "CHAIN_MIN_ROWS", 1)
        check_chain(1, channels, widths, kinds, geometries, resize, 1, True, size, seed)
    assert region.outside_untouched()


@SMALL
@given(
    batch=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 3]),
    per_group_in=st.integers(1, 3),
    per_group_out=st.integers(1, 3),
    kernel=st.sampled_from([(1, 1), (3, 3), (2, 3), (1, 4)]),
    stride=st.sampled_from([(1, 1), (2, 2), (1, 3)]),
    dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
    padding=st.sampled_from(["none", "pads", "SAME_UPPER", "SAME_LOWER", "VALID"]),
    bias=st.booleans(),
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
    direct_block_bytes=st.sampled_from([1, 300, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_every_strategy_matches_reference(
    batch,
    groups,
    per_group_in,
    per_group_out,
    kernel,
    stride,
    dilation,
    padding,
    bias,
    size,
    direct_block_bytes,
    seed,
):
    """Every strategy that applies gives the reference's output (the strided direct loop in
    blocks of one output row up to the whole image)."""
    for extent, taps, gap in zip(size, kernel, dilation, strict=True):
        assume((taps - 1) * gap + 1 <= extent)  # the dilated kernel fits the unpadded input
    rng = np.random.default_rng(seed)
    x = rand(rng, batch, groups * per_group_in, *size)
    w = rand(rng, groups * per_group_out, per_group_in, *kernel)
    attrs = {"group": groups, "strides": list(stride), "dilations": list(dilation)}
    if padding == "pads":
        attrs["pads"] = [1, 0, 2, 1]
    elif padding != "none":
        attrs["auto_pad"] = padding
    arrays = [x, w] + ([rand(rng, groups * per_group_out)] if bias else [])
    node = node_of("Conv", len(arrays), **attrs)
    check(node, arrays)
    unpadded_1x1 = kernel == (1, 1) and stride == (1, 1) and padding != "pads"
    unit_stride_one_group = stride == (1, 1) and groups == 1
    winograd_3x3 = kernel == (3, 3) and dilation == (1, 1)
    for strategy in CONV_STRATEGIES:
        if strategy == "pointwise" and not unpadded_1x1:  # for those only
            continue
        if strategy == "kn2row" and not unit_stride_one_group:  # for those only
            continue
        if strategy == "winograd" and not (winograd_3x3 and unit_stride_one_group):
            continue
        if strategy in ("panels", "tiles") and groups != 1:  # one group only
            continue
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kernels, "DIRECT_BLOCK_BYTES", direct_block_bytes)
            check(node, arrays, kernel=ConvKernel(node, OPSET, strategy=strategy))


@SMALL
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 4),
    filters=st.integers(1, 4),
    kernel=st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 3), (1, 4)]),
    stride=st.sampled_from([(1, 1), (2, 2), (3, 1)]),
    dilation=st.sampled_from([(1, 1), (2, 1)]),
    padding=st.sampled_from(["none", "pads", "output_padding", "output_shape", "SAME_UPPER"]),
    bias=st.booleans(),
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    one_d=st.booleans(),
    block_bytes=st.sampled_from([1 << 6, 1 << 21]),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose_matches_reference(
    batch,
    channels,
    filters,
    kernel,
    stride,
    dilation,
    padding,
    bias,
    size,
    one_d,
    block_bytes,
    seed,
):
    rng = np.random.default_rng(seed)
    if one_d:
        kernel, stride, dilation, size = kernel[1:], stride[1:], dilation[1:], size[1:]
    rank = len(size)
    attrs = {"strides": list(stride), "dilations": list(dilation)}
    if padding == "pads":
        attrs["pads"] = [1, 0, 0, 2][:rank] + [1, 0, 0, 2][2 : 2 + rank]
    elif padding == "output_padding":
        attrs["output_padding"] = [s - 1 for s in stride]
    elif padding == "output_shape":
        attrs["output_shape"] = [n * s for n, s in zip(size, stride, strict=True)]
    elif padding != "none":
        attrs["auto_pad"] = padding
    x = rand(rng, batch, channels, *size)
    w = rand(rng, channels, filters, *kernel)
    arrays = [x, w] + ([rand(rng, filters)] if bias else [])
    node = node_of("ConvTranspose", len(arrays), **attrs)
    try:
        wants = reference(node, arrays)
    except Sod2Error:
        return  # the attributes leave no output (the reference says why)
    assume(min(wants[0].shape[2:]) >= 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "CONV_TRANSPOSE_BLOCK_BYTES", block_bytes)  # 1 << 6: a row a block
        check(node, arrays)


def test_conv_transpose_of_groups_is_left_to_the_reference(allow_reference):
    rng = np.random.default_rng(5)
    node = node_of("ConvTranspose", 2, group=2, strides=[2, 2])
    kernel = fast_kernel(node, OPSET)
    arrays = [rand(rng, 1, 4, 3, 3), rand(rng, 4, 3, 2, 2)]
    check(node, arrays, kernel=kernel)


@pytest.mark.parametrize(
    "budget, rows_of_taps", [(1 << 20, 3), (4 * 9 * 10 * 13 * 9, 3), (4 * 3 * 10 * 13 * 2, 1)]
)
def test_conv_kn2row_in_blocks_of_rows_with_dilation_and_uneven_pads(
    budget, rows_of_taps, monkeypatch, static_strategies
):
    """Thick blocks take every tap in one sgemm; thin ones (two output rows against four rows of
    reach) one kernel row of taps per sgemm, accumulated; one block, a few, or many."""
    monkeypatch.setattr(kernels, "KN2ROW_BLOCK_BYTES", budget)
    monkeypatch.setattr(kernels, "KN2ROW_MIN_ROWS", 1)
    rng = np.random.default_rng(3)
    arrays = [rand(rng, 2, 24, 13, 9), rand(rng, 10, 24, 3, 3), rand(rng, 10)]
    node = node_of("Conv", 3, pads=[2, 1, 0, 3], dilations=[2, 1])
    kernel = ConvKernel(node, OPSET)
    assert kernel.strategy_for((2, 24, 13, 9), (10, 24, 3, 3)) == "kn2row"
    assert kernel._kn2row_block(24, 10, 3, 3, 4, 13)[1] == rows_of_taps
    check(node, arrays, kernel=kernel)
    arrays[1] *= -2  # new weight values in the same buffer: nothing stale is kept
    check(node, arrays, kernel=kernel)


def test_conv_im2col_in_blocks_of_rows_with_bias(small_blocks):
    rng = np.random.default_rng(0)
    arrays = [rand(rng, 2, 4, 11, 7), rand(rng, 5, 4, 3, 3), rand(rng, 5)]
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    kernel = ConvKernel(node, OPSET, strategy="im2col")
    check(node, arrays, kernel=kernel)
    arrays[1] *= -2  # the same weight buffer with new values: the kernel must not keep old ones
    arrays[2] += 1
    check(node, arrays, kernel=kernel)


def test_conv_strategy_must_be_known():
    with pytest.raises(Sod2Error, match="fft"):
        ConvKernel(node_of("Conv", 2), OPSET, strategy="fft")


def test_conv1d_and_the_strategy_chosen_per_shape(static_strategies):
    rng = np.random.default_rng(1)
    check(node_of("Conv", 2, pads=[2, 1], strides=[2]), [rand(rng, 2, 4, 9), rand(rng, 3, 4, 3)])
    depthwise = node_of("Conv", 3, group=4, pads=[1, 1, 1, 1])
    check(depthwise, [rand(rng, 1, 4, 6, 6), rand(rng, 8, 1, 3, 3), rand(rng, 8)])
    kernel = ConvKernel(depthwise, OPSET)
    assert kernel.strategy_for((1, 4, 6, 6), (8, 1, 3, 3)) == "direct"
    pointwise = ConvKernel(node_of("Conv", 2), OPSET)
    assert pointwise.strategy_for((1, 8, 5, 5), (6, 8, 1, 1)) == "pointwise"
    assert pointwise.strategy_for((1, 8, 5, 5), (16, 8, 3, 3)) == "im2col"
    assert pointwise.strategy_for((1, 8, 5), (6, 8, 1)) == "pointwise"
    # a few filters (a gate): kn2row at unit stride over many channels, which copies each
    # pixel once, else the direct loop nest, not an im2col feeding a product of one row
    assert pointwise.strategy_for((1, 64, 9, 9), (1, 64, 3, 3)) == "kn2row"
    assert pointwise.strategy_for((1, 16, 9, 9), (2, 16, 3, 3)) == "direct"
    strided = ConvKernel(node_of("Conv", 2, strides=[2, 2]), OPSET)
    assert strided.strategy_for((1, 64, 9, 9), (1, 64, 3, 3)) == "direct"
    gate = node_of("Conv", 3, pads=[1, 1, 1, 1])
    check(gate, [rand(rng, 2, 16, 7, 7), rand(rng, 1, 16, 3, 3), rand(rng, 1)])
    check(gate, [rand(rng, 1, 64, 6, 6), rand(rng, 2, 64, 3, 3), rand(rng, 2)])
    check(
        node_of("Conv", 3, pads=[1, 1, 1, 1], strides=[2, 2]),
        [rand(rng, 1, 16, 7, 7), rand(rng, 2, 16, 3, 3)],
    )


def test_conv_output_buffer_of_the_wrong_shape_names_the_node():
    rng = np.random.default_rng(2)
    kernel = fast_kernel(node_of("Conv", 2), OPSET)
    with pytest.raises(Sod2Error, match="Conv"):
        kernel([rand(rng, 1, 2, 5, 5), rand(rng, 3, 2, 3, 3)], [np.empty((1, 3, 5, 5), np.float32)])


def test_conv_parallel_loop_nests(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(3)
    check(node_of("Conv", 2, pads=[1, 1, 1, 1]), [rand(rng, 1, 3, 6, 6), rand(rng, 4, 3, 3, 3)])
    depthwise = node_of("Conv", 2, group=3, strides=[2, 2])
    check(depthwise, [rand(rng, 2, 3, 7, 7), rand(rng, 3, 1, 3, 3)])


# -- MatMul and Gemm -----------------------------------------------------------------------------

batch_dims = st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=2)


@SMALL
@given(
    batch_a=batch_dims,
    batch_b=batch_dims,
    m=st.integers(1, 6),
    k=st.integers(1, 6),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_matmul_with_batch_broadcasting(batch_a, batch_b, m, k, n, seed):
    rng = np.random.default_rng(seed)
    # make the batch dims broadcast (aligned from the right): where both are > 1 they agree
    aligned_a = ([1] * len(batch_b) + batch_a)[-len(batch_b) :] if batch_b else []
    batch_b = [b if b == 1 or a in (1, b) else a for a, b in zip(aligned_a, batch_b, strict=True)]
    node = node_of("MatMul", 2)
    check(node, [rand(rng, *batch_a, m, k), rand(rng, *batch_b, k, n)])
    check(node, [rand(rng, k), rand(rng, *batch_b, k, n)])
    check(node, [rand(rng, *batch_a, m, k), rand(rng, k)])


def test_matmul_of_rows_in_blocks_hands_each_block_on(small_blocks):
    rng = np.random.default_rng(4)
    node = node_of("MatMul", 2)
    check(node, [rand(rng, 5, 3, 8), rand(rng, 8, 6)])
    check(node, [rand(rng, 7, 8), rand(rng, 8, 6)])
    check(node, [rand(rng, 4, 7, 8).transpose(0, 2, 1), rand(rng, 7, 6)])  # not contiguous


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (), (5,), (1, 5), (6, 1), (6, 5)])
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
def test_gemm(trans_a, trans_b, c_shape, alpha, beta, small_blocks):
    rng = np.random.default_rng(5)
    a = rand(rng, *((4, 6) if trans_a else (6, 4)))
    b = rand(rng, *((5, 4) if trans_b else (4, 5)))
    arrays = [a, b] + ([rand(rng, *c_shape)] if c_shape is not None else [])
    attrs = {"transA": trans_a, "transB": trans_b, "alpha": alpha, "beta": beta}
    check(node_of("Gemm", len(arrays), **attrs), arrays)


@pytest.fixture
def skinny_small(monkeypatch):
    """The skinny loop takes matrices of any size, so that small ones exercise it."""
    monkeypatch.setattr(kernels, "SKINNY_MIN_WEIGHTS", 1)


@SMALL
@given(
    rows=st.integers(1, 40),
    depth=st.integers(1, 9),
    cols=st.integers(1, 11),
    dtype=st.sampled_from([np.float32, np.float64]),
    parallel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_skinny_product_equals_the_sgemm(rows, depth, cols, dtype, parallel, seed):
    """Every tile edge (rows and columns not a multiple of 4, a single row or column): the
    column-major product equals float64's within the element type's rounding."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    b = np.asfortranarray(rng.standard_normal((depth, cols)).astype(dtype))
    out = np.full((rows, cols), np.nan, dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "SKINNY_MIN_WEIGHTS", 1)
        patch.setattr(kernels, "SKINNY_PARALLEL_MIN", 0 if parallel else 1 << 62)
        kernels._product(a, b, out)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tolerance, atol=tolerance * depth)


def test_skinny_product_is_taken_only_in_its_range(monkeypatch):
    """Rows in SKINNY_ROWS against a column-major matrix of SKINNY_MIN_WEIGHTS elements take the
    loop; one row, more rows, a smaller or row-major matrix take the sgemm."""
    calls = []

    def spy(*args: object) -> None:
        calls.append(args[0].shape)  # type: ignore[attr-defined]

    monkeypatch.setattr(kernels, "_SKINNY", (spy, spy))
    monkeypatch.setattr(kernels, "_SKINNY_ROW", (spy, spy))
    monkeypatch.setattr(kernels, "SKINNY_MIN_WEIGHTS", 64)
    lo, hi = kernels.SKINNY_ROWS
    rng = np.random.default_rng(0)
    column_major = np.asfortranarray(rand(rng, 8, 8))
    for rows in (lo - 1, lo, hi, hi + 1):
        kernels._product(rand(rng, rows, 8), column_major, np.empty((rows, 8), np.float32))
    kernels._product(rand(rng, lo, 8), rand(rng, 8, 8), np.empty((lo, 8), np.float32))
    small = np.asfortranarray(rand(rng, 8, 7))
    kernels._product(rand(rng, lo, 8), small, np.empty((lo, 7), np.float32))
    assert calls == [(lo, 8), (hi, 8)]


def test_matmul_prepare_lays_out_a_large_constant_by_columns(skinny_small):
    rng = np.random.default_rng(6)
    node = node_of("MatMul", 2)
    kernel = fast_kernel(node, OPSET)
    b = rand(rng, 9, 13)
    laid_out = kernel.body.prepare(b)
    assert laid_out.flags.f_contiguous and np.array_equal(laid_out, b)
    assert kernel.body.prepare(laid_out) is None  # already by columns
    assert kernel.body.prepare(rand(rng, 2, 3, 4)) is None  # not a matrix
    for shape in [(5, 9), (2, 3, 9), (33, 9)]:  # skinny, skinny over a batch, too many rows
        check(node, [rand(rng, *shape), laid_out], kernel=kernel)


@pytest.mark.parametrize("shape", [(70, 33), (1, 100), (33, 1), (64, 96)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_major_copies_every_value_by_tiles(shape, dtype, skinny_small):
    """Tile edges (sizes not a multiple of 32) and a strided source; a single row or column is
    stored by columns already (nothing to lay out)."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal(shape).astype(dtype)
    laid_out = kernels.column_major(w)
    if 1 in shape:
        assert laid_out is None and w.flags.f_contiguous
    else:
        assert laid_out.flags.f_contiguous and laid_out.dtype == dtype
        np.testing.assert_array_equal(laid_out, w)
    strided = rng.standard_normal((shape[0], 2 * shape[1])).astype(dtype)[:, ::2]
    laid_out = kernels.column_major(strided)
    assert laid_out.flags.f_contiguous
    np.testing.assert_array_equal(laid_out, strided)


def test_matmul_prepare_leaves_a_small_constant():
    kernel = fast_kernel(node_of("MatMul", 2), OPSET)
    assert kernel.body.prepare(np.ones((8, 8), np.float32)) is None


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_skinny_with_bias_and_blocks(trans_b, skinny_small, small_blocks):
    """transB's B is column-major as given; an untransposed one is after `prepare`."""
    rng = np.random.default_rng(7)
    node = node_of("Gemm", 3, transB=trans_b, alpha=0.5, beta=2.0)
    kernel = fast_kernel(node, OPSET)
    b = rand(rng, *((11, 10) if trans_b else (10, 11)))
    laid_out = kernel.body.prepare(b)
    assert (laid_out is None) == bool(trans_b)
    check(
        node, [rand(rng, 6, 10), b if laid_out is None else laid_out, rand(rng, 11)], kernel=kernel
    )


@pytest.mark.skipif(kernels.panel.TILE is None, reason="this CPU has no panel products")
@pytest.mark.parametrize("op", ["MatMul", "Gemm", "Gemm transB"])
def test_a_prepared_constant_is_multiplied_by_panels(op, small_blocks, monkeypatch):
    """A constant B of PANEL_MIN_COLUMNS or more is packed by `prepare` and kept beside B (not
    in its place); the calls that read that very B with at most PANEL_MAX_ROWS rows take the
    panel product, in row blocks, with a batch of rows; another array of the same values, or
    more rows, take the other products; a kernel told that every product has more rows packs
    nothing."""
    calls = []
    bind = kernels.panel.bind

    def spy(a, packed, out):
        calls.append(a.shape)
        return bind(a, packed, out)

    monkeypatch.setattr(kernels.panel, "bind", spy)
    rng = np.random.default_rng(9)
    trans_b = op.endswith("transB")
    node = node_of(op.split()[0], 3 if trans_b else 2, **({"transB": 1} if trans_b else {}))
    kernel = fast_kernel(node, OPSET)
    b = rand(rng, *((40, 10) if trans_b else (10, 40)))
    assert kernel.body.prepare(b) is None  # B stays as it is
    extra = [rand(rng, 40)] if trans_b else []
    shapes = [(7, 10), (3, 5, 10), (1, 10)] if op == "MatMul" else [(7, 10), (1, 10)]
    for shape in shapes:
        check(node, [rand(rng, *shape), b, *extra], kernel=kernel)
    assert calls and all(shape[-1] == 10 for shape in calls)
    calls.clear()
    check(node, [rand(rng, *shapes[0]), b.copy(), *extra], kernel=kernel)
    assert not calls
    monkeypatch.setattr(kernels, "PANEL_MAX_ROWS", 6)  # more rows: the sgemm
    check(node, [rand(rng, 7, 10), b, *extra], kernel=kernel)
    assert not calls
    kernel.body.least_rows = 7
    kernel.body.prepare(b)
    assert kernel.body._panels is None


def test_matmul_of_shapes_that_do_not_fit_names_the_node(allow_reference):
    kernel = fast_kernel(node_of("MatMul", 2), OPSET)
    with pytest.raises(Sod2Error, match="MatMul"):
        kernel(
            [np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)],
            [np.empty((2, 5), np.float32)],
        )


# -- Softmax and LogSoftmax ----------------------------------------------------------------------


@SMALL
@given(
    op=st.sampled_from(["Softmax", "LogSoftmax"]),
    opset=st.sampled_from([11, 13]),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    axis_seed=st.integers(0, 7),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_softmax_both_axis_semantics(op, opset, shape, axis_seed, masked, seed):
    rng = np.random.default_rng(seed)
    axis = axis_seed % (2 * len(shape)) - len(shape)
    x = rand(rng, *shape, scale=20.0)
    if masked:  # attention masks: -inf beside finite values in a row
        x[..., 0] = -np.inf
        x[..., -1] = 5.0
    check(node_of(op, 1, axis=axis), [x], opset)


def test_softmax_of_long_rows_and_extreme_values(monkeypatch):
    rng = np.random.default_rng(6)
    node = node_of("Softmax", 1)
    check(node, [rand(rng, 3, 1000, scale=50.0)])
    extremes = [[1e30, -1e30, 0.0], [np.inf, 1.0, 2.0], [1.0, np.nan, 2.0], [-np.inf] * 3]
    check(node, [np.array(extremes, np.float32)])
    check(node_of("LogSoftmax", 1), [np.array(extremes, np.float32)])
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    check(node_of("LogSoftmax", 1), [rand(rng, 4, 33, scale=10.0)])


@SMALL
@given(size=st.integers(1, 300), where=st.integers(0, 299), seed=st.integers(0, 2**16))
def test_row_max_of_rows_short_and_long(size, where, seed):
    """`_row_max` keeps running maxima in lanes for long rows and reads the tail one by one: the
    largest value is found wherever it is."""
    row = rand(np.random.default_rng(seed), size)
    row[where % size] = 100.0
    assert kernels._row_max(row, np.empty(kernels._MAX_LANES, np.float32)) == 100.0


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("parallel", [False, True])
def test_softmax_in_place_over_its_input(op, axis, parallel, monkeypatch):
    """The liveness plan may give the output its input's storage (ROW_INPLACE_OPS)."""
    if parallel:
        monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(7)
    x = rand(rng, 3, 5, 40, scale=10.0)
    x[0, :, 0] = -np.inf
    node = node_of(op, 1, axis=axis)
    (want,) = reference(node, [x.copy()], OPSET)
    fast_kernel(node, OPSET)([x], [x])
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


# -- normalizations ------------------------------------------------------------------------------


@SMALL
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    axis_seed=st.integers(0, 7),
    bias=st.booleans(),
    statistics=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layer_normalization(shape, axis_seed, bias, statistics, seed):
    rng = np.random.default_rng(seed)
    axis = axis_seed % (2 * len(shape)) - len(shape)
    normalized = shape[axis:]
    arrays = [rand(rng, *shape, scale=3.0) + 2, rand(rng, *normalized)]
    arrays += [rand(rng, *normalized)] if bias else []
    outputs = 3 if statistics else 1
    check(node_of("LayerNormalization", len(arrays), outputs=outputs, axis=axis), arrays, 17)


def test_layer_normalization_broadcast_parameters_and_parallel(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(7)
    node = node_of("LayerNormalization", 3, axis=-2)
    check(node, [rand(rng, 2, 3, 4), rand(rng, 1, 1, 4), rand(rng, 3, 1)], 17)


def standardize_node(axes: list[int], epsilon: float = 1e-5) -> Node:
    """A single sod2::Standardize node over `axes` (`sod2.opt.standardize` makes them)."""
    graph = Graph()
    x = graph.add_input("x0", TensorType(DType.FLOAT32, Shape(None)))
    attrs = {"axes": axes, "epsilon": epsilon}
    return graph.add_node("Standardize", [x], attrs=attrs, domain="sod2")


@SMALL
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    first_seed=st.integers(0, 7),
    count_seed=st.integers(0, 7),
    parallel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_standardize(shape, first_seed, count_seed, parallel, seed):
    """Over any run of consecutive axes: trailing ones (rows), leading ones (columns), all."""
    rng = np.random.default_rng(seed)
    first = first_seed % len(shape)
    last = first + count_seed % (len(shape) - first)
    axes = [a - len(shape) if seed % 2 else a for a in range(first, last + 1)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "PARALLEL_MIN", 0 if parallel else 1 << 30)
        check(standardize_node(axes), [rand(rng, *shape, scale=3.0) + 2])


def test_standardize_columns_in_several_blocks_and_in_place():
    """More columns than STANDARDIZE_BLOCK (a last block partly full), written over X itself."""
    rng = np.random.default_rng(8)
    node = standardize_node([1], epsilon=1e-6)
    x = rand(rng, 2, 5, kernels.STANDARDIZE_BLOCK + 37, scale=2.0) - 1
    check(node, [x])
    (want,) = reference(node, [x.copy()])
    fast_kernel(node, OPSET)([x], [x])
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-5)


def test_standardize_binds_unless_it_copies_its_input():
    rng = np.random.default_rng(9)
    check_bound(standardize_node([1]), [rand(rng, 2, 3, 4)])
    check_bound(standardize_node([-1]), [rand(rng, 2, 3, 4)])
    strided = rand(rng, 2, 3, 8)[:, :, ::2]
    out = np.empty(strided.shape, np.float32)
    assert fast_kernel(standardize_node([1]), OPSET).bind([strided], [out]) is None


@SMALL
@given(
    shape=st.lists(st.integers(1, 6), min_size=3, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_instance_and_batch_normalization(shape, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape, scale=2.0) + 1
    channels = shape[1]
    check(node_of("InstanceNormalization", 3), [x, rand(rng, channels), rand(rng, channels)])
    variance = np.abs(rand(rng, channels)) + 0.1
    params = [rand(rng, channels), rand(rng, channels), rand(rng, channels), variance]
    check(node_of("BatchNormalization", 5, epsilon=1e-3), [x, *params], 15)


def test_normalizations_parallel(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(8)
    x = rand(rng, 2, 3, 5, 4)
    check(node_of("InstanceNormalization", 3), [x, rand(rng, 3), rand(rng, 3)])
    params = [rand(rng, 3), rand(rng, 3), rand(rng, 3), np.ones(3, np.float32)]
    check(node_of("BatchNormalization", 5), [x, *params], 15)


# -- pooling and reductions ----------------------------------------------------------------------


@SMALL
@given(
    op=st.sampled_from(["MaxPool", "AveragePool"]),
    kernel=st.sampled_from([(2, 2), (3, 3), (3, 2)]),
    stride=st.sampled_from([(1, 1), (2, 2), (3, 2)]),
    padding=st.sampled_from(["none", "pads", "SAME_UPPER", "SAME_LOWER"]),
    ceil_mode=st.integers(0, 1),
    include_pad=st.integers(0, 1),
    dilated=st.booleans(),
    size=st.tuples(st.integers(5, 9), st.integers(4, 9)),
    seed=st.integers(0, 2**16),
)
def test_pooling(op, kernel, stride, padding, ceil_mode, include_pad, dilated, size, seed):
    rng = np.random.default_rng(seed)
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "ceil_mode": ceil_mode}
    if padding == "pads":
        attrs["pads"] = [1, 0, 1, 1]
    elif padding != "none":
        attrs["auto_pad"] = padding
    if op == "AveragePool":
        attrs["count_include_pad"] = include_pad
    elif dilated:
        attrs["dilations"] = [2, 1]
    check(node_of(op, 1, **attrs), [rand(rng, 2, 3, *size)], 19)


@SMALL
@given(
    op=st.sampled_from(["MaxPool", "AveragePool"]),
    kernel=st.sampled_from([(3, 3), (5, 5), (2, 3)]),
    stride=st.sampled_from([(1, 1), (2, 2), (1, 2)]),
    dilations=st.sampled_from([(1, 1), (2, 1)]),
    block_floats=st.integers(1, 40),
    size=st.tuples(st.integers(9, 13), st.integers(5, 9)),
    seed=st.integers(0, 2**16),
)
def test_pooling_in_blocks_of_output_rows(op, kernel, stride, dilations, block_floats, size, seed):
    """Folded a few output rows at a time (POOL_BLOCK_FLOATS down to one row per block), with
    the padding above the first block and below the last, the pools equal the reference."""
    rng = np.random.default_rng(seed)
    pads = [kernel[0] // 2, kernel[1] // 2] * 2
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": pads}
    if op == "MaxPool":
        attrs["dilations"] = list(dilations)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "POOL_BLOCK_FLOATS", block_floats)
        check(node_of(op, 1, **attrs), [rand(rng, 1, 2, *size)], 19)


def test_a_nan_wins_a_max_pool():
    """A NaN in a window makes that window's max NaN, as numpy's maximum does; other windows
    keep their values."""
    x = np.arange(2 * 36, dtype=np.float32).reshape(1, 2, 6, 6)
    x[0, 1, 2, 3] = np.nan
    node = node_of("MaxPool", 1, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    out = np.empty_like(x)
    fast_kernel(node, OPSET)([x], [out])
    near = np.zeros((6, 6), bool)
    near[1:4, 2:5] = True  # the windows that hold (2, 3)
    np.testing.assert_array_equal(np.isnan(out[0, 1]), near)
    np.testing.assert_array_equal(out[0, 0], reference(node, [x])[0][0, 0])


def test_pooling_parallel_and_global_average(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(9)
    x = rand(rng, 2, 3, 7, 6)
    check(node_of("MaxPool", 1, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]), [x])
    check(
        node_of("AveragePool", 1, kernel_shape=[2, 2], count_include_pad=1, pads=[1, 1, 0, 0]), [x]
    )
    check(node_of("GlobalAveragePool", 1), [x])


@SMALL
@given(
    op=st.sampled_from(["ReduceSum", "ReduceMean", "ReduceMax"]),
    opset=st.sampled_from([11, 13, 18]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    axes_seed=st.lists(st.integers(0, 7), max_size=3, unique=True),
    keepdims=st.integers(0, 1),
    noop=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_reductions(op, opset, shape, axes_seed, keepdims, noop, seed):
    rng = np.random.default_rng(seed)
    rank = len(shape)
    axes = sorted({a % (2 * rank) - rank for a in axes_seed}, key=lambda a: a % rank)
    axes = list({a % rank: a for a in axes}.values())
    x = rand(rng, *shape)
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    attrs = {"keepdims": keepdims}
    if as_input:
        attrs["noop_with_empty_axes"] = noop
        node = node_of(op, 2, **attrs)
        check(node, [x, np.array(axes, np.int64)], opset)
    else:
        if axes:
            attrs["axes"] = axes
        check(node_of(op, 1, **attrs), [x], opset)


# -- Resize --------------------------------------------------------------------------------------

RESIZE_MODES = [
    ("nearest", "asymmetric", "floor"),
    ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "align_corners", "round_prefer_ceil"),
    ("linear", "half_pixel", None),
    ("linear", "pytorch_half_pixel", None),
    ("linear", "align_corners", None),
    ("linear", "asymmetric", None),
]


@SMALL
@given(
    mode=st.sampled_from(RESIZE_MODES),
    by_sizes=st.booleans(),
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    factors=st.tuples(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), st.sampled_from([0.6, 1.0, 2.0])),
    seed=st.integers(0, 2**16),
)
def test_resize_nearest_and_linear(mode, by_sizes, size, factors, seed):
    rng = np.random.default_rng(seed)
    name, coordinates, nearest = mode
    attrs = {"mode": name, "coordinate_transformation_mode": coordinates}
    if nearest:
        attrs["nearest_mode"] = nearest
    x = rand(rng, 2, 3, *size)
    if by_sizes:
        sizes = np.array(
            [2, 3, *(max(1, round(s * f)) for s, f in zip(size, factors, strict=True))], np.int64
        )
        node = node_of("Resize", 4, absent=(1, 2), **attrs)
        check(node, [x, None, None, sizes], 19)
    else:
        scales = np.array([1, 1, *factors], np.float32)
        if 0 in [int(s * f) for s, f in zip(size, factors, strict=True)]:
            return
        check(node_of("Resize", 3, absent=(1,), **attrs), [x, None, scales], 19)


def test_resize_parallel(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(10)
    scales = np.array([1, 1, 2, 2], np.float32)
    for mode in ("nearest", "linear"):
        check(
            node_of("Resize", 3, absent=(1,), mode=mode), [rand(rng, 1, 2, 3, 4), None, scales], 19
        )


# -- data movement -------------------------------------------------------------------------------


def test_transpose_concat_gather_expand():
    rng = np.random.default_rng(11)
    x = rand(rng, 2, 3, 4)
    check(node_of("Transpose", 1, perm=[2, 0, 1]), [x])
    check(node_of("Transpose", 1), [x])
    check(
        node_of("Concat", 3, axis=-2), [rand(rng, 2, 1, 3), rand(rng, 2, 0, 3), rand(rng, 2, 4, 3)]
    )
    check(node_of("Concat", 2, axis=0, dtype=DType.INT64), [np.arange(3), np.arange(2)])
    check(node_of("Gather", 2, axis=1), [x, np.array([[0, -1], [2, 1]], np.int64)])
    check(node_of("Gather", 2, axis=-1), [x, np.array(-2, np.int64)])
    check(node_of("Gather", 2, dtype=DType.INT64), [np.arange(5), np.array([4, 0], np.int32)])
    check(node_of("Expand", 2), [rand(rng, 3, 1), np.array([2, 1, 4], np.int64)])


@SMALL
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    batch_dims=st.integers(0, 2),
    depth_seed=st.integers(0, 3),
    middle=st.lists(st.integers(0, 3), max_size=2),
    dtype=st.sampled_from([np.float32, np.int64, np.bool_]),
    index_type=st.sampled_from([np.int64, np.int32]),
    seed=st.integers(0, 2**16),
)
def test_gather_nd_of_any_batch_and_depth(
    shape, batch_dims, depth_seed, middle, dtype, index_type, seed
):
    """GatherND's rows taken at once into the output equal the reference, with negative
    indices, batch dims, empty index sets and every depth up to data's rank."""
    batch_dims = min(batch_dims, len(shape) - 1)
    depth = 1 + depth_seed % (len(shape) - batch_dims)
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(shape) * 5).astype(dtype)
    extents = np.array(shape[batch_dims : batch_dims + depth])
    index_shape = (*shape[:batch_dims], *middle, depth)
    indices = rng.integers(-extents, extents, size=index_shape).astype(index_type)
    node = node_of("GatherND", 2, dtype=None, batch_dims=batch_dims)
    check(node, [data, indices])


def test_gather_nd_out_of_range_is_the_reference_s_error(allow_reference):
    """An index out of range is left to the reference, which names it."""
    kernel = fast_kernel(node_of("GatherND", 2, dtype=None), OPSET)
    with pytest.raises(Sod2Error, match=r"\(GatherND\): indices out of range"):
        kernel(
            [np.ones((2, 3), np.float32), np.array([[2]], np.int64)], [np.empty((1, 3), np.float32)]
        )


@SMALL
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    perm_seed=st.randoms(use_true_random=False),
    dtype=st.sampled_from([np.float32, np.int64, np.bool_, np.float16, np.complex128]),
    parallel=st.booleans(),
)
def test_transpose_of_any_permutation_and_element_type(shape, perm_seed, dtype, parallel):
    """Swaps of two blocks of axes run as tiles (`_swap_tiles`), other permutations and element
    sizes through numpy: both give x.transpose(perm)."""
    perm = list(range(len(shape)))
    perm_seed.shuffle(perm)
    x = (np.arange(np.prod(shape)) % 7).astype(dtype).reshape(shape)
    out = np.zeros([shape[a] for a in perm], dtype)
    tiled = []

    def counted(version):
        def run(*args):
            tiled.append(version(*args))

        return run

    versions = tuple(counted(version) for version in kernels._SWAP_TILES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "PARALLEL_MIN", 0 if parallel else 1 << 40)
        patch.setattr(kernels, "_SWAP_TILES", versions)
        fast_kernel(node_of("Transpose", 1, perm=perm), OPSET)([x], [out])
    np.testing.assert_array_equal(out, x.transpose(perm))
    merged = kernels.merged_permutation(tuple(shape), tuple(perm))[1]
    assert bool(tiled) == (merged in kernels._SWAPS and x.dtype.itemsize <= 8)


@pytest.mark.parametrize(
    ("shape", "perm", "merged"),
    [
        ((64, 64, 256), (2, 0, 1), ((4096, 256), (1, 0))),  # channels last to first
        ((1, 4096, 8, 16), (0, 2, 1, 3), ((4096, 8, 16), (1, 0, 2))),  # attention heads
        ((2, 3, 4, 5), (0, 2, 1, 3), ((2, 3, 4, 5), (0, 2, 1, 3))),
        ((5, 1, 7), (1, 2, 0), ((5, 7), (1, 0))),  # an axis of extent 1 is no barrier
        ((2, 3, 4), (0, 1, 2), ((24,), (0,))),  # moves nothing
        ((2, 3, 4), (2, 1, 0), ((2, 3, 4), (2, 1, 0))),  # no two blocks: left to numpy
        ((1, 1), (1, 0), ((), ())),
    ],
)
def test_merged_permutation(shape, perm, merged):
    assert kernels.merged_permutation(shape, perm) == merged


def test_transpose_into_an_overlapping_output_goes_through_numpy():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    want = x.T.copy()
    plan = kernels._swap_plan(x.shape, (1, 0), x.dtype.itemsize)
    kernels._transpose_into(x, x, (1, 0), plan)  # numpy's copyto buffers an overlapping transpose
    np.testing.assert_array_equal(x, want)


def test_concat_leaves_inputs_already_in_their_place(monkeypatch):
    """An input the plan computed in its place in the output (a view of those bytes, whatever
    the stride of an axis of extent 1) is not copied again; the others are."""
    rng = np.random.default_rng(12)
    out = np.zeros((1, 5, 3, 2), np.float32)
    strides = (999 * 4, *out.strides[1:])  # axis 0 has extent 1: its stride is never used
    placed = np.lib.stride_tricks.as_strided(out[:, :2], shape=(1, 2, 3, 2), strides=strides)
    placed[...] = rand(rng, 1, 2, 3, 2)
    other = rand(rng, 1, 3, 3, 2)
    copies = []
    real = np.copyto
    monkeypatch.setattr(np, "copyto", lambda dst, src, **k: (copies.append(src), real(dst, src)))
    kernel = fast_kernel(node_of("Concat", 2, axis=1), OPSET)
    expected = np.concatenate([placed.copy(), other], axis=1)
    kernel([placed, other], [out], None)
    np.testing.assert_array_equal(out, expected)
    assert len(copies) == 1 and copies[0] is other


@pytest.mark.parametrize(
    "starts, ends, axes, steps",
    [
        ([1], [3], None, None),
        ([0, -1], [2, -5], [2, -1], [1, -2]),
        ([-100], [100], [1], [2]),
        ([3], [0], [2], [-1]),
    ],
)
def test_slice_by_inputs(starts, ends, axes, steps):
    rng = np.random.default_rng(12)
    arrays = [rand(rng, 3, 4, 5), np.array(starts), np.array(ends)]
    arrays += [None if axes is None else np.array(axes)]
    arrays += [None if steps is None else np.array(steps)]
    absent = tuple(i for i, a in enumerate(arrays) if a is None)
    check(node_of("Slice", 5, absent=absent), arrays, 13)


def test_slice_by_attributes_before_opset_10():
    rng = np.random.default_rng(13)
    check(node_of("Slice", 1, starts=[1, 0], ends=[3, -1], axes=[0, 2]), [rand(rng, 4, 2, 5)], 9)


@pytest.mark.parametrize("opset", [13, 18])
def test_pad_constant(opset):
    rng = np.random.default_rng(14)
    x = rand(rng, 2, 3, 4)
    check(node_of("Pad", 2), [x, np.array([0, 1, 2, 1, 0, 3], np.int64)], opset)
    check(
        node_of("Pad", 3),
        [x, np.array([1, 0, 0, 0, 2, 2], np.int64), np.array(7.5, np.float32)],
        opset,
    )
    if opset >= 18:
        node = node_of("Pad", 4, absent=(2,))
        check(node, [x, np.array([1, 2], np.int64), None, np.array([-1], np.int64)], opset)


# -- what gets no kernel, and what the reference computes ---------------------------------------


@pytest.mark.parametrize(
    "op, inputs, dtype, attrs",
    [
        ("Relu", 1, DType.FLOAT32, {}),
        ("Conv", 2, DType.FLOAT64, {}),
        ("Conv", 2, DType.FLOAT16, {}),
        ("Softmax", 1, DType.INT32, {}),
        ("MatMul", 2, DType.INT64, {}),
        ("LayerNormalization", 2, DType.FLOAT32, {"stash_type": 11}),
        ("Resize", 3, DType.FLOAT32, {"mode": "cubic"}),
        ("Resize", 3, DType.FLOAT32, {"mode": "linear", "antialias": 1}),
        ("Resize", 3, DType.FLOAT32, {"coordinate_transformation_mode": "tf_crop_and_resize"}),
        ("Pad", 2, DType.FLOAT32, {"mode": "reflect"}),
        ("BatchNormalization", 5, DType.FLOAT32, {"training_mode": 1}),
        ("Transpose", 1, DType.STRING, {}),
    ],
)
def test_unsupported_types_and_attributes_get_no_kernel(op, inputs, dtype, attrs):
    assert fast_kernel(node_of(op, inputs, dtype=dtype, **attrs), OPSET) is None


def test_max_pool_with_indices_gets_no_kernel():
    node = node_of("MaxPool", 1, outputs=2, kernel_shape=[2, 2])
    assert fast_kernel(node, OPSET) is None
    assert {"Conv", "MatMul", "Softmax", "Resize"} <= set(supported_ops())


def test_undeclared_types_are_computed_by_the_reference(allow_reference):
    node = node_of("Softmax", 1, dtype=None)
    check(node, [np.linspace(-3, 3, 12).reshape(3, 4)])  # float64: no loop nest for it
    conv = node_of("Conv", 2, dtype=None)
    check(conv, [np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3))])


def test_errors_of_the_reference_name_the_node(allow_reference):
    node = node_of("Gather", 2)
    kernel = fast_kernel(node, OPSET)
    with pytest.raises(Sod2Error, match=node.name):
        kernel([np.ones((3, 2), np.float32), np.array([3])], [np.empty((1, 2), np.float32)])


@SMALL
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 5),
    filters=st.integers(1, 5),
    padding=st.sampled_from(["none", "pads", "wide", "SAME_UPPER", "SAME_LOWER", "VALID"]),
    bias=st.booleans(),
    size=st.tuples(st.integers(3, 11), st.integers(3, 11)),
    block_bytes=st.sampled_from([1, 2000, 1 << 23]),
    seed=st.integers(0, 2**16),
)
def test_conv_winograd_matches_reference(
    batch, channels, filters, padding, bias, size, block_bytes, seed
):
    """Winograd F(2x2, 3x3) over odd and even output sizes (half tiles at the edges), pads of
    0 to 3 on any side, blocks of one tile row up to the whole image, with and without bias."""
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, batch, channels, *size), rand(rng, filters, channels, 3, 3)]
    arrays += [rand(rng, filters)] if bias else []
    attrs = {"pads": [1, 0, 2, 1]} if padding == "pads" else {}
    if padding == "wide":
        attrs["pads"] = [3, 2, 0, 3]
    elif padding not in ("none", "pads"):
        attrs["auto_pad"] = padding
    node = node_of("Conv", len(arrays), **attrs)
    kernel = ConvKernel(node, OPSET, strategy="winograd")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "WINOGRAD_BLOCK_BYTES", block_bytes)
        check(node, arrays, kernel=kernel)


def test_winograd_is_chosen_for_wide_3x3_convolutions_and_its_filters_laid_out_once(
    static_strategies,
):
    rng = np.random.default_rng(6)
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    kernel = ConvKernel(node, OPSET)
    wide = kernels.WINOGRAD_MIN_CHANNELS
    x, w, b = rand(rng, 1, wide, 6, 5), rand(rng, wide, wide, 3, 3, scale=0.1), rand(rng, wide)
    assert kernel.strategy_for(x.shape, w.shape) == "winograd"
    assert kernel.strategy_for((1, wide - 1, 6, 5), (wide, wide - 1, 3, 3)) == "im2col"
    assert kernel.strategy_for(x.shape, (wide - 1, wide, 3, 3)) == "kn2row"
    strided = ConvKernel(node_of("Conv", 3, pads=[1, 1, 1, 1], strides=[2, 2]), OPSET)
    assert strided.strategy_for(x.shape, w.shape) == "im2col"
    kernel.prepare(w)
    assert kernel._transformed is not None and kernel._transformed[0] is w
    check(node, [x, w, b], kernel=kernel)
    check(node, [x, w * 2, b], kernel=kernel)  # other weights: transformed at the call
    np.testing.assert_allclose(  # U[k] = (G g G^T)[a, b], here for a ones filter
        kernels.winograd_filters(np.ones((1, 1, 3, 3), np.float32))[:, 0, 0],
        np.outer([1, 1.5, 0.5, 1], [1, 1.5, 0.5, 1]).ravel(),
    )
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    expected = np.einsum("ai,mcij,bj->abmc", g, w.astype(np.float64), g).reshape(16, wide, wide)
    np.testing.assert_allclose(kernels.winograd_filters(w), expected, rtol=1e-6, atol=1e-7)
    strided.prepare(w)  # (no Winograd for a stride of 2: nothing laid out)
    assert strided._transformed is None


def test_a_winograd_of_small_weights_runs_as_tiles_and_keeps_no_transformed_filters(
    monkeypatch,
):
    monkeypatch.setattr(kernels, "CONV_PANEL_MAX_POSITIONS", 0)  # (not a small image)
    rng = np.random.default_rng(8)
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    wide = kernels.WINOGRAD_MIN_CHANNELS
    x, w, b = rand(rng, 1, wide, 9, 7), rand(rng, wide, wide, 3, 3, scale=0.1), rand(rng, wide)
    assert 4 * w.size <= kernels.TILES_WINOGRAD_WEIGHT_BYTES
    kernel = ConvKernel(node, OPSET)
    assert kernel.strategy_for(x.shape, w.shape) == "tiles"
    kernel.prepare(w)
    assert kernel._transformed is None
    check(node, [x, w, b], kernel=kernel)
    monkeypatch.setattr(kernels, "TILES_WINOGRAD_WEIGHT_BYTES", 4 * w.size - 1)
    over = ConvKernel(node, OPSET)
    assert over.strategy_for(x.shape, w.shape) == "winograd"
    over.prepare(w)
    assert over._transformed is not None


def test_kn2row_weights_are_laid_out_once_when_constant(static_strategies):
    rng = np.random.default_rng(5)
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    kernel = ConvKernel(node, OPSET)
    x, w, b = rand(rng, 1, 16, 9, 7), rand(rng, 12, 16, 3, 3), rand(rng, 12)
    assert kernel.strategy_for(x.shape, w.shape) == "kn2row"
    kernel.prepare(w)
    kernels.release_scratch()
    check(node, [x, w, b], kernel=kernel)
    assert not hasattr(kernels._SCRATCH, "stacked")  # the laid-out copy served
    check(node, [x, w * 2, b], kernel=kernel)  # other weights: stacked at the call, as before
    assert hasattr(kernels._SCRATCH, "stacked")
    strided = ConvKernel(node_of("Conv", 3, pads=[1, 1, 1, 1], strides=[2, 2]), OPSET)
    strided.prepare(w)  # (no kn2row for a stride of 2: nothing laid out)
    assert strided._packed is None


def packed_conv(node: Node, w: np.ndarray, least_rows: int | None) -> ConvKernel:
    """A ConvKernel of `node` told the fewest output positions an image can have, then given
    its constant weights `w` (as the runtime does)."""
    kernel = ConvKernel(node, OPSET)
    kernel.least_rows = least_rows
    kernel.prepare(w)
    return kernel


def test_small_deep_images_take_panels_where_their_filters_were_packed(monkeypatch):
    """Filters are packed where the runtime says an image may have CONV_PANEL_MAX_POSITIONS
    output positions or fewer; such images then take `panels` (padding, a stride, a batch),
    larger ones their usual strategy, and a kernel never told the fewest positions packs
    nothing."""
    monkeypatch.setattr(kernels, "TILES_MAX_WEIGHT_BYTES", 0)
    monkeypatch.setattr(kernels, "TILES_SMALL_IMAGE_WEIGHT_BYTES", 0)
    monkeypatch.setattr(kernels, "TILES_WINOGRAD_WEIGHT_BYTES", 0)
    rng = np.random.default_rng(8)
    wide = kernels.WINOGRAD_MIN_CHANNELS
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    w, b = rand(rng, wide, wide, 3, 3, scale=0.1), rand(rng, wide)
    kernel = packed_conv(node, w, 36)
    assert kernel._filters_packed is not None
    small, large = (2, wide, 6, 6), (1, wide, 13, 12)
    assert kernel.strategy_for(small, w.shape) == "panels"
    assert kernel.strategy_for(large, w.shape) == "winograd"
    for shape in (small, large):
        check(node, [rand(rng, *shape), w, b], kernel=kernel)
    strided = packed_conv(node_of("Conv", 2, pads=[0, 1, 2, 1], strides=[2, 2]), w, 9)
    assert strided.strategy_for((1, wide, 7, 5), w.shape) == "panels"
    check(strided.context.node, [rand(rng, 1, wide, 7, 5), w], kernel=strided)
    unknown = packed_conv(node, w, None)
    assert unknown._filters_packed is None
    assert unknown.strategy_for(small, w.shape) == "winograd"
    one_tap = rand(rng, wide, wide, 1, 1)  # one tap per channel: never panels
    pointwise = packed_conv(node_of("Conv", 2, strides=[2, 2]), one_tap, 9)
    assert pointwise._filters_packed is None


@pytest.mark.skipif(panel.TILE is None, reason="the machine has no register tiles")
def test_small_images_take_tiles_where_their_weights_are_not_too_large(monkeypatch):
    """An image of CONV_PANEL_MAX_POSITIONS output positions or fewer takes `tiles` where its
    weights are TILES_SMALL_IMAGE_WEIGHT_BYTES or fewer, whatever it would otherwise be, and
    its filters are not packed for `panels`; larger weights are packed and take `panels`."""
    monkeypatch.setattr(kernels, "TILES_MAX_WEIGHT_BYTES", 0)
    monkeypatch.setattr(kernels, "TILES_WINOGRAD_WEIGHT_BYTES", 0)
    rng = np.random.default_rng(10)
    wide = kernels.WINOGRAD_MIN_CHANNELS
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    w, b = rand(rng, wide, wide, 3, 3, scale=0.1), rand(rng, wide)
    assert 4 * w.size <= kernels.TILES_SMALL_IMAGE_WEIGHT_BYTES
    kernel = packed_conv(node, w, 36)
    assert kernel._filters_packed is None
    small, large = (2, wide, 6, 6), (1, wide, 13, 12)
    assert kernel.strategy_for(small, w.shape) == "tiles"
    assert kernel.strategy_for(large, w.shape) == "winograd"
    for shape in (small, large):
        check(node, [rand(rng, *shape), w, b], kernel=kernel)
    monkeypatch.setattr(kernels, "TILES_SMALL_IMAGE_WEIGHT_BYTES", 4 * w.size - 1)
    packed = packed_conv(node, w, 36)
    assert packed._filters_packed is not None
    assert packed.strategy_for(small, w.shape) == "panels"


def test_shallow_convolutions_take_tiles_and_wide_ones_and_gates_do_not():
    """`tiles` for small weights that would be a kn2row, an im2col or a direct loop (a stem,
    a shallow 3x3), in blocks of output rows; not for a gate's kn2row, weights over
    TILES_MAX_WEIGHT_BYTES, groups, or a Winograd's weights over TILES_WINOGRAD_WEIGHT_BYTES."""
    rng = np.random.default_rng(9)
    stem = ConvKernel(node_of("Conv", 3, pads=[3, 3, 3, 3], strides=[2, 2]), OPSET)
    x, w, b = rand(rng, 2, 3, 37, 45), rand(rng, 8, 3, 7, 7), rand(rng, 8)
    assert stem.strategy_for(x.shape, w.shape) == "tiles"
    check(stem.context.node, [x, w, b], kernel=stem)
    with pytest.MonkeyPatch.context() as patch:  # a block of a few output rows at a time
        patch.setattr(kernels, "DIRECT_BLOCK_BYTES", 4 * 2 * 3 * 2 * 26 * 9)
        assert kernels._tiles_block(x.shape, w.shape, stem._geometry((37, 45), (7, 7)))[0][0] < 19
        check(stem.context.node, [x, w, b], kernel=stem)
    node = node_of("Conv", 3, pads=[1, 1, 1, 1])
    kernel = ConvKernel(node, OPSET)
    shallow = (1, 16, 20, 70)
    assert kernel.strategy_for(shallow, (16, 16, 3, 3)) == "tiles"
    check(node, [rand(rng, *shallow), rand(rng, 16, 16, 3, 3), rand(rng, 16)], kernel=kernel)
    gate = (1, kernels.KN2ROW_GATE_CHANNELS, 9, 9)
    assert kernel.strategy_for(gate, (1, gate[1], 3, 3)) == "kn2row"
    too_wide = kernels.TILES_MAX_WEIGHT_BYTES // (4 * 9 * 32) + 1  # filters over the limit
    larger = (13, 12)  # (more than CONV_PANEL_MAX_POSITIONS positions)
    assert kernel.strategy_for((1, 32, *larger), (too_wide, 32, 3, 3)) == "im2col"
    wide = kernels.WINOGRAD_MIN_CHANNELS
    assert kernel.strategy_for((1, wide, *larger), (wide, wide, 3, 3)) == "tiles"
    deep = 2 * wide
    assert 4 * 9 * deep * deep > kernels.TILES_WINOGRAD_WEIGHT_BYTES
    assert kernel.strategy_for((1, deep, *larger), (deep, deep, 3, 3)) == "winograd"
    grouped = ConvKernel(node_of("Conv", 2, group=2), OPSET)
    assert grouped.strategy_for((1, 8, 9, 9), (16, 4, 3, 3)) != "tiles"


def test_shallow_convolutions_of_many_filters_take_an_im2col():
    """Fewer than TILES_SHALLOW_DEPTH taps per filter and TILES_SHALLOW_FILTERS filters or more
    (a subsampling from one channel): an im2col, not `tiles`; one filter fewer, `tiles`."""
    rng = np.random.default_rng(10)
    node = node_of("Conv", 3, strides=[2, 2])
    kernel = ConvKernel(node, OPSET)
    many = kernels.TILES_SHALLOW_FILTERS
    x = rand(rng, 2, 1, 23, 17)
    assert kernels.TILES_SHALLOW_DEPTH > 9
    if panel.TILE is not None:
        assert kernel.strategy_for(x.shape, (many - 1, 1, 3, 3)) == "tiles"
    assert kernel.strategy_for(x.shape, (many, 1, 3, 3)) == "im2col"
    check(node, [x, rand(rng, many, 1, 3, 3), rand(rng, many)], kernel=kernel)


@pytest.mark.skipif(panel.TILE is None, reason="the machine has no register tiles")
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        ((1, 48, 7, 7), (48, 48, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((2, 5, 9, 11), (13, 5, 3, 2), {"strides": [2, 3], "dilations": [2, 1]}),
        ((1, 3, 6, 5), (7, 3, 2, 2), {"strides": [2, 2], "pads": [1, 0, 0, 1]}),
    ],
)
def test_tiles_split_the_filters_among_tasks_where_an_image_is_few_runs(x_shape, w_shape, attrs):
    """An image of fewer runs of positions than TILES_MIN_TASKS has its filters cut into
    chunks of whole tiles (`_tiles_chunk`), and runs that cross output rows (whose last
    columns are computed and dropped) still give the reference's output."""
    rng = np.random.default_rng(4)
    assert kernels._tiles_chunk(48, 1) < 48 and kernels._tiles_chunk(48, 1) % panel.TILE.rows == 0
    assert kernels._tiles_chunk(48, kernels.TILES_MIN_TASKS) == 48
    node = node_of("Conv", 3, **attrs)
    arrays = [rand(rng, *x_shape), rand(rng, *w_shape), rand(rng, w_shape[0])]
    check(node, arrays, kernel=ConvKernel(node, OPSET, strategy="tiles"))


@pytest.mark.parametrize(
    ("strides", "pads"), [((1, 1), (1, 1)), ((2, 3), (2, 1)), ((3, 2), (0, 0))]
)
def test_padded_planes_split_the_padded_input_by_row_and_column_phase(strides, pads):
    """planes[n, c, a, b, r, q] is the zero-padded input's row first + r * sh + a, column
    q * sw + b, zeros past its edges, serially and in parallel."""
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, 7, 8)
    (sh, sw), (top, left), first, rows, span = strides, pads, 2, 4, 5
    padded = np.zeros((2, 3, 7 + 2 * top + 16, 8 + 2 * left + 16), np.float32)
    padded[:, :, top : top + 7, left : left + 8] = x
    want = np.empty((2, 3, sh, sw, rows, span), np.float32)
    for a in range(sh):
        for b in range(sw):
            want[:, :, a, b] = padded[:, :, first + a :: sh, b::sw][:, :, :rows, :span]
    for version in kernels._PADDED_PLANES:
        planes = np.full(want.shape, np.nan, np.float32)
        version(x, planes, first, top, left)
        np.testing.assert_array_equal(planes, want)


def test_tap_offsets_list_every_tap_in_the_weights_order():
    """Tap (c, i, j) of the flattened weights is at c * channel_step + row_at[i] + column_at[j],
    int64, one dimension."""
    row_at, column_at = np.array([0, 40, 7]), np.array([0, 3])
    table = kernels.tap_offsets(4, 1000, row_at, column_at)
    want = [c * 1000 + r + q for c in range(4) for r in row_at for q in column_at]
    assert table.dtype == np.int64 and table.shape == (24,)
    assert table.tolist() == want


# -- bound calls ---------------------------------------------------------------------------------


def check_bound(node: Node, arrays: list, opset: int = OPSET, kernel=None, constant=()) -> None:
    """`kernel.bind` checks the arrays once; its call computes the reference's outputs, each
    epilogue row once per call, and again from new values written into the same arrays (but
    those at the positions in `constant`, which a kernel may have laid out at compile time)."""
    kernel = kernel or fast_kernel(node, opset)
    wants = reference(node, arrays, opset)
    outs = [np.full(w.shape, np.nan, w.dtype) for w in wants]
    rows = outs[0].shape[0] if outs[0].ndim else 1
    covered = np.zeros(rows, dtype=np.int64)

    def epilogue(lo: int, hi: int) -> None:
        covered[lo:hi] += 1

    call = kernel.bind(arrays, outs, epilogue)
    assert call is not None
    rng = np.random.default_rng(3)
    for turn in (1, 2):
        call()
        for got, want in zip(outs, reference(node, arrays, opset), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert covered.tolist() == [turn] * rows
        for position, array in enumerate(arrays):
            if array.dtype == np.float32 and position not in constant:
                array[...] = rng.standard_normal(array.shape)


@pytest.mark.parametrize("panels", [False, True])
def test_matrix_products_bind(panels, small_blocks):
    rng = np.random.default_rng(21)
    matmul = fast_kernel(node_of("MatMul", 2), OPSET)
    b = rand(rng, 10, 40)
    if panels and kernels.panel.TILE is not None:
        matmul.body.prepare(b)
    check_bound(node_of("MatMul", 2), [rand(rng, 3, 5, 10), b], kernel=matmul, constant=(1,))
    check_bound(node_of("MatMul", 2), [rand(rng, 7, 10), b], kernel=matmul, constant=(1,))
    check_bound(node_of("MatMul", 2), [rand(rng, 2, 3, 4), rand(rng, 2, 4, 5)])  # a stack
    gemm = node_of("Gemm", 3, transB=1, alpha=0.5)
    check_bound(gemm, [rand(rng, 6, 4), rand(rng, 5, 4), rand(rng, 6, 5)])
    check_bound(node_of("Gemm", 3), [rand(rng, 6, 4), rand(rng, 4, 5), rand(rng, 5)])


def test_what_a_product_cannot_bind():
    rng = np.random.default_rng(22)
    out = np.empty((6, 5), np.float32)
    scaled = fast_kernel(node_of("Gemm", 3, beta=2.0), OPSET)  # beta * C is made per call
    assert scaled.bind([rand(rng, 6, 4), rand(rng, 4, 5), rand(rng, 6, 5)], [out]) is None
    matmul = fast_kernel(node_of("MatMul", 2), OPSET)
    assert matmul.bind([rand(rng, 6, 4), rand(rng, 3, 5)], [out]) is None  # (the reference says)
    assert matmul.bind([rand(rng, 4), rand(rng, 4, 5)], [out[0]]) is None  # a vector


BOUND_CONVS = [  # (X shape, filters, kernel, attributes)
    ((1, 8, 6, 6), 8, (1, 1), {}),
    ((2, 4, 9, 9), 6, (3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 10), 8, (3, 3), {"strides": [2, 2]}),
    ((1, 8, 9, 9), 8, (3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
    ((1, 128, 12, 12), 128, (3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 64, 26, 26), 128, (3, 3), {"strides": [2, 2]}),
    ((1, 64, 16, 16), 32, (5, 5), {}),
    ((2, 4, 12), 5, (3,), {"pads": [1, 1]}),
    ((1, 256, 4, 4), 256, (3, 3), {"pads": [1, 1, 1, 1]}),
]


def test_convolutions_bind_whatever_strategy_they_take():
    """A bound convolution computes what a call does at every run; the cases cover the
    strategies the kernel picks by itself."""
    rng = np.random.default_rng(25)
    taken = set()
    for shape, filters, kernel_shape, attrs in BOUND_CONVS:
        node = node_of("Conv", 3, kernel_shape=list(kernel_shape), **attrs)
        group = int(attrs.get("group", 1))
        w = rand(rng, filters, shape[1] // group, *kernel_shape, scale=0.1)
        arrays = [rand(rng, *shape), w, rand(rng, filters)]
        conv = fast_kernel(node, OPSET)
        conv.body.least_rows = 16  # (small deep images may take panels)
        conv.body.prepare(w)
        taken.add(conv.body.strategy_for(shape, w.shape))
        check_bound(node, arrays, kernel=conv, constant=(1,))
    expected = {"pointwise", "tiles", "direct", "winograd", "im2col", "kn2row"}
    assert expected | ({"panels"} if panel.TILE is not None else set()) <= taken


def test_what_a_convolution_cannot_bind():
    rng = np.random.default_rng(26)
    node = node_of("Conv", 2, kernel_shape=[3, 3])
    w = rand(rng, 4, 3, 3, 3)
    strided = rand(rng, 1, 3, 8, 16)[:, :, :, ::2]
    out = np.empty((1, 4, 6, 6), np.float32)
    assert fast_kernel(node, OPSET).bind([strided, w], [out]) is None  # (a copy made now)
    forced = ConvKernel(node, OPSET, strategy="im2col")
    assert forced.bind([rand(rng, 1, 3, 8, 8), w], [out]) is None


def test_layout_and_normalization_kernels_bind():
    rng = np.random.default_rng(23)
    check_bound(node_of("Transpose", 1, perm=[2, 0, 1]), [rand(rng, 2, 3, 4)])
    check_bound(node_of("Concat", 2, axis=1), [rand(rng, 2, 3, 4), rand(rng, 2, 1, 4)])
    check_bound(node_of("Softmax", 1), [rand(rng, 3, 7)])
    check_bound(node_of("Softmax", 1, axis=0), [rand(rng, 3, 7)])
    check_bound(node_of("LayerNormalization", 3), [rand(rng, 3, 8), rand(rng, 8), rand(rng, 8)])


def test_a_kernel_that_copies_an_input_now_does_not_bind():
    rng = np.random.default_rng(24)
    node = node_of("LayerNormalization", 2)
    strided = rand(rng, 3, 16)[:, ::2]
    out = np.empty(strided.shape, np.float32)
    assert fast_kernel(node, OPSET).bind([strided, rand(rng, 8)], [out]) is None
    broadcast = rand(rng, 1, 8)[:, :1]  # a Scale broadcast to the row: a copy
    assert fast_kernel(node, OPSET).bind([rand(rng, 3, 8), broadcast], [out[:, :8]]) is None
    assert fast_kernel(node_of("Softmax", 1), OPSET).bind([strided], [out]) is None


# -- integer and boolean elementwise ops ---------------------------------------------------------


@pytest.mark.parametrize("op", sorted(kernels._UFUNCS))
def test_elementwise_ops_over_integers_and_booleans(op):
    """Comparisons, logical ops and integer arithmetic, broadcast, computed as the reference
    does (integer arithmetic wraps); bound, the call computes what the arrays then hold."""
    rng = np.random.default_rng(5)
    logical = op in ("And", "Or", "Xor", "Not")
    dtype = np.bool_ if logical else np.int64
    declared = DType.BOOL if logical else DType.INT64
    arity = 1 if op == "Not" else 2
    node = node_of(op, arity, dtype=declared)
    shapes = [(3, 1, 4), (5, 1)][:arity]

    def operands() -> list[np.ndarray]:
        if logical:
            return [rng.random(shape) < 0.5 for shape in shapes]
        return [rng.integers(-(2**62), 2**62, shape).astype(dtype) for shape in shapes]

    arrays = operands()
    check(node, arrays)
    if not logical and op not in ("Add", "Sub", "Mul"):  # comparisons of floats too
        check(node_of(op, 2, dtype=None), [rand(rng, 2, 3), rand(rng, 3)])
    kernel = fast_kernel(node, OPSET)
    want = reference(node, arrays)[0]
    out = np.empty_like(want)
    call = kernel.bind(arrays, [out])
    assert call is not None
    fresh = operands()
    for array, new in zip(arrays, fresh, strict=True):
        array[...] = new
    call()
    np.testing.assert_array_equal(out, reference(node, fresh)[0])


def test_elementwise_kernels_decline_what_the_reference_computes(allow_reference):
    """Float arithmetic gets no kernel (fusion computes it); mixed types and outputs of
    another type decline at run time, and the reference's result is the one written."""
    assert fast_kernel(node_of("Add", 2, dtype=DType.FLOAT32), OPSET) is None
    node = node_of("Add", 2, dtype=None)
    check(node, [np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32)])
    check(node, [np.ones(3, np.float32), np.ones(3, np.float32)])  # undeclared floats
    equal = node_of("Equal", 2, dtype=DType.INT64)
    check(equal, [np.arange(4), np.arange(4, dtype=np.int32)])


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (np.int64, DType.FLOAT32),
        (np.bool_, DType.FLOAT32),
        (np.float32, DType.FLOAT64),
        (np.float16, DType.FLOAT32),
        (np.int64, DType.INT32),  # the low bits kept
        (np.int32, DType.INT64),
        (np.uint8, DType.INT8),
        (np.float32, DType.BOOL),  # NaN is true
        (np.int64, DType.BOOL),
    ],
)
def test_cast_between_numbers(source, target):
    rng = np.random.default_rng(3)
    if np.dtype(source).kind == "f":
        x = (rng.standard_normal((3, 5)) * 100).astype(source)
        x[0, :3] = [0.0, -0.0, np.nan]
    elif np.dtype(source).kind == "b":
        x = rng.random((3, 5)) < 0.5
    else:
        info = np.iinfo(source)
        x = rng.integers(info.min, info.max, (3, 5), dtype=source, endpoint=True)
    check(node_of("Cast", 1, dtype=DType.from_numpy(source), to=int(target)), [x])


@pytest.mark.parametrize(
    ("source", "target"),
    [(np.float64, DType.FLOAT32), (np.float32, DType.INT64), (np.int64, DType.FLOAT16)],
)
def test_casts_that_round_or_may_overflow_take_the_reference(
    allow_reference, monkeypatch, source, target
):
    x = np.array([1.5, -2.5, 1e300 if source == np.float64 else 3.0]).astype(source)
    node = node_of("Cast", 1, dtype=DType.from_numpy(source), to=int(target))
    taken = []
    original = kernels._Kernel.run_reference

    def counted(self, inputs, outputs, epilogue):
        taken.append(self.node.op_type)
        return original(self, inputs, outputs, epilogue)

    monkeypatch.setattr(kernels._Kernel, "run_reference", counted)
    with np.errstate(all="ignore"):
        check(node, [x])
    assert taken == ["Cast"]
