"""Tempered SMC (mcsim.engine.smc): exact posteriors recovered, agreement with importance
sampling, the diagnostics on every public fact, and determinism.

Tolerances: a posterior mean's Monte Carlo error is the spread of R independent SMC runs
(sd of the runs' estimates / sqrt(R)); checks allow 4 such errors (with R = 8 the error
estimate has 7 degrees of freedom: |t_7| > 4 has probability 0.5%), combined in quadrature
with the other method's error where two estimates are compared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import CONFIGS_DIR, REPO_ROOT, minimal_config_text

import mcsim
from mcsim import api
from mcsim.engine import smc
from mcsim.posterior import parameter_draws, posterior_table

N_SE = 4.0


def _config(tmp_path, observations: str, conditioning: str, parameters: dict,
            name: str = "c.toml"):
    text = minimal_config_text(parameters=parameters) + observations + conditioning
    path = tmp_path / name
    path.write_text(text)
    return mcsim.load_config(path)


GAUSSIAN_PARAMETERS = {"gpu_price_0": '{ dist = "normal", mean = 2.0, sd = 0.3, min = 0.01 }',
                       "users_0": '{ dist = "normal", mean = 5e8, sd = 1e8, min = 1e6 }'}
GAUSSIAN_OBSERVATIONS = """
[observations.price]
stock = "gpu_price"
month = "2024-01"
value = 2.4
sd = 0.2

[observations.users]
stock = "weekly_active_users"
month = "2024-01"
value = 3.5e8
sd = 5e7
"""


def _runs_estimates(config, posterior, name):
    per_run = [parameter_draws(config, r.z)[name] for r in posterior.runs]
    means = np.array([x.mean() for x in per_run])
    sds = np.array([x.std() for x in per_run])
    R = len(per_run)
    pooled = np.concatenate(per_run)
    return (pooled.mean(), means.std(ddof=1) / math.sqrt(R),
            pooled.std(), sds.std(ddof=1) / math.sqrt(R))


@pytest.fixture(scope="module")
def gaussian(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("g"), GAUSSIAN_OBSERVATIONS,
                  "\n[conditioning]\nparticles = 4096\nruns = 8\nmoves = 8\nseed = 5\n",
                  GAUSSIAN_PARAMETERS)
    return cfg, smc.smc_posterior(cfg)


@pytest.mark.parametrize("name, prior_mean, prior_sd, value, sd", [
    ("gpu_price_0", 2.0, 0.3, 2.4, 0.2), ("users_0", 5e8, 1e8, 3.5e8, 5e7)])
def test_conjugate_gaussian_posterior_is_recovered(gaussian, name, prior_mean, prior_sd,
                                                   value, sd):
    """A normal prior observed through its own month-0 stock with a normal error: the
    posterior is normal with the precision-weighted mean (truncation at the min is
    > 6 prior sds away: negligible)."""
    cfg, post = gaussian
    var = 1.0 / (1.0 / prior_sd**2 + 1.0 / sd**2)
    mean = var * (prior_mean / prior_sd**2 + value / sd**2)
    m, m_se, s, s_se = _runs_estimates(cfg, post, name)
    assert abs(m - mean) < N_SE * m_se, (m, mean, m_se)
    assert abs(s - math.sqrt(var)) < N_SE * s_se, (s, math.sqrt(var), s_se)
    # and the errors are small enough for the check to mean something
    assert m_se < 0.02 * math.sqrt(var) and s_se < 0.02 * math.sqrt(var)


def test_conjugate_posterior_agrees_with_importance_sampling(gaussian, tmp_path):
    cfg, post = gaussian
    rows = {r["parameter"]: r for r in posterior_table(cfg, post)}
    is_cfg = _config(tmp_path, GAUSSIAN_OBSERVATIONS, '\n[conditioning]\nmethod = "importance"\n',
                     GAUSSIAN_PARAMETERS)
    table = mcsim.simulate(is_cfg, paths=65536, progress=False).parameter_table
    for name in GAUSSIAN_PARAMETERS:
        a, b = rows[name], table["conditioned"][name]
        se = math.hypot(a["posterior_mean_se"], b["mean_se"])
        assert abs(a["posterior_mean"] - b["mean"]) < N_SE * se, (name, a, b)


def test_diagnostics_of_the_gaussian_runs(gaussian):
    cfg, post = gaussian
    for run in post.runs:
        temps = [s.temperature for s in run.steps]
        assert temps[-1] == 1.0 and all(np.diff(temps) > 0)
        # each step keeps half the particles effective (the last may keep more)
        assert all(s.ess >= 0.5 * 4096 * (1 - 1e-9) for s in run.steps)
        assert run.distinct > 0.5 * 4096


def test_student_t_error_and_a_bias_factor_match_quadrature(tmp_path):
    """One normal parameter seen through a lognormal bias factor with a Student-t error:
    the posterior mean of both by two-dimensional quadrature."""
    obs = """
