import sympy
from hypothesis import given
from hypothesis import strategies as st

from sod2.analysis.symbolic import ceil_div, dim_max, dim_min, floor_div, provably_equal
from sod2.ir import evaluate_dim, symbol

H, W = symbol("H"), symbol("W")


def test_equal_divisions_built_differently_are_identical():
    assert floor_div(H - 1, 2) + 1 == ceil_div(H, 2)
    assert floor_div(floor_div(H, 2), 2) == floor_div(H, 4)
    assert floor_div(2 * H + 2, 4) == floor_div(H + 1, 2)
    assert floor_div(ceil_div(H, 2), 16) == floor_div(H + 1, 32)


def test_exact_divisions_disappear():
    assert floor_div(2 * H, 2) == H
    assert floor_div(6 * H + 3, 3) == 2 * H + 1
    assert floor_div(H, 1) == H


def test_resnet_stem_extent():
    conv = floor_div(H + 2 * 3 - (7 - 1) - 1, 2) + 1  # 7x7, stride 2, pad 3
    pool = floor_div(conv + 2 * 1 - (3 - 1) - 1, 2) + 1  # 3x3, stride 2, pad 1
    assert pool == ceil_div(H, 4)
    assert evaluate_dim(pool, {"H": 224}) == 56


def test_ints_stay_ints():
    assert floor_div(7, 2) == 3 and type(floor_div(7, 2)) is int
    assert ceil_div(7, 2) == 4 and dim_min(3, 5) == 3 and dim_max(3, 5) == 5


def test_min_and_max_know_symbols_are_positive():
    assert dim_max(H, 1) == H
    assert dim_min(H, 1) == 1


def test_provably_equal_is_conservative():
    assert provably_equal((H + 1) * 2, 2 * H + 2)
    assert not provably_equal(H, W)
    assert not provably_equal(floor_div(H, 2) * 2, H)  # false for odd H


_atoms = st.sampled_from([H, W, H * W, floor_div(H, 3), ceil_div(W, 2)])


@st.composite
def _numerators(draw):
    terms = draw(st.lists(st.tuples(st.integers(-3, 4), _atoms), min_size=1, max_size=3))
    return sympy.Add(*(c * a for c, a in terms)) + draw(st.integers(-9, 9))


@given(_numerators(), st.integers(1, 9), st.integers(1, 40), st.integers(1, 40), st.booleans())
def test_divisions_evaluate_like_integer_division(numerator, divisor, h, w, ceil):
    built = ceil_div(numerator, divisor) if ceil else floor_div(numerator, divisor)
    value = int(numerator.subs({H: h, W: w}))
    expected = -(-value // divisor) if ceil else value // divisor
    assert evaluate_dim(built, {"H": h, "W": w}) == expected
