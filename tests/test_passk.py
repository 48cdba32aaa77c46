"""pass@k against brute force over all k-subsets, and the avg@N / pass@N summary."""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entropic_rl.evaluation.passk import ks_up_to, pass_at_k, summarize


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) holding at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_brute_force_for_every_small_case(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


@st.composite
def n_c_k(draw, max_n=8):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@given(n_c_k())
def test_property_brute_force(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


@given(n_c_k(max_n=2000))
def test_property_pass1_passn_range_and_monotone(nck):
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)
    assert pass_at_k(n, c, n) == float(c > 0)
    if k < n:
        assert pass_at_k(n, c, k + 1) >= value - 1e-12  # more tries never hurt
    if c < n:
        assert pass_at_k(n, c + 1, k) >= value - 1e-12  # nor more correct samples


def test_large_n_is_finite_and_matches_the_binomials():
    n, c, k = 1000, 3, 256  # C(1000, 256) overflows a float; the product form does not
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [(4, 1, 5, "k=5 > n=4"), (4, 5, 2, "c=5"), (4, -1, 2, "c=-1"), (4, 1, 0, "k must be >= 1"), (0, 0, 1, "k=1 > n=0")],
)
def test_invalid_input_raises_a_clear_error(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_non_integers_are_rejected():
    with pytest.raises(ValueError, match="c must be an int"):
        pass_at_k(4, 1.0, 2)
    with pytest.raises(ValueError, match="n must be an int"):
        pass_at_k(True, 1, 1)


@pytest.mark.parametrize(
    ("n", "ks"),
    [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (32, [1, 2, 4, 8, 16, 32])],
)
def test_ks_up_to(n, ks):
    assert ks_up_to(n) == ks


@pytest.mark.parametrize("n", [0, -3, 2.0])
def test_ks_up_to_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        ks_up_to(n)


def test_summarize_hand_computed():
    summary = summarize([1, 0, 4], n=4)
    assert list(summary) == ["avg@4", "pass@1", "pass@2", "pass@4"]
    assert summary["avg@4"] == pytest.approx((1 / 4 + 0 + 1) / 3)
    assert summary["pass@1"] == pytest.approx(summary["avg@4"])
    assert summary["pass@2"] == pytest.approx((brute_force_pass_at_k(4, 1, 2) + 0 + 1) / 3)
    assert summary["pass@4"] == pytest.approx(2 / 3)


def test_summarize_with_chosen_ks_still_reports_pass_at_n():
    assert list(summarize([2, 0], n=8, ks=[1, 3])) == ["avg@8", "pass@1", "pass@3", "pass@8"]


@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=20))
def test_property_summary_edges(correct):
    summary = summarize([sum(row) for row in correct], n=5)
    assert summary["pass@1"] == pytest.approx(summary["avg@5"])
    assert summary["pass@5"] == sum(any(row) for row in correct) / len(correct)
    assert summary["avg@5"] <= summary["pass@2"] + 1e-12 <= summary["pass@4"] + 2e-12 <= summary["pass@5"] + 3e-12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], 4), "no problems"),
        (([1], 0), "n must be an int >= 1"),
        (([3], 2), r"counts must lie in \[0, n=2\]"),
        (([1], 4, [8]), "k=8 > n=4"),
    ],
)
def test_summarize_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        summarize(*args)
