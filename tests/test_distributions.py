"""Distributions (mcsim.distributions) against SciPy, truncation, and the Gaussian copula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from helpers import N_SE, minimal_config_text
from scipy.special import betainc, betaincinv, betaln, ndtr, ndtri_exp

from mcsim.config import parse_config_text
from mcsim.distributions import Z95, Distribution, canonical_fields, spearman_to_normal
from mcsim.draws import ParameterSampler

# These comparisons are deterministic (no sampling): tolerances are near float64 rounding,
# loosened only where the quantile function itself is ill-conditioned (beta tails).
RTOL = 1e-9


def _pert_scipy(a, m, b):
    alpha = 1 + 4 * (m - a) / (b - a)
    beta = 1 + 4 * (b - m) / (b - a)
    return st.beta(alpha, beta, loc=a, scale=b - a)


def _sd95(p5, p95):
    return (p95 - p5) / (2 * 1.6448536)


# (id, kind, fields as a config gives them, the scipy distribution it must equal)
CASES = [
    ("normal-mean-sd", "normal", {"mean": 1.0, "sd": 2.0}, st.norm(1.0, 2.0)),
    ("normal-negative", "normal", {"mean": -0.3, "sd": 0.05}, st.norm(-0.3, 0.05)),
    ("normal-p5-p95", "normal", {"p5": -0.51, "p95": -0.11},
     st.norm(-0.31, _sd95(-0.51, -0.11))),
    ("lognormal-median-sigma", "lognormal", {"median": 2.0, "sigma": 0.3},
     st.lognorm(s=0.3, scale=2.0)),
    ("lognormal-wide", "lognormal", {"median": 3e13, "sigma": 1.5},
     st.lognorm(s=1.5, scale=3e13)),
    ("lognormal-p5-p95", "lognormal", {"p5": 1.7, "p95": 4.0},
     st.lognorm(s=math.log(4.0 / 1.7) / (2 * 1.6448536), scale=math.sqrt(1.7 * 4.0))),
    ("uniform", "uniform", {"low": 1.0e8, "high": 1.4e8}, st.uniform(1.0e8, 0.4e8)),
    ("uniform-negative", "uniform", {"low": -2.0, "high": 0.5}, st.uniform(-2.0, 2.5)),
    ("triangular", "triangular", {"low": 1.0, "mode": 2.0, "high": 5.0},
     st.triang(0.25, loc=1.0, scale=4.0)),
    ("triangular-mode-at-low", "triangular", {"low": 0.0, "mode": 0.0, "high": 2.0},
     st.triang(0.0, loc=0.0, scale=2.0)),
    ("triangular-mode-at-high", "triangular", {"low": -1.0, "mode": 3.0, "high": 3.0},
     st.triang(1.0, loc=-1.0, scale=4.0)),
    ("pert", "pert", {"low": 0.45, "mode": 0.65, "high": 0.85}, _pert_scipy(0.45, 0.65, 0.85)),
    ("pert-skewed", "pert", {"low": 2.0e9, "mode": 3.0e9, "high": 4.5e9},
     _pert_scipy(2.0e9, 3.0e9, 4.5e9)),
    ("pert-mode-at-low", "pert", {"low": 0.0, "mode": 0.0, "high": 1.0}, st.beta(1.0, 5.0)),
    ("pert-mode-at-high", "pert", {"low": 1.5, "mode": 5.0, "high": 5.0},
     st.beta(5.0, 1.0, loc=1.5, scale=3.5)),
    ("beta", "beta", {"alpha": 2.0, "beta": 5.0}, st.beta(2.0, 5.0)),
    ("beta-u-shaped", "beta", {"alpha": 0.5, "beta": 0.5}, st.beta(0.5, 0.5)),
    ("beta-large", "beta", {"alpha": 30.0, "beta": 4.0}, st.beta(30.0, 4.0)),
]
CASE_IDS = [c[0] for c in CASES]

U = np.concatenate([[1e-12, 1e-9, 1e-6, 1e-3, 0.05], np.linspace(0.01, 0.99, 99),
                    [0.95, 0.999, 1 - 1e-6, 1 - 1e-9]])


def _make(kind, fields, lower=-math.inf, upper=math.inf):
    return Distribution(kind, canonical_fields(kind, fields), lower, upper)


@pytest.mark.parametrize("case_id, kind, fields, ref", CASES, ids=CASE_IDS)
def test_ppf_matches_scipy(case_id, kind, fields, ref):
    d = _make(kind, fields)
    got = d.ppf(U)
    assert got.shape == U.shape and got.dtype == np.float64
    scale = max(abs(ref.ppf(0.01)), abs(ref.ppf(0.99)), 1e-300)
    np.testing.assert_allclose(got, ref.ppf(U), rtol=RTOL, atol=1e-12 * scale)


@pytest.mark.parametrize("case_id, kind, fields, ref", CASES, ids=CASE_IDS)
def test_cdf_matches_scipy(case_id, kind, fields, ref):
    d = _make(kind, fields)
    x = ref.ppf(U)
    np.testing.assert_allclose(d.cdf(x), ref.cdf(x), rtol=1e-9, atol=1e-14)
    # outside the support the CDF is exactly 0 and 1
    lo, hi = ref.support()
    span = ref.ppf(0.99) - ref.ppf(0.01)
    if math.isfinite(lo):
        assert float(d.cdf(np.array(lo - span))) == 0.0
    if math.isfinite(hi):
        assert float(d.cdf(np.array(hi + span))) == 1.0
        assert float(d.cdf(np.array(hi))) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("case_id, kind, fields, ref", CASES, ids=CASE_IDS)
def test_cdf_inverts_ppf(case_id, kind, fields, ref):
    d = _make(kind, fields)
    u = np.linspace(0.001, 0.999, 199)
    np.testing.assert_allclose(d.cdf(d.ppf(u)), u, rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(d.ppf(u)) > 0)  # strictly increasing


@pytest.mark.parametrize("kind, p5, p95", [("normal", -0.51, -0.11), ("normal", 0.05, 0.45),
                                           ("lognormal", 1.7, 4.0),
                                           ("lognormal", 1.2e13, 7.5e13)])
def test_p5_p95_forms_reproduce_the_percentiles(kind, p5, p95):
    d = _make(kind, {"p5": p5, "p95": p95})
    # Z95 = 1.6448536 is the rounded z of the 95th percentile (MODEL.md); exact z differs
    # by 2.7e-8, so the percentiles come back to about 1e-7 relative.
    assert Z95 == 1.6448536
    np.testing.assert_allclose(d.ppf(np.array([0.05, 0.95])), [p5, p95], rtol=1e-7)
    np.testing.assert_allclose(d.cdf(np.array([p5, p95])), [0.05, 0.95], rtol=1e-7)


def test_p5_p95_canonical_fields_follow_model_md():
    n = canonical_fields("normal", {"p5": 1.0, "p95": 3.0})
    assert n == pytest.approx({"mean": 2.0, "sd": 2.0 / (2 * 1.6448536)}, rel=1e-15)
    ln = canonical_fields("lognormal", {"p5": 1.5, "p95": 4.0})
    assert ln == pytest.approx({"median": math.sqrt(6.0),
                                "sigma": math.log(4.0 / 1.5) / (2 * 1.6448536)}, rel=1e-15)


# --- truncation ----------------------------------------------------------------------------

# (id, kind, fields, min, max); min or max may be infinite (one-sided)
TRUNCATED = [
    ("normal-both", "normal", {"mean": 1.0, "sd": 2.0}, 0.0, 2.5),
    ("normal-min-only", "normal", {"mean": 0.2, "sd": 0.3}, 0.0, math.inf),
    ("normal-far-tail", "normal", {"mean": 0.0, "sd": 1.0}, 2.0, 4.0),
    ("normal-p5-p95-max", "normal", {"p5": 0.05, "p95": 0.45}, -math.inf, 0.3),
    ("lognormal-min", "lognormal", {"p5": 0.59, "p95": 1.95}, 0.2, math.inf),
    ("lognormal-both", "lognormal", {"median": 2.0, "sigma": 0.5}, 1.0, 5.0),
    ("uniform", "uniform", {"low": 0.0, "high": 10.0}, 2.0, 3.0),
    ("triangular", "triangular", {"low": 0.0, "mode": 1.0, "high": 4.0}, 0.5, 3.0),
    ("pert", "pert", {"low": 1.5, "mode": 3.0, "high": 5.0}, 2.0, 4.5),
    ("beta", "beta", {"alpha": 2.0, "beta": 5.0}, 0.1, 0.6),
]
TRUNC_IDS = [c[0] for c in TRUNCATED]


@pytest.mark.parametrize("case_id, kind, fields, lo, hi", TRUNCATED, ids=TRUNC_IDS)
def test_truncated_ppf_is_untruncated_ppf_of_rescaled_u(case_id, kind, fields, lo, hi):
    d = _make(kind, fields, lo, hi)
    d0 = _make(kind, fields)
    f_lo = float(d0.cdf(np.array(lo))) if math.isfinite(lo) else 0.0
    f_hi = float(d0.cdf(np.array(hi))) if math.isfinite(hi) else 1.0
    u = np.linspace(0.0005, 0.9995, 301)
    expected = d0.ppf(f_lo + u * (f_hi - f_lo))
    np.testing.assert_allclose(d.ppf(u), expected, rtol=1e-12, atol=1e-15)
    got = d.ppf(u)
    assert np.all(got >= lo) and np.all(got <= hi)
    # never clipped: the draws are strictly increasing in u, none piles up at the bounds
    assert np.all(np.diff(got) > 0)
    # the truncated CDF inverts the truncated ppf, and is 0 / 1 at the bounds
    np.testing.assert_allclose(d.cdf(got), u, rtol=1e-8, atol=1e-10)
    if math.isfinite(lo):
        assert float(d.cdf(np.array(lo - 1.0))) == 0.0
    if math.isfinite(hi):
        assert float(d.cdf(np.array(hi))) == 1.0
    assert d.support() == (max(lo, d0.support()[0]), min(hi, d0.support()[1]))


@pytest.mark.parametrize("mean, sd, lo, hi", [(1.0, 2.0, 0.0, 2.5), (0.0, 1.0, 2.0, 4.0),
                                              (0.2, 0.3, 0.0, math.inf),
                                              (-0.1, 0.04, -math.inf, -0.05)])
def test_truncated_normal_matches_scipy_truncnorm(mean, sd, lo, hi):
    d = _make("normal", {"mean": mean, "sd": sd}, lo, hi)
    ref = st.truncnorm((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd)
    u = np.linspace(0.001, 0.999, 199)
    np.testing.assert_allclose(d.ppf(u), ref.ppf(u), rtol=1e-8, atol=1e-12)
    x = ref.ppf(u)
    np.testing.assert_allclose(d.cdf(x), ref.cdf(x), rtol=1e-8, atol=1e-12)


def test_p5_p95_describe_the_distribution_before_truncation():
    d = _make("lognormal", {"p5": 0.59, "p95": 1.95}, 0.2, math.inf)
    d0 = _make("lognormal", {"p5": 0.59, "p95": 1.95})
    assert d.params == d0.params
    f_lo = float(d0.cdf(np.array(0.2)))
    assert f_lo > 0.0
    # the truncated 5th percentile is the untruncated quantile at F(min) + 0.05 (1 - F(min))
    np.testing.assert_allclose(d.ppf(np.array([0.05])),
                               d0.ppf(np.array([f_lo + 0.05 * (1 - f_lo)])), rtol=1e-12)
    assert float(d.ppf(np.array([0.05]))[0]) > 0.59


def test_config_distribution_is_the_table_distribution():
    text = minimal_config_text(parameters={
        "gpu_price_0": '{ dist = "lognormal", p5 = 1.7, p95 = 4.0 }',
        "token_growth_0": '{ dist = "lognormal", p5 = 0.59, p95 = 1.95, min = 0.2 }',
        "utilization_mean": '{ dist = "pert", low = 0.40, mode = 0.65, high = 0.85 }',
        "gpu_price_drift": '{ dist = "normal", mean = -0.2, sd = 0.1, max = 0.0 }',
        "api_token_share": '{ dist = "beta", alpha = 2, beta = 3 }',
    })
    params = parse_config_text(text).parameters
    u = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(params["gpu_price_0"].ppf(u),
                               st.lognorm(s=math.log(4 / 1.7) / (2 * 1.6448536),
                                          scale=math.sqrt(1.7 * 4)).ppf(u), rtol=1e-12)
    np.testing.assert_allclose(params["utilization_mean"].ppf(u),
                               _pert_scipy(0.40, 0.65, 0.85).ppf(u), rtol=1e-9)
    np.testing.assert_allclose(params["gpu_price_drift"].ppf(u),
                               st.truncnorm(-np.inf, 2.0, loc=-0.2, scale=0.1).ppf(u),
                               rtol=1e-8)
    assert params["token_growth_0"].lower == 0.2
    assert params["token_growth_0"].upper == math.inf
    np.testing.assert_allclose(params["api_token_share"].ppf(u), st.beta(2, 3).ppf(u),
                               rtol=1e-9)


# --- rank correlation ----------------------------------------------------------------------

def test_spearman_to_normal_known_values():
    assert spearman_to_normal(0.0) == 0.0
    assert spearman_to_normal(1.0) == pytest.approx(1.0, abs=1e-15)
    assert spearman_to_normal(-1.0) == pytest.approx(-1.0, abs=1e-15)
    assert spearman_to_normal(0.5) == pytest.approx(2 * math.sin(math.pi / 12), rel=1e-15)
    # inverse of the bivariate-normal relation rho_S = (6/pi) asin(r/2)
    for rho in np.linspace(-0.99, 0.99, 45):
        r = spearman_to_normal(float(rho))
        assert abs(r) >= abs(rho) - 1e-15  # |r| >= |rho_S| for a Gaussian copula
        assert (6 / math.pi) * math.asin(r / 2) == pytest.approx(rho, abs=1e-13)
        assert spearman_to_normal(-float(rho)) == pytest.approx(-r, abs=1e-15)


def _copula_config(rho: float, seed: int = 12345, **params):
    parameters = {
        "gpu_price_0": '{ dist = "lognormal", median = 2.0, sigma = 0.3 }',
        "tokens_0": '{ dist = "lognormal", p5 = 1.2e13, p95 = 7.5e13 }',
        "users_cap": '{ dist = "pert", low = 2.0e9, mode = 3.0e9, high = 4.5e9 }',
    }
    parameters.update(params)
    pairs = f'[["gpu_price_0", "tokens_0", {rho!r}]]'
    text = minimal_config_text(simulation={"seed": str(seed)}, parameters=parameters,
                               parameter_correlation={"pairs": pairs})
    return parse_config_text(text)


@pytest.mark.parametrize("rho", [0.5, -0.3])
def test_copula_gives_the_target_rank_correlation(rho):
    n = 20_000
    config = _copula_config(rho)
    theta = ParameterSampler(config).draw(0, n)
    got = st.spearmanr(theta["gpu_price_0"], theta["tokens_0"]).statistic
    # se of a sample rank correlation ~ (1 - rho^2) / sqrt(n - 3) (the normal-theory se of a
    # correlation coefficient, close to Spearman's for a Gaussian copula)
    se = (1 - rho**2) / math.sqrt(n - 3)
    assert abs(got - rho) < N_SE * se
    # the parameter left out of the copula stays independent of both
    for name in ("gpu_price_0", "tokens_0"):
        other = st.spearmanr(theta[name], theta["users_cap"]).statistic
        assert abs(other) < N_SE / math.sqrt(n - 3)


@pytest.mark.parametrize("rho", [0.5, -0.3])
def test_copula_leaves_the_marginals_unchanged(rho):
    n = 20_000
    config = _copula_config(rho)
    theta = ParameterSampler(config).draw(0, n)
    for name in ("gpu_price_0", "tokens_0", "users_cap"):
        dist = config.parameters[name]
        result = st.kstest(theta[name], lambda x, d=dist: d.cdf(x))
        assert result.pvalue > 1e-3, (name, result)


def test_copula_acts_on_uniforms_before_truncation():
    # truncation is a monotone map of the copula's uniform: the ranks (and so the rank
    # correlation) are those of the untruncated draws, exactly.
    n = 5_000
    plain = ParameterSampler(_copula_config(0.5)).draw(0, n)
    trunc = ParameterSampler(_copula_config(
        0.5, gpu_price_0='{ dist = "lognormal", median = 2.0, sigma = 0.3, min = 1.5, '
                         'max = 3.0 }')).draw(0, n)
    assert np.all((trunc["gpu_price_0"] >= 1.5) & (trunc["gpu_price_0"] <= 3.0))
    np.testing.assert_array_equal(np.argsort(trunc["gpu_price_0"], kind="stable"),
                                  np.argsort(plain["gpu_price_0"], kind="stable"))
    np.testing.assert_array_equal(trunc["tokens_0"], plain["tokens_0"])


def test_sampler_draws_are_chunk_invariant_with_a_copula():
    sampler = ParameterSampler(_copula_config(-0.3))
    full = sampler.draw(0, 2000)
    part = sampler.draw(700, 600)
    for name, values in full.items():
        np.testing.assert_array_equal(part[name], values[700:1300], err_msg=name)


# --- beta and PERT quantiles over the whole range of shapes --------------------------------

# 0.05 .. 1000 on a log grid, plus the band near 1 where betaincinv returns NaN at one tail
# (one shape 1.00-1.04, the other below 1: ~0.4% of random shapes crashed the table)
SHAPES = sorted(set(np.round(np.geomspace(0.05, 1000.0, 9), 6).tolist()
                    + [0.5, 0.51, 0.99, 1.0, 1.01, 1.025, 1.04]))
#: raw uniforms are odd multiples of 2^-53: the extremes 2^-53 .. 1 - 2^-53, and between
_U_TAILS = np.array([2.0**-53, 3 * 2.0**-53, 1e-15, 1e-12, 1e-9, 1e-6, 1e-4, 1e-2])
U_BETA = np.concatenate([_U_TAILS, np.linspace(0.02, 0.98, 97), 1.0 - _U_TAILS[::-1]])


def test_beta_quantile_matches_scipy_for_every_shape():
    """The log-space splines against SciPy's betaincinv (each half from its own tail, u and
    q = 1 - u exact), for 256 shapes; relative error where x is small (u < 1/2, where
    the tables hold log x). Measured worst (here and on 3000 random u): 1.2e-11 absolute
    and 2.5e-11 relative at (0.05, 0.05), where the quantile jumps from ~0 to ~1 within
    |z| < 0.4; 2.2e-15 and 4.3e-14 once both shapes are >= 0.5. Bounds: ~5x those. (The
    old spline in x had no relative accuracy near 0 and crashed on NaN knots.)"""
    lower = U_BETA < 0.5  # the tables switch to the upper tail at z = 0, u = 1/2
    worst_all, worst_regular = 0.0, 0.0
    for a in SHAPES:
        for b in SHAPES:
            x = Distribution("beta", {"alpha": a, "beta": b}).ppf(U_BETA)
            assert np.all(np.isfinite(x)) and np.all((x >= 0) & (x <= 1)), (a, b)
            assert np.all(np.diff(x) >= 0), (a, b)
            with np.errstate(all="ignore"):
                y_ref = np.where(lower, betaincinv(a, b, U_BETA), betaincinv(b, a, 1 - U_BETA))
                # SciPy is the reference where it reproduces its own target: it is off
                # at places (betaincinv(0.51, 0.51, 0.5) = 0.500000009; NaN in some tails)
                back = np.where(lower, betainc(a, b, y_ref), betainc(b, a, y_ref))
                target = np.where(lower, U_BETA, 1 - U_BETA)
                ok = np.isfinite(y_ref) & (np.abs(back - target) <= 1e-12 * target)
            x_ref = np.where(lower, y_ref, 1.0 - y_ref)
            err = np.abs(x - x_ref)[ok].max()
            # in the lower tail x itself is the small number: relative error there
            tail = ok & lower & (y_ref > 1e-290)
            rel = (np.abs(x - y_ref)[tail] / y_ref[tail]).max()
            assert err <= 6e-11 and rel <= 1.3e-10, (a, b, err, rel)
            worst_all = max(worst_all, err)
            if min(a, b) >= 0.5:
                worst_regular = max(worst_regular, err)
                assert err <= 5e-13 and rel <= 5e-12, (a, b, err, rel)
    assert worst_all > 1e-13  # the bound is not vacuous


@pytest.mark.parametrize("a, b", [(0.51, 1.025), (1.025, 0.51), (0.05, 1.02), (0.3, 1.04),
                                  (0.9, 1.04)])
def test_beta_table_where_betaincinv_fails(a, b):
    """betaincinv(1.025, 0.51, p) is NaN for p < 5e-17: the table's far knots (|z| > 8.29)
    are solved again. Checked by the round trip through betainc, which stays accurate."""
    with np.errstate(all="ignore"):
        assert np.isnan(betaincinv(max(a, b), min(a, b), 1e-17))  # the failure is real
    d = Distribution("beta", {"alpha": a, "beta": b})
    table = d._beta_table
    assert np.all(np.isfinite(table.c))
    z = np.linspace(-8.5, -8.0, 41)
    p = ndtr(z)
    # lower tail: I_x(a, b) = p (in log: x underflows below 1e-308 for a = 0.05, where
    # log I_x = a log x - log(a B(a, b)) to rounding); upper tail: I_{1-x}(b, a) = p
    log_x = table(z)
    tiny = log_x < -690.0
    log_i = np.where(tiny, a * log_x - math.log(a) - betaln(a, b),
                     np.log(betainc(a, b, np.exp(np.maximum(log_x, -690.0)))))
    np.testing.assert_allclose(log_i, np.log(p), rtol=1e-10)
    assert np.all(np.isfinite(d._beta_quantile(p)))
    y = np.exp(table(-z))  # 1 - x at u = 1 - p (the table holds log(1 - x) for z >= 0)
    np.testing.assert_allclose(betainc(b, a, y), p, rtol=1e-9)
    # a config with such a shape loads and draws
    text = minimal_config_text(parameters={
        "token_growth_inf": f'{{ dist = "beta", alpha = {a}, beta = {b} }}'})
    theta = ParameterSampler(parse_config_text(text)).draw(0, 2000)
    draws = theta["token_growth_inf"]
    assert np.all(np.isfinite(draws)) and np.all((draws >= 0) & (draws <= 1))


def test_pert_quantiles_match_scipy_for_extreme_modes():
    for low, mode, high in [(0.0, 1e-9, 1.0), (0.0, 1.0 - 1e-9, 1.0), (0.0, 0.49, 1.0),
                            (-5.0, -4.999, 5.0)]:
        d = Distribution("pert", {"low": low, "mode": mode, "high": high})
        ref = _pert_scipy(low, mode, high).ppf(U_BETA)
        np.testing.assert_allclose(d.ppf(U_BETA), ref, rtol=1e-12, atol=1e-13 * (high - low))


# --- truncation deep in a tail ---------------------------------------------------------------

DEEP = [  # (mean, sd, min, max): a range far out in a tail
    (0.12, 0.01, 0.19, math.inf),       # +7 sd: gave +inf on 43 of 10^6 draws
    (0.12, 0.01, 0.22, math.inf),       # +10 sd: refused, "keep some probability mass"
    (0.12, 0.01, -math.inf, 0.045),     # -7.5 sd: refused
    (0.0, 1.0, 12.0, 12.5),             # both ends out
    (0.0, 1.0, -30.0, -29.0),
    (0.0, 1.0, 5.0, math.inf),
]
#: the extremes of the uniforms a run draws (odd multiples of 2^-53), and between
U_EXTREME = np.concatenate([[2.0**-53, 1e-12, 1e-6], np.linspace(0.001, 0.999, 199),
                            [1 - 1e-6, 1 - 1e-12, 1 - 2.0**-53]])


@pytest.mark.parametrize("mean, sd, lo, hi", DEEP)
def test_deep_truncated_normal_matches_scipy_truncnorm(mean, sd, lo, hi):
    d = _make("normal", {"mean": mean, "sd": sd}, lo, hi)
    ref = st.truncnorm((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd)
    x = d.ppf(U_EXTREME)
    assert np.all(np.isfinite(x)) and np.all((x >= lo) & (x <= hi))
    assert np.all(np.diff(x) >= 0)
    # z-scale tolerance: SciPy's truncnorm itself is good to ~1e-10 this far out
    np.testing.assert_allclose((x - mean) / sd, (ref.ppf(U_EXTREME) - mean) / sd,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.cdf(x), U_EXTREME, rtol=1e-7, atol=1e-12)


def test_truncation_beyond_the_float64_tail_is_drawn_in_log_space():
    """min 40 sd out: F(min) is 1 - 4e-350, i.e. 1 in float64, and 1 - F(min) is 0; the
    draws lie just above min, the excess roughly exponential with mean 1/40 sd."""
    d = _make("normal", {"mean": 0.0, "sd": 1.0}, 40.0, math.inf)
    assert d.log_mass() == pytest.approx(float(st.norm.logsf(40.0)), rel=1e-12)
    x = d.ppf(U_EXTREME)
    assert np.all(np.isfinite(x)) and np.all(x >= 40.0) and np.all(np.diff(x) >= 0)
    # exact: P(X > x | X > 40) = Phi(-x) / Phi(-40), so x = -ndtri_exp(log(1-u) + logsf(40))
    expected = -ndtri_exp(np.log1p(-U_EXTREME) + st.norm.logsf(40.0))
    np.testing.assert_allclose(x, expected, rtol=1e-13)


def test_deep_truncated_lognormal_matches_scipy():
    """{ dist = "lognormal", median = 0.12, sigma = 0.1, max = 0.05 } (-8.75 sd) was
    refused; it is a truncated normal of the log."""
    d = _make("lognormal", {"median": 0.12, "sigma": 0.1}, -math.inf, 0.05)
    zh = math.log(0.05 / 0.12) / 0.1
    ref = np.exp(math.log(0.12) + 0.1 * st.truncnorm(-np.inf, zh).ppf(U_EXTREME))
    x = d.ppf(U_EXTREME)
    assert np.all((x > 0) & (x <= 0.05))
    np.testing.assert_allclose(x, ref, rtol=1e-9)


def test_deep_truncated_draws_follow_the_distribution():
    """10^6 draws of the +7 sd case through the sampler: none infinite, all >= min, and
    their mean within 4 standard errors (sd of the truncated normal / sqrt(n)) of
    truncnorm's mean. Fixed seed; before the fix 43 draws were +inf."""
    n = 1_000_000
    text = minimal_config_text(parameters={
        "token_growth_0": '{ dist = "normal", mean = 0.12, sd = 0.01, min = 0.19 }'})
    x = ParameterSampler(parse_config_text(text)).draw(0, n)["token_growth_0"]
    assert np.all(np.isfinite(x)) and np.all(x >= 0.19)
    ref = st.truncnorm(7.0, np.inf, loc=0.12, scale=0.01)
    assert abs(x.mean() - ref.mean()) < N_SE * ref.std() / math.sqrt(n)
    assert st.kstest(x, ref.cdf).pvalue > 1e-3


