"""Conditioning on observations: config checks, the kernel's weighted sums against the same
paths weighted in NumPy, what conditioning must do to the observed quantity, the effective
sample size and its warning, and the report.

The exact checks compare with NumPy on the same paths (the only difference is the weights'
rounding to 2^-20, far below 1e-6 relative). The statistical ones use 4 standard errors.
"""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mcsim
from mcsim import ConfigError, api, engine
from mcsim.cli import main
from mcsim.engine import conditioning
from tests.helpers import CONFIGS_DIR, REPO_ROOT, minimal_config_text

#: the two leaked Azure figures on the 2019 terms, by importance sampling (what
#: configs/observed.toml was before SMC became the default)
OBSERVED = REPO_ROOT / "tests" / "data" / "observed_importance.toml"


def _observed(horizon="2026-12", paths=4096, **changes):
    cfg = mcsim.load_config(OBSERVED).with_simulation(horizon=horizon, paths=paths)
    return cfg.with_simulation(**changes) if changes else cfg


def _obs_text(**fields):
    spec = {"flow": '"azure_inference_spend"', "start": '"2024-01"', "end": '"2024-12"',
            "value": "3.77e9", "sd": "2e8"}
    spec.update(fields)
    return minimal_config_text(**{"observations.a": {k: v for k, v in spec.items()
                                                     if v is not None}})


def test_observed_config_parses():
    cfg = mcsim.load_config(OBSERVED)
    assert [o.name for o in cfg.observations] == ["azure_inference_2024",
                                                  "azure_inference_2025_q1_q3"]
    assert cfg.observations[0].sd == pytest.approx(0.05 * 3.77e9)


@pytest.mark.parametrize("fields, key", [
    ({"flow": '"tokens"'}, "observations.a.flow"),
    ({"start": '"2023-12"'}, "observations.a.start"),
    ({"end": '"2027-01"'}, "observations.a.end"),
    ({"start": '"2024-06"', "end": '"2024-05"'}, "observations.a.end"),
    ({"value": "-1.0"}, "observations.a.value"),
    ({"sd": None}, "observations.a.sd"),
    ({"rel_sd": "0.1"}, "observations.a.sd"),
    ({"sd": "0.0"}, "observations.a.sd"),
    ({"value": None}, "observations.a.value"),
    ({"tolerance": "1"}, "observations.a.tolerance"),
])
def test_bad_observations_name_the_key(fields, key):
    with pytest.raises(ConfigError) as err:
        mcsim.parse_config_text(_obs_text(**fields))
    assert str(err.value).startswith(key) and "expected" in str(err.value)


def test_a_shorter_horizon_must_still_hold_the_windows():
    with pytest.raises(ConfigError, match="observations.azure_inference_2025_q1_q3.end"):
        mcsim.load_config(OBSERVED).with_simulation(horizon="2025-06")


def _per_path(cfg):
    """The paths' statistics, repayment months and observed sums, computed outside the
    engine's reductions."""
    windows = conditioning.observation_windows(cfg)
    kernel = engine.build_kernel(engine.KernelSpec.for_config(cfg, observed=True))

    @jax.jit
    def f(inputs, paths):
        out = kernel(inputs, paths, windows=windows)
        return out.stats, out.final.repayment_month, out.observed_sums

    return jax.device_get(f(engine.kernel_inputs(cfg),
                            jnp.arange(cfg.simulation.paths, dtype=jnp.uint32)))


def test_weighted_kernel_equals_numpy_weights_on_the_same_paths():
    cfg = _observed()
    stats, month, obs = _per_path(cfg)
    value = np.array([o.value for o in cfg.observations])
    sd = np.array([o.sd for o in cfg.observations])
    loglik = -0.5 * np.sum(((obs - value[:, None]) / sd[:, None]) ** 2, axis=0)
    reference = conditioning.reference_log_likelihood(cfg)
    assert reference == pytest.approx(loglik.max(), abs=1e-9)  # 4,096 paths: all in the pilot
    w = np.exp(loglik - reference)
    cond = api.run(cfg, progress=False, weighted=True)
    assert cond.ess == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-5)
    mean, se = cond.mean("horizon")
    rows = stats[cond.layout.rows("horizon")]
    expect = rows @ w / w.sum()
    np.testing.assert_allclose(mean, expect, rtol=1e-5)
    resid = (rows - expect[:, None]) * w
    np.testing.assert_allclose(se, np.sqrt((resid**2).sum(axis=1)) / w.sum(), rtol=1e-4)
    q = np.round(w * conditioning.WEIGHT_ONE).astype(np.int64)
    counts = np.bincount(month, weights=q, minlength=cfg.grid.num_months + 1)
    np.testing.assert_array_equal(cond.event_counts("repayment"), counts.astype(np.int64))
    prior = api.run(cfg, progress=False)
    np.testing.assert_array_equal(prior.event_counts("repayment"),
                                  np.bincount(month, minlength=cfg.grid.num_months + 1))


def test_conditioning_pulls_the_observed_flow_to_the_observation():
    """The conditioned 2024 Azure inference spend sits near $3.77B with about the stated
    5% error (the prior's median is already close, its spread far wider)."""
    results = mcsim.simulate(_observed(paths=16384), progress=False)
    cond = results.conditioned
    year = results.grid.year_labels().index("2024")
    prior_q = results.quantiles("azure_inference_spend", (5, 50, 95)).value[year]
    cond_q = cond.quantiles("azure_inference_spend", (5, 50, 95)).value[year]
    mean, se = cond.mean("azure_inference_spend")
    # the posterior mean lies between prior mean and observation, within 4 SE + 5% sd
    assert abs(mean[year] - 3.77e9) < 2 * 0.05 * 3.77e9 + 4 * se[year]
    assert (cond_q[2] - cond_q[0]) < 0.5 * (prior_q[2] - prior_q[0])
    assert 0.1 * 3.77e9 < cond_q[2] - cond_q[0] < 0.3 * 3.77e9  # ~ 2 x 1.645 x 5%
    assert 100 < cond.ess < results.num_paths


