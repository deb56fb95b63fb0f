"""An SMC posterior as ArviZ InferenceData (``PosteriorResults.inference_data()``, the
optional extra ``mcsim[arviz]``, in ``.[dev]`` too): its groups and shape, every drawn
parameter and bias factor as a variable, the same numbers as ``posterior_frame()``,
``arviz.summary`` on it; and (issue 24) observed_data, the predictive groups,
log_likelihood per observation, sample_stats per tempering step, mcsim's own errors in
the attrs and the once-only warning that ArviZ's ESS/MCSE do not apply.

One tiny SMC, shared with the other modules that read a posterior (conftest.py's smc_run:
tests/data/smc_small.toml, configs/observed.toml cut to 2029-12: 2 runs x 256 particles, 3
moves).
The means are compared to 1e-12 relative: both are float64 means of the same particles,
which differ only in summation order (about 1e-16)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # ArviZ 0.2x announces its refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    az = pytest.importorskip("arviz", reason="the optional extra mcsim[arviz] (in .[dev])")

PARTICLES, RUNS = 256, 2  # tests/data/smc_small.toml's


@pytest.fixture(scope="module")
def smc(smc_run):
    config = smc_run.results.config
    assert (config.conditioning.particles, config.conditioning.runs) == (PARTICLES, RUNS)
    cond = smc_run.results.conditioned
    with warnings.catch_warnings():  # ArviZ's ESS/MCSE note: tested on its own below
        warnings.simplefilter("ignore", UserWarning)
        idata = cond.inference_data()
    return config, cond, idata


def _bias_names(config) -> list[str]:
    """The observations whose bias factor is drawn (a distribution, not a constant)."""
    return [f"bias:{o.name}" for o in config.observations
            if o.bias is not None and not isinstance(o.bias, (int, float))]


def test_groups_and_shape(smc):
    _, _, idata = smc
    assert {"posterior", "prior"} <= set(idata.groups())
    for group in (idata.posterior, idata.prior):
        assert group.sizes["chain"] == RUNS  # chains are the independent SMC runs
        assert group.sizes["draw"] == PARTICLES  # draws are each run's particles


def test_every_drawn_parameter_and_bias_factor_is_a_variable(smc):
    config, _, idata = smc
    names = config.uncertain_parameters() + _bias_names(config)
    assert len(config.uncertain_parameters()) >= 25 and len(_bias_names(config)) >= 3
    for group in (idata.posterior, idata.prior):
        assert set(group.data_vars) == set(names)
        for name in names:
            assert np.isfinite(group[name].values).all(), name


def test_means_are_the_posterior_frames(smc):
    _, cond, idata = smc
    frame = cond.posterior_frame()
    assert set(frame.index) == set(idata.posterior.data_vars)
    for name, row in frame.iterrows():
        for group, column in ((idata.posterior, "posterior_mean"), (idata.prior, "prior_mean")):
            mean = float(group[name].values.mean())
            assert mean == pytest.approx(row[column], rel=1e-12, abs=0.0), (name, column)


def test_arviz_summary_works(smc):
    _, cond, idata = smc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, RuntimeWarning))
        table = az.summary(idata, round_to="none")
    assert set(table.index) == set(idata.posterior.data_vars)  # "bias:NAME" kept as is
    frame = cond.posterior_frame()
    for name in table.index:
        assert table.loc[name, "mean"] == pytest.approx(frame.loc[name, "posterior_mean"],
                                                        rel=1e-12, abs=0.0), name
    # R-hat over the runs is defined (two chains of 256 draws each), and ESS positive
    assert np.isfinite(table["r_hat"]).all() and (table["ess_bulk"] > 0).all()


# --- issue 24 item 5: observed data, predictive, log-likelihood, sample stats, errors ---


def test_observed_data_is_the_observations(smc):
    config, _, idata = smc
    obs = idata.observed_data["observations"]
    assert obs.dims == ("observation",)
    assert list(obs["observation"].values) == [o.name for o in config.observations]
    np.testing.assert_array_equal(obs.values, [o.value for o in config.observations])


def test_predictive_groups_are_the_particles_model_values(smc):
    config, cond, idata = smc
    O = len(config.observations)
    for group, attr in ((idata.posterior_predictive, "predicted"),
                        (idata.prior_predictive, "prior_predicted")):
        y = group["observations"]
        assert y.dims == ("chain", "draw", "observation")
        assert y.shape == (RUNS, PARTICLES, O)
        for run in cond.posterior.runs:  # particle k of run r, observation o: [o, k]
            np.testing.assert_array_equal(y.values[run.run],
                                          np.asarray(getattr(run, attr), np.float64).T)
    # the posterior medians are the observation table's (same particles, same rule)
    table = cond.observation_frame()
    pooled = idata.posterior_predictive["observations"].values.reshape(-1, O)
    for k, o in enumerate(config.observations):
        median = np.percentile(pooled[:, k], 50, method="inverted_cdf")
        assert median == table.loc[o.name, "posterior_p50"]


def test_log_likelihood_per_observation_sums_to_the_runs_total(smc):
    config, cond, idata = smc
    ll = idata.log_likelihood["observations"]
    assert ll.dims == ("chain", "draw", "observation")
    assert ll.shape == (RUNS, PARTICLES, len(config.observations))
    assert np.isfinite(ll.values).all() and (ll.values <= 0).all()  # constants dropped
    total = np.stack([r.loglik for r in cond.posterior.runs])
    # the run's total is the kernel's, from the same model values: float64 sums of the
    # same terms, up to the kernel dtype's rounding of the values (float32: ~1e-7 each)
    np.testing.assert_allclose(ll.values.sum(axis=2), total, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, total)


def test_sample_stats_are_the_steps(smc):
    _, cond, idata = smc
    stats = idata.sample_stats
    runs = cond.posterior.runs
    most = max(len(r.steps) for r in runs)
    for name in ("temperature", "ess", "acceptance", "rho", "distinct_after_resampling",
                 "log_evidence_increment", "moves", "mixing"):
        assert stats[name].dims == ("chain", "step") and stats[name].shape == (RUNS, most)
    for r in runs:
        n = len(r.steps)
        assert stats["steps"].values[r.run] == n
        t = stats["temperature"].values[r.run]
        assert t[n - 1] == 1.0 and np.all(np.diff(t[:n]) > 0)  # tempered up to 1
        assert np.isnan(t[n:]).all()  # padding after the run's last step
        np.testing.assert_array_equal(stats["ess"].values[r.run, :n],
                                      [st.ess for st in r.steps])
        np.testing.assert_array_equal(stats["acceptance"].values[r.run, :n],
                                      [st.acceptance for st in r.steps])
        assert stats["log_evidence"].values[r.run] == r.log_evidence
        # the mixing diagnostic replaces distinct_particles (which counted a particle that
        # moved once as mixed)
        np.testing.assert_array_equal(stats["mixing"].values[r.run, :n],
                                      [st.mixing for st in r.steps])
        np.testing.assert_array_equal(stats["moves"].values[r.run, :n],
                                      [st.moves for st in r.steps])
        assert ((stats["moves"].values[r.run, :n] >= 1)
                & (stats["moves"].values[r.run, :n] <= cond.posterior.settings.moves)).all()
        assert "distinct_particles" not in stats


def test_mcsim_errors_are_exported_beside_arvizs(smc):
    _, cond, idata = smc
    frame = cond.posterior_frame()
    for name in idata.posterior.data_vars:
        se = idata.posterior[name].attrs["mcsim_mean_se"]
        assert se == frame.loc[name, "posterior_mean_se"]  # the spread of the runs
        assert np.isfinite(se) and se > 0, name
    assert idata.posterior.attrs["mcsim_effective_paths"] == cond.ess
    se_pred = idata.posterior_predictive["observations"].attrs["mcsim_mean_se"]
    assert se_pred.shape == (idata.observed_data.sizes["observation"],)
    assert np.isfinite(se_pred).all() and (se_pred > 0).all()
    assert "mcsim_mean_se" in idata.posterior.attrs["mcsim_error_note"]


def test_ess_warning_is_given_once(smc, monkeypatch):
    from mcsim import posterior as posterior_module
    _, cond, _ = smc
    monkeypatch.setattr(posterior_module, "_ESS_WARNED", False)
    with pytest.warns(UserWarning, match="ess/mcse"):
        cond.inference_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a second warning would raise
        cond.inference_data()