[observations.price]
stock = "gpu_price"
month = "2024-01"
value = 2.6
sd = 0.15
error = "student_t"
dof = 3
bias = { dist = "lognormal", median = 1.0, sigma = 0.1 }
"""
    cfg = _config(tmp_path, obs, "\n[conditioning]\nparticles = 4096\nruns = 8\nmoves = 8\n",
                  {"gpu_price_0": GAUSSIAN_PARAMETERS["gpu_price_0"]})
    post = smc.smc_posterior(cfg)
    p = np.linspace(2.0 - 8 * 0.3, 2.0 + 8 * 0.3, 1601)[:, None]
    zb = np.linspace(-8, 8, 1601)[None, :]
    b = np.exp(0.1 * zb)
    r = (p * b - 2.6) / 0.15
    logw = -0.5 * ((p - 2.0) / 0.3) ** 2 - 0.5 * zb**2 - 2.0 * np.log1p(r * r / 3.0)
    w = np.exp(logw - logw.max()) * (p > 0.01)
    exact_p = (w * p).sum() / w.sum()
    exact_b = (w * b).sum() / w.sum()
    rows = {r["parameter"]: r for r in posterior_table(cfg, post)}
    for name, exact in (("gpu_price_0", exact_p), ("bias:price", exact_b)):
        row = rows[name]
        assert abs(row["posterior_mean"] - exact) < N_SE * row["posterior_mean_se"], \
            (name, row["posterior_mean"], exact, row["posterior_mean_se"])


# --- the model: two leaked figures, then every fact ------------------------------------

LEAKED = REPO_ROOT / "tests" / "data" / "observed_importance.toml"


@pytest.mark.slow
def test_smc_and_importance_sampling_agree_on_the_leaked_figures():
    """The 2019 terms conditioned on the two leaked Azure inference figures: every
    headline statistic of SMC (4 runs x 4,096 particles) within 4 combined errors of
    importance sampling's (65,536 paths; ESS ~4,000)."""
    base = mcsim.load_config(LEAKED).with_simulation(horizon="2030-12")
    is_res = mcsim.simulate(base, paths=65536, progress=False).conditioned
    smc_cfg = mcsim.with_overrides(base, {"conditioning.method": "smc",
                                          "conditioning.particles": 4096,
                                          "conditioning.runs": 4})
    smc_res = api.smc_conditioned(smc_cfg)
    checked = 0
    for group, rows in (("cumulative_azure_spend", slice(-1, None)),
                        ("azure_inference_spend", slice(None)), ("revenue", slice(None)),
                        ("revenue_share", slice(None)), ("horizon", slice(0, 4))):
        (m1, s1), (m2, s2) = is_res.mean(group), smc_res.mean(group)
        for a, sa, b, sb in zip(m1[rows], s1[rows], m2[rows], s2[rows], strict=True):
            assert abs(a - b) < N_SE * math.hypot(sa, sb), (group, a, b, sa, sb)
            checked += 1
    for event in ("repayment", "credit_exhaustion"):
        a, b = getattr(is_res, event), getattr(smc_res, event)
        assert abs(a.censored - b.censored) <= N_SE * math.hypot(a.censored_se, b.censored_se)
    assert checked > 20