def test_device_draws_equal_host_draws_for_hard_shapes_and_deep_truncations():
    """The device recipe (device_draws) uses the same log-space tables and tail formulas:
    it matches the host's float64 draws to 1e-12 of each parameter's scale."""
    from mcsim.device_draws import draw_on_device

    text = minimal_config_text(parameters={
        "token_growth_0": '{ dist = "normal", mean = 0.12, sd = 0.01, min = 0.19 }',
        "gpu_price_drift": '{ dist = "normal", mean = 0.12, sd = 0.01, max = 0.045 }',
        "training_growth": '{ dist = "normal", mean = 0.0, sd = 1.0, min = 40.0 }',
        "gpu_price_0": '{ dist = "lognormal", median = 0.12, sigma = 0.1, max = 0.05 }',
        "efficiency_growth": '{ dist = "normal", mean = 0.5, sd = 0.2, min = 0.1, max = 1 }',
        "users_growth": '{ dist = "uniform", low = 0.0, high = 1e15, max = 10.0 }',
        "token_growth_inf": '{ dist = "beta", alpha = 0.51, beta = 1.025 }',
        "utilization_0": '{ dist = "beta", alpha = 1.025, beta = 0.51 }',
        "api_token_share": '{ dist = "beta", alpha = 0.05, beta = 0.05 }',
        "azure_share_0": '{ dist = "beta", alpha = 900, beta = 0.07 }',
        "utilization_mean": '{ dist = "pert", low = 0.4, mode = 0.4, high = 0.9 }',
    })
    cfg = parse_config_text(text)
    host = ParameterSampler(cfg).draw(1000, 4096)
    dev = draw_on_device(cfg, 1000, 4096)
    assert set(host) == set(dev)
    for k in host:
        assert np.all(np.isfinite(dev[k])), k
        scale = np.std(host[k]) + np.abs(np.mean(host[k])) + 1e-300
        assert np.max(np.abs(dev[k] - host[k])) <= 1e-12 * scale, k
    for name in ("token_growth_0", "gpu_price_drift", "training_growth", "gpu_price_0"):
        d = cfg.parameters[name]
        assert np.all((dev[name] >= d.lower) & (dev[name] <= d.upper)), name
