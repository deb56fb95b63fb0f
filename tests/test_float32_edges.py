"""Valid configs where the float32 kernel used to drift from (or fail where) float64 is fine:
parameters whose float32 rounding moves their logit, levels beyond float32's range whose
money is not, and half-lives of any size. Each compares the float32 run with the float64 run
of the same paths (same seed, so Monte Carlo error cancels: the tolerances are float32
rounding, not sampling error)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS_DIR, minimal_config_text

import mcsim
from mcsim import model, with_overrides
from mcsim.config import load_config, parse_config_text
from mcsim.draws import ParameterSampler, to_dtype

PATHS = 2048


def _cumulative_revenue(config, dtype):
    results = mcsim.simulate(config, paths=PATHS, dtype=dtype, progress=False)
    assert results.accumulator.nonfinite_paths == 0
    return float(results.mean("horizon")[0][0])


def test_conversion_mean_near_one_keeps_its_float64_logit():
    """conversion_mean = 0.9999999999 is 1 - 6e-8 in float32: its logit was 16.6 instead of
    23.0, and the mean cumulative revenue to 2025-06 came out $73.96B in float32 against
    $82.88B in float64 (12%). The logits are now computed from the float64 draws; measured
    after the fix: 1e-7 relative (same paths)."""
    cfg = with_overrides(load_config(CONFIGS_DIR / "base.toml"), {
        "parameters.conversion_mean": 0.9999999999, "simulation.horizon": "2025-06"})
    r32, r64 = _cumulative_revenue(cfg, "float32"), _cumulative_revenue(cfg, "float64")
    assert abs(r32 - r64) <= 1e-5 * r64, (r32, r64)


def test_host_draws_carry_float64_logits():
    text = minimal_config_text(parameters={
        "conversion_mean": '{ dist = "uniform", low = 0.9999999998, high = 0.99999999999 }',
        "utilization_0": "1e-12"})
    theta = ParameterSampler(parse_config_text(text)).draw(0, 64)
    t32 = to_dtype(theta, np.float32)
    exact = np.log(theta["conversion_mean"]) - np.log1p(-theta["conversion_mean"])
    assert t32["_logit_conversion_mean"].dtype == np.float32
    np.testing.assert_allclose(t32["_logit_conversion_mean"], exact, rtol=1e-6)
    assert np.all(t32["_logit_conversion_mean"] > 22.0)  # float32's own: <= 16.6
    # model.prepare / initial_state use them
    th = model.prepare({k: jnp.asarray(v) for k, v in t32.items()})
    np.testing.assert_allclose(np.asarray(th["_logit_conversion_mean"]), exact, rtol=1e-6)
    state = model.initial_state(th, model.deal_terms(parse_config_text(text).deal,
                                                     parse_config_text(text).grid), 3)
    assert float(state.logit_utilization[0]) == pytest.approx(math.log(1e-12), rel=1e-6)


def test_tokens_beyond_float32_range_with_money_inside():
    """Tokens 1e25 times more, each worth 1e25 times less and served 1e25 times more
    efficiently: the same money, but tokens pass float32's 3.4e38 in the first months.
    exp(log_tokens) overflowed and every path failed the non-finite limit; every flow is now
    one exp of a sum of logs. The float32 run equals the plain config's float64 run to
    float32 rounding (|log D| ~ 90 carries ~ulp(90)/90 = 8e-8 a month)."""
    plain = parse_config_text(minimal_config_text())
    scaled = parse_config_text(minimal_config_text(parameters={
        "tokens_0": "3e38", "tokens_per_gpu_hour_0": "4e30",
        "api_revenue_per_mtok_0": "5e-25"}))
    r32 = _cumulative_revenue(scaled, "float32")
    r64 = _cumulative_revenue(plain, "float64")
    assert abs(r32 - r64) <= 1e-5 * r64, (r32, r64)


@pytest.mark.parametrize("halflife", ["3.4e38", "1e-30",
                                      '{ dist = "lognormal", median = 1.0, sigma = 40.0 }'])
def test_halflives_of_any_size(halflife):
    """2^(-dt/h) is 1 to rounding for a huge half-life and 0 for a tiny one, in float32 as in
    float64; a lognormal with sigma 40 draws half-lives from 1e-140 to 1e140 (beyond
    float32's range: rounded into (0, 3.4e38], which changes nothing)."""
    cfg = parse_config_text(minimal_config_text(parameters={
        "token_growth_halflife": halflife, "gpu_price_drift_inf": "-0.05",
        "gpu_price_drift_halflife": halflife}))
    r32, r64 = _cumulative_revenue(cfg, "float32"), _cumulative_revenue(cfg, "float64")
    assert abs(r32 - r64) <= 1e-5 * r64, (r32, r64)


def test_decay_steps_of_extreme_halflives():
    h = jnp.asarray([3.4e38, 1e10, 1.0, 1e-10, np.finfo(np.float32).tiny], jnp.float32)
    theta = {f"{n}_halflife": h for n in model.HALFLIFE_RATES}
    theta.update({n: jnp.full(5, 0.5, jnp.float32) for n in (
        "utilization_0", "utilization_mean", "conversion_0", "conversion_mean",
        *model.LOG_LEVELS)})
    steps = np.asarray(model.prepare(theta)["_decay_step_token_growth"])
    assert steps.dtype == np.float32
    np.testing.assert_allclose(steps, [1.0, 1.0, 2.0 ** (-1 / 12), 0.0, 0.0], rtol=1e-6)


# --- version 3 (MODEL.md E-G): its sums are float64, its parameters drawn in float32 -------

def _v3_rows(**sections):
    """The float32 kernel's per-path rows of a 3-month config (4 paths), by horizon total."""
    from valid_configs import _per_path

    from mcsim.layout import StatLayout

    config = parse_config_text(minimal_config_text(**sections))
    stats, _, theta = _per_path(config, 4)
    layout = StatLayout.of(config)
    assert np.isfinite(stats).all(), "a non-finite row"
    return {name: stats[layout.row(name)] for name in layout.horizon_totals}, stats, layout


def test_v3_extremes_stay_finite_in_float32():
    """cash_0 just below float32's largest number, rounds of 1e300 $ (float64 deal terms),
    a discount rate of 1e300 per year (month 0's factor exp(-r x 0) = 1, not NaN; every later
    month's 0), Microsoft's whole stake at a multiple of 3e38: every row finite."""
    rows, stats, layout = _v3_rows(
        simulation={"horizon": '"2024-03"', "discount_rate": "1e300"},
        funding={"cash_0": "3e38", "rounds": '[["2024-01", 1e300], ["2024-03", 1e300]]'},
        parameters={"microsoft_equity_stake": "1.0", "valuation_multiple": "3e38"})
    assert (rows["funding_to_find"] == 0).all()
    cash = stats[layout.rows("cash")][0]
    assert (cash >= 2e300 * (1 - 1e-12)).all()
    # only month 0 counts: the present value of Azure spend is the first month's
    first = stats[layout.rows("cumulative_azure_spend")][0]
    np.testing.assert_allclose(rows["pv_cumulative_azure_spend"], first, rtol=1e-12)
    assert (rows["pv_microsoft_equity_value"] == 0).all()
    assert (rows["microsoft_equity_value"] > 1e38).all()


@pytest.mark.parametrize("sections", [
    {"funding": {"cash_0": "1e39"}},
    {"parameters": {"microsoft_equity_stake": "0.27", "valuation_multiple": "1e39"}},
], ids=["cash_0", "valuation_multiple"])
def test_v3_parameters_beyond_float32_stay_finite(sections):
    _v3_rows(simulation={"horizon": '"2024-03"'}, **sections)