@pytest.fixture(scope="module")
def every_fact():
    """configs/observed.toml (23 facts) cut to 2028, 2 independent sets of 4 runs."""
    cfg = mcsim.load_config(CONFIGS_DIR / "observed.toml").with_simulation(horizon="2028-12")
    small = {"conditioning.particles": 2048, "conditioning.runs": 4, "conditioning.moves": 8}
    one = mcsim.with_overrides(cfg, {**small, "conditioning.seed": 1})
    two = mcsim.with_overrides(cfg, {**small, "conditioning.seed": 2})
    return one, smc.smc_posterior(one), smc.smc_posterior(two)


@pytest.mark.slow
def test_every_fact_tempering_keeps_half_the_particles_and_the_acceptance_in_band(every_fact):
    cfg, post, _ = every_fact
    N = cfg.conditioning.particles
    for run in post.runs:
        assert run.steps[-1].temperature == 1.0
        for k, step in enumerate(run.steps):
            assert step.ess >= 0.5 * N * (1 - 1e-9)
            assert step.distinct_after_resampling >= 0.25 * N
            lo, hi = smc.ACCEPTANCE_BAND
            # above the band only where the step size is at its cap (rho = 1: independent
            # draws from the prior are accepted that often at low temperature)
            assert lo <= step.acceptance <= hi or (step.acceptance > hi and k == 0), \
                (k, step)
        assert run.distinct >= 0.5 * N


@pytest.mark.slow
def test_every_fact_posterior_predictive_is_consistent_with_each_observation(every_fact):
    from mcsim.posterior import observation_table

    cfg, post, _ = every_fact
    rows = observation_table(cfg, post)
    assert len(rows) == len(cfg.observations) >= 20
    for row in rows:
        assert abs(row["posterior_z"]) < 3, row
        # conditioning narrows: the posterior 90% interval is inside the prior's
        assert row["posterior_p95"] - row["posterior_p5"] \
            <= row["prior_p95"] - row["prior_p5"], row


@pytest.mark.slow
def test_independent_runs_spread_matches_the_reported_errors(every_fact):
    """Two independent sets of runs (seeds 1 and 2): their posterior means differ by
    their combined reported errors, d / sqrt(se1^2 + se2^2) ~ t with ~6 dof, over every
    parameter; |t_6| > 3 has probability 2.4%, so at most 10% may exceed 3."""
    cfg, one, two = every_fact
    a = {r["parameter"]: r for r in posterior_table(cfg, one)}
    b = {r["parameter"]: r for r in posterior_table(cfg, two)}
    z = np.array([(a[k]["posterior_mean"] - b[k]["posterior_mean"])
                  / math.hypot(a[k]["posterior_mean_se"], b[k]["posterior_mean_se"])
                  for k in a])
    assert len(z) >= 25 and np.isfinite(z).all()
    assert np.mean(np.abs(z) > 3) <= 0.10, np.sort(np.abs(z))[-5:]
    # and not wildly overstated either: the typical |z| is not tiny
    assert np.median(np.abs(z)) > 0.2


# --- determinism ------------------------------------------------------------------------

_DIGEST = """
import hashlib, sys, numpy as np, mcsim
from mcsim import api
cfg = mcsim.load_config(sys.argv[1])
res = api.smc_conditioned(cfg, chunk_size=int(sys.argv[2]))
h = hashlib.sha256()
for r in res.posterior.runs:
    h.update(r.z.tobytes()); h.update(r.loglik.tobytes())
h.update(np.asarray(res.quantiles("cumulative_azure_spend").value).tobytes())
h.update(np.asarray(res.event_counts("repayment")).tobytes())
h.update(np.asarray(res.mean("horizon")[0]).tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow
def test_same_seed_same_posterior_whatever_the_devices_and_chunks(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "d.toml"
    cfg.write_text(f'extends = "{LEAKED}"\n[simulation]\nhorizon = "2026-12"\n'
                   '[conditioning]\nmethod = "smc"\nparticles = 1536\nruns = 2\nmoves = 4\n')
    digests = []
    for devices, chunk in ((1, 1024), (3, 2048)):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        out = subprocess.run([sys.executable, "-c", _DIGEST, str(cfg), str(chunk)],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]
