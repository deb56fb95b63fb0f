"""The feature-complete config (every v1 feature of MODEL.md at once) against the NumPy
float64 reference, two ways.

1. **Statistically, on independent samples.** The engine (``mcsim.simulate``, default
   float32 kernel, its own device draws and Threefry shocks) runs N_ENGINE paths; the
   reference runs N_REF paths whose worlds are drawn by :func:`mcsim.reference.draw_parameters`
   (scipy.stats, read off the TOML tables) from NumPy's PCG64 uniforms and whose shocks are
   NumPy normals: an independent Monte Carlo sample that shares no random numbers and no
   sampling code with the engine. Every headline statistic of MODEL.md's "What every run
   reports" must agree within N_SE combined standard errors:

   * fan chart: cumulative Azure spend at every year end (13, the last is the horizon
     month): p5, p25, p50, p75, p95 and mean (13 x 6 = 78 comparisons);
   * annual flows by calendar year (azure spend, azure inference spend, revenue, revenue
     share, then version 2's ten: inference, training, other opex, compute, profit, net and
     reverse revenue share, commitment shortfall, Azure margin, paid to Microsoft; 13
     years, partial first and last): mean and median (14 x 13 x 2 = 364);
   * repayment and credit exhaustion: P(by the end of each calendar year before the last)
     and P(not by the horizon) (2 x (12 + 1) = 26);
   * at the horizon: cumulative revenue, cumulative profit, Microsoft receipts, Microsoft
     net, deepest cumulative loss, Microsoft's economic return and its net: mean and median
     (7 x 2 = 14).

   482 comparisons in all (some are degenerate: revenue share is 0 on every path after
   revenue_share_end, so both sides give exactly 0; they count as z = 0).

   Standard errors (z = difference / SE):

   * means: ``sqrt(s_e^2/n_e + s_r^2/n_r)`` from the sample variances (the engine's
     ``Results.mean`` reports ``s_e/sqrt(n_e)`` from its exact moment accumulators);
   * probabilities: binomial, pooled under the null of equal p:
     ``sqrt(p (1-p) (1/n_e + 1/n_r))``, ``p = (k_e + k_r) / (n_e + n_r)``;
   * quantiles: the engine's SE is its reported 95% interval over 2 x 1.959964 (the
     interval runs between the lower edge of the bin holding order statistic
     ``n p - 1.96 sqrt(n p (1-p))`` and the upper edge of the bin holding ``n p + 1.96
     sqrt(...)``, so it already holds the Monte Carlo error plus a bin width); the
     reference's quantile is its exact empirical quantile, with SE from the spacing of its
     order statistics at the same ranks, ``(x_(hi) - x_(lo)) / (2 x 1.96)``, which is
     ``sqrt(p (1-p) / n) / f(q)`` with the density f estimated by that spacing; and the
     engine's log-linear interpolation inside a histogram bin (relative width w = 0.46%)
     is added as one more term of size ``w |q|``, its largest possible error:
     ``SE = sqrt(se_e^2 + se_r^2 + (w q)^2)``.

   Family-wise: a two-sided 4-SE excursion of a normal has probability 6.3e-5, so with 482
   comparisons the chance of any false alarm is at most 482 x 6.3e-5 = 3.0% (union bound;
   the comparisons are positively correlated, e.g. neighbouring year ends, so the real
   rate is lower). The estimates are close to normal at these sample sizes (the heaviest
   tail is the 2036 cumulative Azure spend, a sum of lognormal-like months). Measured over
   10 other seed pairs: mean z^2 is 1.03 for the means, 0.84 for the probabilities and 0.50
   for the quantiles (whose bin-width term is conservative), and the worst |z| of a run
   1.7 to 2.5. Power: dropping the parameter copula from the reference gives |z| = 23,
   dropping losses_before_start 14; uncorrelated shocks give only 3.8, which part 2 covers.

   Sizes: N_ENGINE = 131,072 and N_REF = 100,000 paths take about 5 s each on 2 idle CPU
   cores (the reference runs 5,000 paths at a time, ~0.2 s each); the whole file about
   30 s, twice that on a loaded machine.

2. **Path by path on the same shocks.** The JAX kernel (``mcsim.engine.flows_from_normals``, float64
   and float32) and :func:`mcsim.reference.simulate_reference` on the same theta and the
   same normals, with this config's correlated shocks (a non-identity Cholesky factor; in
   float32 this once crashed the scan), every flow of every path, with test_model.py's
   tolerances (float64: 1e-11 of the month's money scale; float32: 2e-4); the whole
   float64 engine on the same paths (same first-passage months, same means); and the
   reference's own parameter draws against :class:`mcsim.draws.ParameterSampler` and the
   engine's device draws on the same uniforms.
"""

