"""Precision at extreme but valid parameters: the float32 kernel against float64 on every
reported statistic, and running sums that lose no money to rounding.

The float64 kernel equals the NumPy float64 reference to 1e-10 (test_engine, test_model),
so a float64 run stands for the reference here, on the same paths and shocks. The bound
asserted, FLOAT32_MEAN_RTOL, is the documented one (README "Reproducibility and
precision"); the worst error found per scenario is printed (``-s``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import minimal_config_text

from mcsim import model
from mcsim.api import run
from mcsim.config import parse_config_text
from mcsim.device_draws import draw_on_device
from mcsim.engine import flows_from_normals, shock_cholesky
from mcsim.rng import shock_normals_reference

#: Documented bound on the float32 kernel's relative error of any reported mean.
FLOAT32_MEAN_RTOL = 2e-3

SCENARIOS = {
    "tokens 1e16 a month": ({"tokens_0": "1e16"}, {}),
    "GPU price near zero": ({"gpu_price_0": "1e-4", "gpu_price_drift": "-0.5"}, {}),
    "conversion near 0": ({"conversion_0": "1e-7", "conversion_mean": "1e-7"}, {}),
    "conversion near 1": ({"conversion_0": "0.9999", "conversion_mean": "0.9999"}, {}),
    "horizon of 50 years": ({}, {"horizon": '"2073-12"'}),
}


def _config(params, sim):
    return parse_config_text(minimal_config_text(
        parameters={"gpu_price_0": '{ dist = "lognormal", median = 2.0, sigma = 0.3 }',
                    **params},
        simulation={"paths": "2048", "seed": "5", **sim}))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_float32_error_on_every_reported_statistic_is_bounded(name):
    cfg = _config(*SCENARIOS[name])
    r32 = run(cfg, dtype="float32", progress=False)
    r64 = run(cfg, dtype="float64", progress=False)
    assert r32.accumulator.nonfinite_paths == r64.accumulator.nonfinite_paths == 0
    m32, m64 = r32.accumulator.moments.mean, r64.accumulator.moments.mean
    # a statistic that is zero in float64 (a year before revenue share starts, say) must
    # be zero in float32 too; the others are compared relatively
    zero = m64 == 0
    assert np.all(m32[zero] == 0)
    rel = np.abs(m32[~zero] / m64[~zero] - 1.0)
    worst = float(rel.max())
    print(f"\n{name}: worst float32 relative error of a mean {worst:.2e} "
          f"over {int((~zero).sum())} statistics")
    assert worst <= FLOAT32_MEAN_RTOL
    # quantiles come from bins 0.46% wide: float32 may move a path to the next bin
    for group in ("cumulative_azure_spend", "revenue", "horizon"):
        q32 = r32.quantiles(group, (5, 50, 95)).value
        q64 = r64.quantiles(group, (5, 50, 95)).value
        ok = np.isfinite(q64) & (np.abs(q64) > 1.0)
        assert np.all(np.abs(q32[ok] / q64[ok] - 1) <= 2 * r64.bins.relative_width
                      + FLOAT32_MEAN_RTOL)
    # month counts: at most a few paths cross a line one month earlier or later
    moved = np.abs(r32.event_counts("repayment") - r64.event_counts("repayment"))
    assert moved.sum() <= 0.01 * cfg.simulation.paths


def test_running_sums_lose_no_money_to_rounding():
    """Over 50 years the float64 running sums equal the exactly rounded sum (math.fsum) of
    the float32 monthly flows to T ulp: no money is lost however large the sums grow."""
    cfg = _config({"tokens_0": "1e16"}, {"horizon": '"2073-12"', "paths": "256"})
    grid = cfg.grid
    theta = draw_on_device(cfg, 0, 256, jnp.float32)
    normals = shock_normals_reference(cfg.simulation.seed, 0, 256, grid.num_months)
    chol = shock_cholesky(cfg)
    fn = jax.jit(lambda th, d, z: flows_from_normals(th, d, z, chol, grid.num_months))
    final, flows = fn({k: jnp.asarray(v) for k, v in theta.items()},
                      model.deal_terms(cfg.deal, grid), jnp.asarray(normals, jnp.float32))
    for running, monthly in ((final.cum_azure_spend, flows.azure_spend),
                             (final.cum_revenue, flows.revenue)):
        running, monthly = np.asarray(running), np.asarray(monthly, np.float64)
        assert running.dtype == np.float64
        exact = np.array([math.fsum(monthly[:, i]) for i in range(monthly.shape[1])])
        assert exact.max() > 1e12  # sums far past float32's exact-dollar range (2^24)
        assert np.all(np.abs(running - exact) <= grid.num_months * 2**-53 * exact)
