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
from helpers import minimal_config_text

import mcsim
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
