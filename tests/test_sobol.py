"""Sobol sensitivity estimators (mcsim.sobol): closed forms, interval scaling, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mcsim.sobol import (
    ISHIGAMI_INDICES,
    SobolIndices,
    design,
    estimate,
    ishigami,
    ishigami_indices,
    radial_matrices,
)

NAMES = ("x1", "x2", "x3")


def run_ishigami(num_base: int, design_seed: int = 1, bootstrap_seed: int = 2) -> SobolIndices:
    """Indices of the standard Ishigami function (a = 7, b = 0.1) from N base rows."""
    A, B = design(num_base, 3, seed=design_seed)
    return estimate(ishigami(A), ishigami(B), ishigami(radial_matrices(A, B)), NAMES,
                    seed=bootstrap_seed)


@pytest.fixture(scope="module")
def ishigami_small() -> SobolIndices:
    return run_ishigami(2**10)


@pytest.fixture(scope="module")
def ishigami_large() -> SobolIndices:
    return run_ishigami(2**14)


def test_ishigami_closed_form_values():
    first, total = ishigami_indices(7.0, 0.1)
    np.testing.assert_allclose(first, [0.3139, 0.4424, 0.0], atol=1e-4)
    np.testing.assert_allclose(total, [0.5576, 0.4424, 0.2437], atol=1e-4)
    np.testing.assert_array_equal(ISHIGAMI_INDICES[0], first)
    np.testing.assert_array_equal(ISHIGAMI_INDICES[1], total)


def test_ishigami_estimates_match_closed_form(ishigami_large):
    first, total = ISHIGAMI_INDICES
    r = ishigami_large
    # The tolerance is the estimator's own sampling error: 4 bootstrap standard errors (the
    # std of the bootstrap replicates) leaves a correct estimator a ~1e-4 chance per index of
    # failing, and the 1e-3 floor covers an index whose SE happens to be ~0. The bootstrap
    # treats the N base rows as i.i.d., so for a Sobol (QMC) design it overstates the error;
    # the test is then conservative, never too strict.
    assert np.all(np.abs(r.first - first) <= 4 * r.first_se + 1e-3)
    assert np.all(np.abs(r.total - total) <= 4 * r.total_se + 1e-3)
    # Sanity of the SEs themselves: positive, and small at N = 2^14 (a few percent of V).
    assert np.all((r.first_se > 0) & (r.first_se < 0.03))
    assert np.all((r.total_se > 0) & (r.total_se < 0.03))
    # Output variance V = a^2/8 + b pi^4/5 + b^2 pi^8/18 + 1/2 = 13.8446 for a = 7, b = 0.1.
    assert r.variance == pytest.approx(13.8446, rel=0.05)


def test_ishigami_intervals_cover_exact_values(ishigami_large):
    first, total = ISHIGAMI_INDICES
    r = ishigami_large
    assert r.confidence == 0.95 and r.num_base == 2**14 and r.num_bootstrap == 1000
    covered = np.concatenate([
        (r.first_low <= first) & (first <= r.first_high),
        (r.total_low <= total) & (total <= r.total_high),
    ])
    # 95% intervals: 5 of 6 allows one honest miss.
    assert covered.sum() >= 5
    assert np.all(r.first_low <= r.first) and np.all(r.first <= r.first_high)
    assert np.all(r.total_low <= r.total) and np.all(r.total <= r.total_high)


def test_interval_width_shrinks_like_inverse_sqrt_n(ishigami_small, ishigami_large):
    # 16 times the rows: widths should shrink about sqrt(16) = 4 times.
    def widths(r: SobolIndices) -> np.ndarray:
        return np.concatenate([r.first_high - r.first_low, r.total_high - r.total_low])

    ratio = widths(ishigami_small) / widths(ishigami_large)
    assert np.all((ratio > 2) & (ratio < 8)), ratio


def test_linear_additive_model():
    # y = sum c_i x_i with independent uniforms: no interactions, so S_i = ST_i =
    # c_i^2 var(x) / sum c^2 var(x) = c_i^2 / sum c^2.
    c = np.array([1.0, 2.0, 3.0, 0.5])
    exact = c**2 / np.sum(c**2)
    A, B = design(2**12, len(c), seed=5)
    names = ("a", "b", "c", "d")
    r = estimate(A @ c, B @ c, radial_matrices(A, B) @ c, names, seed=6)
    # Tolerance: the sampling error, as in the Ishigami test.
    assert np.all(np.abs(r.first - exact) <= 4 * r.first_se + 1e-3)
    assert np.all(np.abs(r.total - exact) <= 4 * r.total_se + 1e-3)
    frame = r.to_frame()
    assert list(frame.index) == ["c", "b", "a", "d"]  # descending total index
    assert frame.index.name == "factor"
    assert list(frame.columns) == ["first", "first_low", "first_high", "first_se", "total",
                                   "total_low", "total_high", "total_se"]
    assert frame.loc["c", "total"] == r.total[2]


@pytest.mark.parametrize("value", [0.0, 1.0, 12345.678])
def test_constant_output_gives_nan_without_warnings(value):
    # e.g. an event indicator that is never (0) or always (1) set in the sample.
    n, k = 64, 3
    f = np.full(n, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = estimate(f, f, np.full((k, n), value), NAMES)
        frame = r.to_frame()
    assert r.variance == 0.0
    for field in ("first", "total", "first_low", "first_high", "total_low", "total_high",
                  "first_se", "total_se"):
        values = getattr(r, field)
        assert values.shape == (k,) and np.all(np.isnan(values)), field
    assert list(frame.index) == list(NAMES)


def test_rare_event_indicator_has_finite_results_without_warnings():
    # One event in 8 rows: many bootstrap resamples miss it (constant output, V = 0); those
    # replicates are left out instead of producing warnings or infinities.
    f_A = np.zeros(8)
    f_A[3] = 1.0
    f_B = np.zeros(8)
    f_AB = np.zeros((2, 8))
    f_AB[0, 3] = 1.0  # the event depends on factor "b" only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = estimate(f_A.astype(bool), f_B.astype(int), f_AB, ("a", "b"), seed=3)
    for field in ("first", "total", "first_low", "first_high", "total_low", "total_high",
                  "first_se", "total_se"):
        assert np.all(np.isfinite(getattr(r, field))), field
    assert r.variance == pytest.approx(1 / 16 - (1 / 16) ** 2)


def test_design_shapes_and_open_interval():
    A, B = design(2**8, 5, seed=0)
    assert A.shape == B.shape == (2**8, 5)
    both = np.concatenate([A, B], axis=1)
    assert np.all((both > 0) & (both < 1))
    # Sobol points are balanced: each column has exactly half its points in each half.
    assert np.all(np.sum(both < 0.5, axis=0) == 2**7)


def test_radial_matrices_swap_one_column():
    A, B = design(2**4, 3, seed=0)
    AB = radial_matrices(A, B)
    assert AB.shape == (3, 2**4, 3)
    for i in range(3):
        expected = A.copy()
        expected[:, i] = B[:, i]
        np.testing.assert_array_equal(AB[i], expected)


@pytest.mark.parametrize("num_base", [0, 1, 3, 1000, 2.0, True, -4])
def test_bad_num_base(num_base):
    with pytest.raises(ValueError, match="num_base"):
        design(num_base, 3, seed=0)


def test_mismatched_shapes():
    n = 16
    f = np.arange(n, dtype=float)
    with pytest.raises(ValueError, match="f_B"):
        estimate(f, f[:-1], np.zeros((3, n)), NAMES)
    with pytest.raises(ValueError, match="f_AB"):
        estimate(f, f, np.zeros((2, n)), NAMES)  # k = 2 rows but 3 names
    with pytest.raises(ValueError, match="f_AB"):
        estimate(f, f, np.zeros((3, n + 1)), NAMES)
    with pytest.raises(ValueError, match="f_A"):
        estimate(np.zeros((n, 1)), f, np.zeros((3, n)), NAMES)
    with pytest.raises(ValueError, match="distinct"):
        estimate(f, f, np.zeros((3, n)), ("x", "x", "y"))
    with pytest.raises(ValueError, match="non-finite"):
        estimate(np.full(n, np.nan), f, np.zeros((3, n)), NAMES)
    with pytest.raises(ValueError, match="A and B"):
        radial_matrices(np.zeros((n, 3)), np.zeros((n, 2)))
    with pytest.raises(ValueError, match="last axis"):
        ishigami(np.zeros((n, 2)))


def test_same_seed_same_numbers():
    A1, B1 = design(2**9, 3, seed=11)
    A2, B2 = design(2**9, 3, seed=11)
    np.testing.assert_array_equal(A1, A2)
    np.testing.assert_array_equal(B1, B2)
    assert not np.array_equal(A1, design(2**9, 3, seed=12)[0])

    outputs = (ishigami(A1), ishigami(B1), ishigami(radial_matrices(A1, B1)))
    r1 = estimate(*outputs, NAMES, num_bootstrap=200, seed=4)
    r2 = estimate(*outputs, NAMES, num_bootstrap=200, seed=4)
    r3 = estimate(*outputs, NAMES, num_bootstrap=200, seed=5)
    for field in ("first", "total", "first_low", "first_high", "total_low", "total_high",
                  "first_se", "total_se"):
        np.testing.assert_array_equal(getattr(r1, field), getattr(r2, field))
    # Another bootstrap seed moves the intervals, not the point estimates.
    np.testing.assert_array_equal(r1.first, r3.first)
    assert not np.array_equal(r1.first_low, r3.first_low)


def test_results_are_read_only(ishigami_small):
    with pytest.raises(ValueError):
        ishigami_small.first[0] = 0.0
