"""Variance reduction: antithetic pairs and scrambled Sobol parameters.

Exact checks: the mirrored uniforms and shocks, the Sobol points' stratification, and
that both options keep runs identical whatever the chunking. Statistical checks: the
antithetic estimate agrees with plain Monte Carlo within 4.5 combined standard errors, and
its reported standard error (from the pairs' means) matches the spread of independent
replicates: over R seeds, (R - 1) s^2 / se^2 follows chi-square(R - 1), and the bounds
below are its 0.05% and 99.95% points (a 1-in-1000 false alarm).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import short_config
from scipy.stats import chi2

import mcsim
from mcsim import ConfigError, api, engine
from mcsim.device_draws import DeviceSampler
from mcsim.qmc import SobolPoints
from mcsim.report import summarize


def _short(**changes):
    # the 2019 terms' world: repayment by 2028 is uncertain there, as the tests need
    return short_config("2028-12", "v1_base.toml", **changes)


def _without_provenance(results):
    s = summarize(results)
    s.pop("provenance")
    return s


def test_antithetic_uniforms_mirror_in_pairs():
    cfg = _short()
    sampler = DeviceSampler(cfg)
    args = jax.tree.map(jnp.asarray, sampler.arguments())
    paths = jnp.arange(4096, dtype=jnp.uint32)
    u = np.asarray(sampler.uniforms(args, paths, antithetic=True))
    plain = np.asarray(sampler.uniforms(args, paths))
    np.testing.assert_array_equal(u[0::2], plain[0::2])
    np.testing.assert_array_equal(u[1::2], 1.0 - plain[0::2])  # exact in float64


def test_antithetic_shocks_are_negated():
    """Given the same parameters, the two paths of a pair move their log GPU price by
    opposite shock sums around the shock-free move (computed with gpu_price_vol = 0)."""
    from mcsim import with_overrides
    from mcsim.rng import STREAM_SHOCKS, stream_key

    cfg = _short()
    paths = jnp.arange(8, dtype=jnp.uint32)
    key = jnp.asarray(stream_key(1, STREAM_SHOCKS), jnp.uint32)

    def final_log_price(config, antithetic):
        sampler = DeviceSampler(config)
        args = jax.tree.map(jnp.asarray, sampler.arguments())
        u = np.array(sampler.uniforms(args, paths))
        u[1::2] = u[0::2]  # both paths of a pair take the even path's parameters
        spec = engine.KernelSpec.for_config(config, "float64")._replace(antithetic=antithetic)
        inputs = engine.kernel_inputs(config)._replace(shock_key=key)
        out = engine.build_kernel(spec)(inputs, paths, uniforms=jnp.asarray(u))
        return np.asarray(out.final.log_price)

    mirrored = final_log_price(cfg, True)
    calm = final_log_price(with_overrides(cfg, {"parameters.gpu_price_vol": 0.0}), True)
    np.testing.assert_array_equal(calm[0::2], calm[1::2])
    shock = mirrored - calm
    assert np.all(np.abs(shock) > 1e-6)
    np.testing.assert_allclose(shock[1::2], -shock[0::2], rtol=1e-9)
    # the even path of a pair is the plain path: mirroring only touches the odd one
    np.testing.assert_array_equal(final_log_price(cfg, False)[0::2], mirrored[0::2])


@pytest.mark.parametrize("reduction", ["antithetic", "sobol"])
def test_variance_reduction_runs_do_not_depend_on_chunking(reduction):
    cfg = _short(paths=6144, variance_reduction=reduction)
    a = api.run(cfg, chunk_size=1024, progress=False)
    b = api.run(cfg, chunk_size=4096, progress=False)
    assert _without_provenance(a) == _without_provenance(b)
    assert summarize(a)["method"]["variance_reduction"] == reduction


def test_sobol_points_are_stratified_and_index_addressed():
    pts = SobolPoints(seed=7, dim=28)
    first = pts.points(0, 1024)
    # a scrambled Sobol net: each coordinate has exactly one point in every 1/1024 slot
    for j in range(first.shape[1]):
        assert np.array_equal(np.sort(np.floor(first[:, j] * 1024)), np.arange(1024))
    # point i is a function of (seed, i): reading in pieces or after a jump changes nothing
    again = SobolPoints(seed=7, dim=28)
    np.testing.assert_array_equal(np.concatenate([again.points(0, 512),
                                                  again.points(512, 512)]), first)
    jump = SobolPoints(seed=7, dim=28)
    np.testing.assert_array_equal(jump.points(768, 256), first[768:])
    np.testing.assert_array_equal(jump.points(0, 256), first[:256])  # a jump back
    assert not np.array_equal(SobolPoints(seed=8, dim=28).points(0, 1024), first)
    assert first.min() > 0 and first.max() < 1


def test_antithetic_agrees_with_plain_monte_carlo():
    plain = api.run(_short(paths=65536), progress=False)
    anti = api.run(_short(paths=16384, variance_reduction="antithetic"), progress=False)
    sobol = api.run(_short(paths=16384, variance_reduction="sobol"), progress=False)
    mp, sp = plain.mean("horizon")
    for other in (anti, sobol):
        mo, so = other.mean("horizon")
        z = (mo - mp) / np.hypot(sp, so)
        assert np.all(np.abs(z) < 4.5), z


def test_antithetic_standard_error_matches_the_replicates_spread():
    R, n = 24, 4096
    means, ses = [], []
    for seed in range(R):
        res = api.run(_short(paths=n, seed=100 + seed, variance_reduction="antithetic"),
                         progress=False)
        m, se = res.mean("horizon")
        means.append(m)
        ses.append(se)
    means, ses = np.array(means), np.array(ses)
    stat = (R - 1) * means.var(axis=0, ddof=1) / np.mean(ses**2, axis=0)
    lo, hi = chi2.ppf([0.0005, 0.9995], R - 1)
    assert np.all((stat > lo) & (stat < hi)), (stat, lo, hi)


def test_antithetic_probability_errors_count_pairs():
    """P(event) errors use n/2 units under antithetic pairs: the bound
    p(1-p)(1+rho)/n <= p(1-p)/(n/2) (rho <= 1), never the i.i.d. formula that rho > 0
    would break."""
    res = api.run(_short(paths=4096, variance_reduction="antithetic"), progress=False)
    p = res.repayment.censored
    n = res.event_counts("repayment").sum()
    assert 0 < p < 1
    assert res.repayment.censored_se == pytest.approx(np.sqrt(p * (1 - p) / (n / 2)))
    from mcsim import precision

    est, se = precision.estimate(res.accumulator, res.layout, "p_not_repaid", pairs=True)
    assert est == pytest.approx(p) and se == pytest.approx(res.repayment.censored_se)


def test_antithetic_needs_an_even_number_of_paths():
    with pytest.raises(ConfigError, match="simulation.paths"):
        _short(paths=1001, variance_reduction="antithetic")
    with pytest.raises(ConfigError, match="simulation.variance_reduction"):
        _short(variance_reduction="latin")


def test_a_precision_target_refuses_sobol_points():
    with pytest.raises(ConfigError, match="simulation.variance_reduction"):
        mcsim.simulate(_short(paths=4096, variance_reduction="sobol"),
                       target_se={"p_not_repaid": 0.01}, progress=False)


@pytest.mark.parametrize("reduction", ["antithetic", "sobol"])
def test_saved_paths_are_the_runs_own_paths(reduction):
    from mcsim.sample_paths import sample_paths

    cfg = _short(paths=1024, variance_reduction=reduction)
    _, flows = sample_paths(cfg, 1024)
    last = flows[flows["month"] == cfg.grid.labels[-1]]["cumulative_azure_spend"].mean()
    run = api.run(cfg, progress=False)
    assert last == pytest.approx(run.mean("cumulative_azure_spend")[0][-1], rel=1e-5)
    plain = sample_paths(_short(paths=1024), 1024)[1]
    assert not np.allclose(plain["cumulative_azure_spend"], flows["cumulative_azure_spend"])