def test_flat_likelihood_gives_the_prior_back_with_a_path_level_ess():
    """Observations with an enormous error weigh every path alike: the conditioned results
    are the prior's, and the ESS counts paths (not antithetic pairs)."""
    text = OBSERVED.read_text().replace("rel_sd = 0.05", "rel_sd = 1e6").replace(
        'extends = "../../configs/v1_base.toml"',
        f'extends = "{CONFIGS_DIR / "v1_base.toml"}"')
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "flat.toml").write_text(text)
        cfg = mcsim.load_config(Path(d) / "flat.toml").with_simulation(
            horizon="2026-12", paths=4096, variance_reduction="antithetic")
    results = mcsim.simulate(cfg, progress=False)
    cond = results.conditioned
    assert cond.ess == pytest.approx(4096, rel=1e-9)
    assert cond.repayment.censored == pytest.approx(results.repayment.censored, rel=1e-12)
    assert cond.repayment.censored_se == pytest.approx(results.repayment.censored_se,
                                                       rel=1e-9)
    np.testing.assert_allclose(cond.mean("horizon")[0], results.mean("horizon")[0],
                               rtol=1e-12)
    # the delta-method error is the plug-in (ddof 0) one, over 2,048 pairs
    m = 2048
    np.testing.assert_allclose(cond.mean("horizon")[1],
                               results.mean("horizon")[1] * np.sqrt((m - 1) / m), rtol=1e-9)


def test_observation_values_can_be_overridden():
    from mcsim import with_overrides

    cfg = with_overrides(mcsim.load_config(OBSERVED),
                         {"observations.azure_inference_2024.value": 4.0e9})
    assert cfg.observations[0].value == 4.0e9


def test_antithetic_pairs_are_the_units_of_a_conditioned_run():
    cfg = _observed(variance_reduction="antithetic")
    with pytest.warns(UserWarning, match="effective sample size"):  # 4,096 paths: ESS ~150
        results = mcsim.simulate(cfg, progress=False)
    assert results.conditioned.ess > 100
    assert np.isfinite(results.conditioned.mean("horizon")[1]).all()


def test_tiny_tolerances_warn_that_the_ess_is_small(tmp_path):
    text = OBSERVED.read_text().replace("rel_sd = 0.05", "rel_sd = 0.0005").replace(
        'extends = "../../configs/v1_base.toml"',
        f'extends = "{CONFIGS_DIR / "v1_base.toml"}"')
    path = tmp_path / "tight.toml"
    path.write_text(text)
    cfg = mcsim.load_config(path).with_simulation(horizon="2026-12", paths=4096)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = mcsim.simulate(cfg, progress=False)
    cond = results.conditioned
    assert cond.ess < 1000
    assert any("effective sample size" in str(w.message) for w in caught)
    assert "unreliable" in cond.warning
    # weights are relative to the pilot's best path: even observations far tighter than
    # the prior leave finite statistics (absolute weights all rounded to 0 here once)
    assert cond.ess >= 1 and cond.reference_loglik < -14
    assert np.isfinite(cond.mean("horizon")[0]).all()
    assert 0.0 <= cond.repayment.censored <= 1.0
    from mcsim.report import summarize

    json.dumps(summarize(results), allow_nan=False)


def test_run_cli_reports_prior_and_conditioned(tmp_path, capsys):
    cfg = tmp_path / "obs.toml"
    # _observed()'s shapes (conftest.py's importance_run too): kernels already compiled
    cfg.write_text(f'extends = "{OBSERVED}"\n[simulation]\nhorizon = "2026-12"\n'
                   "paths = 4096\n")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "conditioned on 2 observations" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    cond = summary["conditioned"]
    assert cond["effective_sample_size"] > 0 and len(cond["observations"]) == 2
    assert set(cond) >= {"cumulative_azure_spend", "annual", "repayment", "horizon"}
    for name in ("fan_chart_conditioned.png", "repayment_survival_conditioned.png"):
        assert (out / name).stat().st_size > 1000
    assert "Conditioned on the observations" in (out / "report.html").read_text()
    # reproduce from the summary alone: the conditioned pass comes back too
    again = tmp_path / "again"
    assert main(["reproduce", str(out / "summary.json"), "--out", str(again)]) == 0
    redo = json.loads((again / "summary.json").read_text())
    assert redo["conditioned"]["repayment"] == cond["repayment"]
    # --no-condition: the prior alone
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--no-condition"]) == 0
    assert "conditioned" not in json.loads((out / "summary.json").read_text())


def test_fractional_month_counts_keep_probabilities_in_range():
    """Effective (fractional) counts: the running sum can round a hair above the total;
    the CDF stays in [0, 1] and every error finite (it once gave sqrt of -1e-16)."""
    from mcsim.results import month_distribution

    rng = np.random.default_rng(3)
    for _ in range(300):
        counts = np.append(rng.random(40) * rng.choice([1e-3, 1.0, 7e3]), 0.0)
        dist = month_distribution(counts, (5, 50, 95))
        assert np.all((dist.cdf >= 0) & (dist.cdf <= 1))
        assert np.all(np.isfinite(dist.cdf_se)) and np.isfinite(dist.censored_se)