from __future__ import annotations

import dataclasses
import time

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    KERNEL_FLOWS,
    N_SE,
    REPO_ROOT,
    assert_float64_kernel_is_the_reference,
    flow_errors,
    kernel_flows,
    money_scale,
)

import mcsim
from mcsim import load_config, reference
from mcsim.device_draws import draw_on_device
from mcsim.draws import ParameterSampler
from mcsim.engine import shock_cholesky
from mcsim.layout import ANNUAL_FLOWS, HORIZON_TOTALS
from mcsim.rng import parameter_uniforms, shock_normals_reference

CONFIG_NAME = "all_features_v1.toml"
#: the config lives in the project's shared folder, inside the checkout or beside it
CANDIDATES = (REPO_ROOT / "shared" / "check" / CONFIG_NAME,
              REPO_ROOT.parent / "shared" / "check" / CONFIG_NAME)

N_ENGINE = 131_072
N_REF = 100_000
REF_CHUNK = 5_000          # reference paths per call (it holds every flow of every month)
ENGINE_SEED = 20_240_301   # Threefry streams of the engine
REF_SEED = 918_273         # NumPy PCG64 stream of the reference: shares nothing with it
Z_95 = 1.959964
PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)

N_PATH_BY_PATH = 400
FLOWS = list(KERNEL_FLOWS)


@pytest.fixture(scope="module")
def config():
    path = next((p for p in CANDIDATES if p.exists()), None)
    if path is None:
        # a config that must always run: its absence is a failure, never a skip
        pytest.fail(f"{CONFIG_NAME} not found in {', '.join(map(str, CANDIDATES))}")
    return load_config(path)


# --- 1. statistics on independent samples -------------------------------------------------


def _year_ends(grid) -> np.ndarray:
    """Month index of the last month of every calendar year in the grid (the last one is
    the horizon)."""
    year = grid.year_of_month()
    return np.array([np.nonzero(year == y)[0][-1] for y in range(len(grid.years))])


def _reference_sample(cfg) -> dict[str, np.ndarray]:
    """Per-path statistics of N_REF reference paths drawn from NumPy's generator."""
    grid = cfg.grid
    T = grid.num_months
    params = cfg.resolved["parameters"]
    pairs = cfg.resolved.get("parameter_correlation", {}).get("pairs", [])
    k = len(reference.drawn_parameters(params))
    year = grid.year_of_month()
    years = range(len(grid.years))
    ends = _year_ends(grid)
    rng = np.random.default_rng(REF_SEED)
    parts = []
    for start in range(0, N_REF, REF_CHUNK):
        n = min(REF_CHUNK, N_REF - start)
        # uniforms in the open (0, 1): (j + 1/2) / 2^52, exact in float64
        u = (rng.integers(0, 2**52, size=(n, k)) + 0.5) * 2.0**-52
        theta = reference.draw_parameters(params, pairs, u)
        normals = rng.standard_normal((T, n, 5))
        normals[0] = 0.0  # row 0 unused
        ref = reference.simulate_reference(theta, cfg.deal, grid, normals,
                                           cfg.shock_correlation)
        part = {"cumulative_azure_spend": np.cumsum(ref["azure_spend"], axis=0)[ends],
                "repayment": ref["repayment_month"], "credit": ref["credit_exhaustion_month"]}
        for flow in ANNUAL_FLOWS:
            part[flow] = np.array([ref[flow][year == y].sum(axis=0) for y in years])
        part["horizon"] = np.array([ref[name] for name in HORIZON_TOTALS])
        parts.append(part)
    return {key: np.concatenate([p[key] for p in parts], axis=-1) for key in parts[0]}


