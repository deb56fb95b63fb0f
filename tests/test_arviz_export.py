"""An SMC posterior as ArviZ InferenceData (``PosteriorResults.inference_data()``, the
optional extra ``mcsim[arviz]``, in ``.[dev]`` too): its groups and shape, every drawn
parameter and bias factor as a variable, the same numbers as ``posterior_frame()``, and
``arviz.summary`` on it.

One tiny SMC (configs/observed.toml cut to 2026-12: 2 runs x 256 particles, 3 moves).
The means are compared to 1e-12 relative: both are float64 means of the same particles,
which differ only in summation order (about 1e-16)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import CONFIGS_DIR

import mcsim

with warnings.catch_warnings():  # ArviZ 0.2x announces its refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    az = pytest.importorskip("arviz", reason="the optional extra mcsim[arviz] (in .[dev])")

PARTICLES, RUNS = 256, 2


@pytest.fixture(scope="module")
def smc():
    config = mcsim.load_config(CONFIGS_DIR / "observed.toml").with_simulation(
        horizon="2026-12", paths=2048)
    config = mcsim.with_overrides(config, {"conditioning.particles": PARTICLES,
                                           "conditioning.runs": RUNS,
                                           "conditioning.moves": 3})
    with warnings.catch_warnings():  # 512 particles: the small-ESS warning is expected
        warnings.simplefilter("ignore", UserWarning)
        results = mcsim.simulate(config, progress=False)
    cond = results.conditioned
    return config, cond, cond.inference_data()


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
