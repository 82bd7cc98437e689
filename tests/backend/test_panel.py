"""Panel products (`sod2.backend.panel`): packing, the register tile against float64 products
over shapes, strides and thread splits, and what the product declines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.backend import panel
from sod2.backend.panel import TileShape, pack_panels, panel_product, tile_shape

needs_tile = pytest.mark.skipif(panel.TILE is None, reason="this CPU has no FMA: no panels")


@pytest.mark.parametrize(
    ("features", "tile"),
    [
        ("+avx,+avx2,+fma,+avx512f,+avx512vl", TileShape(6, 4, 16)),
        ("+avx,+avx2,+fma,-avx512f", TileShape(6, 2, 8)),
        ("+avx,+avx2,-fma", None),
        ("+sse4.2", None),
        ("", None),
    ],
)
def test_the_tile_follows_the_vector_features(features, tile):
    assert tile_shape(features) == tile
    if tile is not None:
        # the sums, the panel's row and a broadcast fit the registers (32 zmm, 16 ymm)
        registers = 32 if tile.lanes == 16 else 16
        assert tile.rows * tile.vectors + tile.vectors + 1 <= registers


@needs_tile
def test_packing_lays_columns_out_by_panel_and_pads_with_zeros():
    width = panel.TILE.width
    b = np.arange(3 * (width + 5), dtype=np.float32).reshape(3, width + 5)
    packed = pack_panels(b)
    assert packed.shape == (2, 3, width)
    np.testing.assert_array_equal(packed[0], b[:, :width])
    np.testing.assert_array_equal(packed[1, :, :5], b[:, width:])
    assert not packed[1, :, 5:].any()
    np.testing.assert_array_equal(pack_panels(np.asfortranarray(b)), packed)


@pytest.mark.parametrize("populate", [True, False])
def test_large_panels_start_on_a_huge_page_and_read_zeros(populate, monkeypatch):
    """Panels of POPULATE_MIN_BYTES or more: zeros, writable, at a multiple of HUGE_PAGE; where
    the kernel refuses to map the pages at once, writing the zeros maps them."""
    if not populate:
        monkeypatch.setattr(panel, "_MADV_POPULATE_WRITE", -1)  # not an advice: refused
    shape = (panel.POPULATE_MIN_BYTES // 4 + 5,)
    zeros = panel._zeros(shape)
    assert zeros.shape == shape and zeros.dtype == np.float32
    assert zeros.ctypes.data % panel.HUGE_PAGE == 0
    assert not zeros.any()
    zeros[-1] = 1.0
    small = panel._zeros((3, 4))
    assert small.shape == (3, 4) and not small.any()


def laid_out(x: np.ndarray, pad: int) -> np.ndarray:
    """`x`'s values with `pad` unused elements after each row."""
    wide = np.full((x.shape[0], x.shape[1] + pad), np.nan, dtype=x.dtype)
    wide[:, : x.shape[1]] = x
    return wide[:, : x.shape[1]]


@needs_tile
@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 40),
    k=st.integers(1, 300),
    n=st.integers(1, 150),
    pads=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    split=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_a_float64_product(m, k, n, pads, split, seed):
    rng = np.random.default_rng(seed)
    a = laid_out(rng.standard_normal((m, k)).astype(np.float32), pads[0])
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = laid_out(np.full((m, n), np.nan, np.float32), pads[1])
    with pytest.MonkeyPatch.context() as patch:
        if split:  # even the smallest product goes over every thread
            patch.setattr(panel, "PARALLEL_MIN", 0)
        panel_product(a, pack_panels(b), out)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(out - expected) <= 1e-6 * k * scale + 1e-30)