def _z(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return 0.0 if diff == 0 else np.inf


def _mean_z(x_ref, mean_e, se_e):
    n = x_ref.shape[-1]
    se = np.sqrt(se_e**2 + x_ref.var(axis=-1, ddof=1) / n)
    return _z(mean_e - x_ref.mean(axis=-1), se)


def _quantile_z(x_ref, p, value_e, low_e, high_e, width):
    """z of an engine histogram quantile against the reference's exact one (see module)."""
    s = np.sort(x_ref)
    n = len(s)
    q_ref = s[max(int(np.ceil(n * p)) - 1, 0)]  # inverted CDF: the empirical p-quantile
    half = Z_95 * np.sqrt(n * p * (1 - p))
    lo, hi = s[max(int(np.floor(n * p - half)), 0)], s[min(int(np.ceil(n * p + half)), n - 1)]
    se_ref = (hi - lo) / (2 * Z_95)
    se_e = (high_e - low_e) / (2 * Z_95)
    se = np.sqrt(se_e**2 + se_ref**2 + (width * value_e) ** 2)
    return _z(value_e - q_ref, se)


def _probability_z(k_e, n_e, k_r, n_r):
    p = (k_e + k_r) / (n_e + n_r)
    return _z(k_e / n_e - k_r / n_r, np.sqrt(p * (1 - p) * (1 / n_e + 1 / n_r)))


def _comparisons(res, ref, grid) -> dict[str, float]:
    """Every headline statistic: name -> z."""
    z: dict[str, float] = {}
    width = res.bins.relative_width
    ends = _year_ends(grid)
    years = grid.year_labels()

    def quantiles(group, rows, x_ref, labels, percentiles):
        q = res.quantiles(group, percentiles)
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            for j, pct in enumerate(percentiles):
                z[f"{group}[{label}] p{pct:g}"] = _quantile_z(
                    x_ref[i], pct / 100, q.value[row, j], q.ci_low[row, j],
                    q.ci_high[row, j], width)

    def means(group, rows, x_ref, labels):
        mean, se = res.mean(group)
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            z[f"{group}[{label}] mean"] = _mean_z(x_ref[i], mean[row], se[row])

    fan_labels = [grid.label(t) for t in ends]
    quantiles("cumulative_azure_spend", ends, ref["cumulative_azure_spend"], fan_labels,
              PERCENTILES)
    means("cumulative_azure_spend", ends, ref["cumulative_azure_spend"], fan_labels)
    for flow in ANNUAL_FLOWS:
        rows = range(len(years))
        quantiles(flow, rows, ref[flow], years, (50.0,))
        means(flow, rows, ref[flow], years)
    rows = range(len(HORIZON_TOTALS))
    quantiles("horizon", rows, ref["horizon"], HORIZON_TOTALS, (50.0,))
    means("horizon", rows, ref["horizon"], HORIZON_TOTALS)

    T = grid.num_months
    for name, dist, months in (("repayment", res.repayment, ref["repayment"]),
                               ("credit_exhaustion", res.credit_exhaustion, ref["credit"])):
        n_e, n_r = dist.counts.sum(), len(months)
        for t in ends[:-1]:
            z[f"P({name} by {grid.label(t)})"] = _probability_z(
                dist.counts[: t + 1].sum(), n_e, np.sum(months <= t), n_r)
        z[f"P({name} not by the horizon)"] = _probability_z(
            dist.counts[T], n_e, np.sum(months == T), n_r)
    return z


def test_every_statistic_matches_the_reference_on_independent_samples(config):
    t0 = time.perf_counter()
    res = mcsim.simulate(config, paths=N_ENGINE, seed=ENGINE_SEED, progress=False)
    t1 = time.perf_counter()
    ref = _reference_sample(config)
    t2 = time.perf_counter()
    assert res.num_paths == N_ENGINE and res.accumulator.nonfinite_paths == 0
    assert res.info.dtype == "float32"

    z = _comparisons(res, ref, config.grid)
    assert len(z) == 482
    worst = max(z, key=lambda k: abs(z[k]))
    print(f"\n{len(z)} comparisons ({sum(v != 0 for v in z.values())} non-degenerate); "
          f"worst |z| = {abs(z[worst]):.2f} at {worst}; engine {t1 - t0:.1f} s "
          f"({N_ENGINE} paths), reference {t2 - t1:.1f} s ({N_REF} paths)")
    bad = {k: round(v, 2) for k, v in z.items() if not abs(v) < N_SE}
    assert not bad, f"beyond {N_SE} standard errors: {bad}"


# --- 2. path by path on the same shocks ----------------------------------------------------


@pytest.fixture(scope="module")
def same_paths(config):
    grid = config.grid
    theta = ParameterSampler(config).draw(0, N_PATH_BY_PATH)
    normals = shock_normals_reference(config.simulation.seed, 0, N_PATH_BY_PATH,
                                      grid.num_months)
    ref = reference.simulate_reference(theta, config.deal, grid, normals,
                                       config.shock_correlation)
    return theta, normals, ref


def test_the_config_uses_every_feature(config):
    """What part 2 is meant to cover is really in the config."""
    chol = np.array(shock_cholesky(config))
    assert np.abs(chol - np.diag(np.diag(chol))).max() > 0.1   # correlated shocks
    deal = config.deal
    assert deal.losses_before_start > 0 and deal.loss_carryforward
    assert deal.revenue_share_end and deal.revenue_share_cap and deal.profit_cap
    assert deal.azure_credits and set(deal.recoup_from) == {"profit_share", "revenue_share"}
    assert config.correlation_pairs
    params = config.resolved["parameters"]
    kinds = {spec["dist"] for spec in params.values() if isinstance(spec, dict)}
    assert kinds == {"normal", "lognormal", "uniform", "triangular", "pert", "beta"}
    companions = [f"{r}_{c}" for r in reference.DECAYING_RATES for c in ("inf", "halflife")]
    assert any(isinstance(params[c], dict) for c in companions)


def test_reference_draws_equal_the_parameter_sampler(config):
    """MODEL.md's recipe (scipy.stats on the TOML tables) and ParameterSampler on the same
    uniforms: copula, p5/p95 forms, truncation and companions, path by path."""
    sampler = ParameterSampler(config)
    u = parameter_uniforms(config.simulation.seed, 0, 4096, sampler.indices)
    assert reference.drawn_parameters(config.resolved["parameters"]) == sampler.uncertain
    ours = reference.draw_parameters(config.resolved["parameters"],
                                     config.resolved["parameter_correlation"]["pairs"], u)
    # the samplers may add derived per-path constants (keys starting with "_")
    theirs = {k: v for k, v in sampler.draw(0, 4096).items() if not k.startswith("_")}
    device = {k: np.asarray(v) for k, v in draw_on_device(config, 0, 4096).items()}
    assert sorted(ours) == sorted(theirs)
    for name, x in theirs.items():
        scale = np.abs(x).max() + 1e-300
        np.testing.assert_allclose(ours[name], x, rtol=1e-12, atol=1e-13 * scale,
                                   err_msg=name)
        # the engine draws on the device: the same recipe, to float64 rounding
        np.testing.assert_allclose(device[name], x, rtol=1e-12, atol=1e-13 * scale,
                                   err_msg=name)


def test_engine_float64_equals_reference_on_the_same_paths(config):
    """The whole engine (device draws, Threefry shocks correlated in its chunk kernel,
    accumulators) in float64 against the reference on the same theta and normals: the
    same first-passage months on every path and the same means."""
    n, grid = 2048, config.grid
    res = mcsim.simulate(config, paths=n, dtype="float64", progress=False)
    theta = ParameterSampler(config).draw(0, n)
    normals = shock_normals_reference(config.simulation.seed, 0, n, grid.num_months)
    ref = reference.simulate_reference(theta, config.deal, grid, normals,
                                       config.shock_correlation)
    np.testing.assert_array_equal(
        res.event_counts("repayment"),
        np.bincount(ref["repayment_month"], minlength=grid.num_months + 1))
    np.testing.assert_array_equal(
        res.event_counts("credit_exhaustion"),
        np.bincount(ref["credit_exhaustion_month"], minlength=grid.num_months + 1))
    np.testing.assert_allclose(res.mean("cumulative_azure_spend")[0],
                               np.cumsum(ref["azure_spend"], axis=0).mean(axis=1), rtol=1e-10)
    year = grid.year_of_month()
    for flow in ANNUAL_FLOWS:
        annual = np.array([ref[flow][year == y].sum(axis=0) for y in range(len(grid.years))])
        np.testing.assert_allclose(res.mean(flow)[0], annual.mean(axis=1), rtol=1e-10,
                                   atol=1e-6, err_msg=flow)
    horizon = np.array([ref[name].mean() for name in HORIZON_TOTALS])
    scale = np.abs(ref["cumulative_revenue"]).mean()
    np.testing.assert_allclose(res.mean("horizon")[0], horizon, rtol=1e-10, atol=1e-10 * scale)


def test_float64_kernel_equals_reference_with_correlated_shocks(config, same_paths):
    theta, normals, ref = same_paths
    final, flows = kernel_flows(config, theta, normals, jnp.float64)
    errors = flow_errors(flows, ref)
    print(f"\nfloat64 max error / scale: {max(errors.values()):.2e} {errors}")
    assert_float64_kernel_is_the_reference(final, flows, ref)
    np.testing.assert_allclose(final.cum_profit_share + final.cum_revenue_share,
                               ref["microsoft_receipts"], rtol=1e-11, atol=1.0)
    # the deal's features really bite on these paths: each line is crossed by some paths
    # and not by others, and the losses before start move the profit share
    deal = config.deal
    m_total, q_total = ref["revenue_share"].sum(axis=0), ref["profit_share"].sum(axis=0)
    assert 0 < np.mean(np.abs(m_total - deal.revenue_share_cap) < 1.0) < 1
    assert 0 < np.mean(q_total > deal.investment) < 1
    assert 0 < np.mean(np.abs(q_total - deal.profit_cap) < 1.0) < 1
    assert np.all(ref["revenue_share"][config.grid.index(deal.revenue_share_end) + 1:] == 0)
    no_losses = reference.simulate_reference(
        theta, dataclasses.replace(deal, losses_before_start=0.0), config.grid, normals,
        config.shock_correlation)
    assert np.any(no_losses["profit_share"] != ref["profit_share"])


def test_float32_kernel_close_to_reference_with_correlated_shocks(config, same_paths):
    """test_model.py's float32 bounds: 2e-4 of the month's money scale for every flow, the
    profit share against the money to date (it is paid from a pool integrating every
    earlier month)."""
    theta, normals, ref = same_paths
    final, flows = kernel_flows(config, theta, normals, jnp.float32)
    month_scale = money_scale(ref)
    errors = {}
    for name in FLOWS:
        scale = np.cumsum(month_scale, axis=0) if name == "profit_share" else month_scale
        errors[name] = (np.abs(flows[name] - ref[name]) / scale).max()
    print(f"\nfloat32 max error / scale: {max(errors.values()):.2e} {errors}")
    for name, err in errors.items():
        assert err < 2e-4, (name, err)
    assert np.mean(final.repayment_month == ref["repayment_month"]) > 0.99
    assert np.mean(final.credit_month == ref["credit_exhaustion_month"]) > 0.99
