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