@needs_tile
def test_deep_products_resume_their_sums_block_after_block(monkeypatch):
    monkeypatch.setattr(panel, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(1)
    depth = 3 * panel.DEPTH_BLOCK + 7
    a = rng.standard_normal((13, depth)).astype(np.float32)
    b = rng.standard_normal((depth, 2 * panel.TILE.width + 3)).astype(np.float32)
    out = np.empty((13, b.shape[1]), np.float32)
    panel_product(a, pack_panels(b), out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@needs_tile
def test_what_the_panels_decline():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 8)).astype(np.float32)
    b = rng.standard_normal((8, 40)).astype(np.float32)
    packed, out = pack_panels(b), np.empty((4, 40), np.float32)
    assert panel.fits(a, packed, out)
    assert not panel.fits(a.astype(np.float64), packed, out)
    assert not panel.fits(np.asfortranarray(a), packed, out)  # a row's elements not adjacent
    assert not panel.fits(a, packed, np.empty((4, 40), np.float32, order="F"))
    assert not panel.fits(a, packed, np.empty((4, 41 + panel.TILE.width), np.float32))
    assert not panel.fits(a[:, :7], packed, out)  # depth differs
    shared = np.empty((4, 48), np.float32)
    assert not panel.fits(shared[:, :8], packed, shared[:, 8:])  # out overlaps a
    with pytest.raises(ValueError, match=r"a \(4, 7\), packed \(\d+, 8, \d+\) and out \(4, 40\)"):
        panel_product(a[:, :7], packed, out)
    with pytest.raises(ValueError, match="2-D float32"):
        pack_panels(b.astype(np.float64))


@needs_tile
def test_an_empty_product_writes_nothing_and_an_empty_depth_writes_zeros():
    packed = pack_panels(np.ones((3, 40), np.float32))
    panel_product(np.ones((0, 3), np.float32), packed, np.empty((0, 40), np.float32))
    out = np.full((2, 40), np.nan, np.float32)
    panel_product(np.ones((2, 0), np.float32), pack_panels(np.ones((0, 40), np.float32)), out)
    np.testing.assert_array_equal(out, 0.0)


@needs_tile
@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 40),
    k=st.integers(1, 300),
    n=st.integers(1, 150),
    split=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gathered_rows_match_the_product_of_the_rows_they_gather(m, k, n, split, seed):
    """A[i, k] = source.flat[rows_at[i] + taps_at[k]], anywhere in the source (repeated,
    unordered): the product of that A, made explicit."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal((7, 11, 13)).astype(np.float32)
    rows_at = rng.integers(0, source.size // 2, m).astype(np.int64)
    taps_at = rng.integers(0, source.size // 2, k).astype(np.int64)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    with pytest.MonkeyPatch.context() as patch:
        if split:
            patch.setattr(panel, "PARALLEL_MIN", 0)
        panel.bind_gathered(source, rows_at, taps_at, pack_panels(b), out)()
    a = source.reshape(-1)[rows_at[:, None] + taps_at[None, :]].astype(np.float64)
    scale = np.abs(a) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(out - a @ b.astype(np.float64)) <= 1e-6 * k * scale + 1e-30)


@needs_tile
def test_a_gathered_product_reads_the_source_at_each_call_and_checks_its_tables():
    rng = np.random.default_rng(4)
    source = rng.standard_normal(50).astype(np.float32)
    rows_at, taps_at = np.arange(0, 20, 2, dtype=np.int64), np.arange(9, dtype=np.int64)
    b = rng.standard_normal((9, 70)).astype(np.float32)
    packed, out = pack_panels(b), np.empty((10, 70), np.float32)
    call = panel.bind_gathered(source, rows_at, taps_at, packed, out)
    source *= -3  # the call computes what the source then holds
    call()
    a = source[rows_at[:, None] + taps_at[None, :]]
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    past = rows_at + 32  # 50 + 8 > 50: a row reads past the source's end
    with pytest.raises(ValueError, match=r"source \(50,\), tables \(10,\) and \(9,\)"):
        panel.bind_gathered(source, past, taps_at, packed, out)
    with pytest.raises(ValueError, match="do not make a product"):
        panel.bind_gathered(source, rows_at - 1, taps_at, packed, out)  # before its start
    with pytest.raises(ValueError, match="do not make a product"):
        panel.bind_gathered(source, rows_at.astype(np.int32), taps_at, packed, out)
    with pytest.raises(ValueError, match="do not make a product"):
        panel.bind_gathered(source, rows_at, taps_at[:8], packed, out)  # depth differs
    with pytest.raises(ValueError, match="do not make a product"):
        panel.bind_gathered(source[::2], rows_at[:3], taps_at, packed, out[:3])  # strided
