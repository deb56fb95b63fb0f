"""Direction and drivers beside the Sobol indices (issue 15, item 4): signed measures per
parameter, the "what drives the top/bottom 10%" table, readable labels with units, the
signed tornado and the warning when the design is too small for its intervals.

The parameter whose direction is known from the model is ``other_opex_growth`` in the 2019
terms' world (configs/v1_base.toml). MODEL.md, "Money in month t": profit
is ``P_t = V_t - X_t - O_t - M_t``, and other operating cost ``O`` grows from
``other_opex_0`` at the rate ``other_opex_growth``; nothing else depends on that rate. With
those terms Microsoft recoups from its profit share alone (``recoup_from =
["profit_share"]``), which is a fixed share of the profit released by the loss pool; a
higher ``other_opex_growth`` lowers every month's profit after the start, so on every path
(the other draws unchanged) the repayment month can only come later. The rate is in no
correlation pair of that config, so its marginal association is its own: its rank
correlation with the repayment month is positive, its top decile repays later than its
bottom decile, and the paths repaid latest (or never) have it above its median.

Tolerances are confidence intervals or multiples of standard errors, never tuned numbers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mcsim
from mcsim import plots_sensitivity as ps
from mcsim.parameters import PARAMETER_NAMES, UNITS
from mcsim.sensitivity import SHOCK_FACTOR, direction, sensitivity
from tests.helpers import CONFIGS_DIR

KNOWN = "other_opex_growth"  # raises the repayment month (module docstring)
SIGNED = ("rank_correlation", "rank_correlation_low", "rank_correlation_high",
          "top_minus_bottom_decile", "top_minus_bottom_decile_se")


def _run(num_base: int):
    cfg = mcsim.load_config(CONFIGS_DIR / "v1_base.toml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sensitivity(cfg, num_base=num_base, num_bootstrap=300)
    return res, [w for w in caught if "Sobol intervals too wide" in str(w.message)]


@pytest.fixture(scope="module")
def study():
    """A design large enough for its intervals (2048 base rows: about 15 s)."""
    return _run(2048)


@pytest.fixture(scope="module")
def tiny():
    return _run(32)


def test_signed_measures_have_the_models_direction(study):
    res, _ = study
    frame = res.frame()
    assert set(SIGNED) <= set(frame.columns)
    row = frame.loc[("repayment_month", KNOWN)]
    assert 0 < row["rank_correlation_low"] <= row["rank_correlation"] \
        <= row["rank_correlation_high"] < 1
    # months: the top decile of the growth rate repays later than the bottom decile
    assert row["top_minus_bottom_decile"] > 3 * row["top_minus_bottom_decile_se"] > 0
    # the monthly shocks have no direction
    assert frame.loc[("repayment_month", SHOCK_FACTOR), list(SIGNED)].isna().all()
    # every parameter: intervals ordered, correlations in [-1, 1]
    params = frame.loc["repayment_month"].drop(SHOCK_FACTOR)
    assert (params["rank_correlation_low"] <= params["rank_correlation"]).all()
    assert (params["rank_correlation"] <= params["rank_correlation_high"]).all()
    assert params["rank_correlation"].abs().le(1).all()
    assert (params["top_minus_bottom_decile_se"] > 0).all()


def test_drivers_frame(study):
    res, _ = study
    drivers = res.drivers_frame("repayment_month", fraction=0.1)
    assert list(drivers.index.names) == ["group", "parameter"]
    assert list(drivers.index.get_level_values("group").unique()) == ["top", "bottom"]
    assert drivers["mean_percentile"].between(0, 100).all()
    assert (drivers["mean_percentile_se"] > 0).all()
    for group in ("top", "bottom"):
        part = drivers.loc[group]
        assert sorted(part.index) == sorted(res.parameters)
        dev = (part["mean_percentile"] - 50).abs().to_numpy()
        assert np.all(np.diff(dev) <= 0)  # sorted by |mean percentile - 50|
        assert part["share"].iloc[0] >= 0.1
    top, bottom = drivers.loc[("top", KNOWN)], drivers.loc[("bottom", KNOWN)]
    # repaid latest (or never): the opex growth rate above its prior median, and below
    # it on the paths repaid first
    assert top["mean_percentile"] - 50 > 3 * top["mean_percentile_se"]
    assert 50 - bottom["mean_percentile"] > 3 * bottom["mean_percentile_se"]
    with pytest.raises(ValueError, match="expected one of"):
        res.drivers_frame("repaymnet")
    with pytest.raises(ValueError, match="fraction"):
        res.drivers_frame(fraction=0.7)


def test_direction_on_known_data():
    """Spearman of a monotone function is +-1; the decile difference is exact."""
    rng = np.random.default_rng(0)
    u = rng.random((1000, 2))
    y = -np.exp(3 * u[:, 0])  # decreasing in column 0, independent of column 1
    d = direction(u, y)
    assert d["rank_correlation"][0] == pytest.approx(-1.0)
    assert d["rank_correlation_low"][1] < 0 < d["rank_correlation_high"][1]
    assert d["top_minus_bottom_decile"][0] < 0
    assert np.isnan(direction(u, np.ones(1000))["rank_correlation"]).all()


def test_labels_are_readable_with_units():
    assert ps.parameter_label("gpu_price_drift_inf") == \
        "GPU price drift, long run (log rate / yr)"
    for name in PARAMETER_NAMES:
        label = ps.parameter_label(name)
        assert label != name and label.endswith(")") and "(" in label, name
        assert "_" not in label.split(" (")[0], label
    assert ps.parameter_label("subscription_arpu").endswith("($ / subscriber / month)")
    assert "years" in ps.parameter_label("azure_share_halflife")
    assert UNITS["gpu_price_vol"] == "per sqrt(year)"
    assert ps.parameter_label("no_such_parameter") == "no_such_parameter"


def test_signed_tornado_composes(study):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, _ = study
    fig, ax = plt.subplots()
    ax.set_title("mine")
    out = ps.plot_tornado(res, ax, output="repayment_month", top=8)
    assert out is ax and ax.get_title() == "mine"
    # a long label is on two lines, its unit on the second
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert len(labels) == 8 and all("(" in t for t in labels)
    direction = res.direction_frame("repayment_month")
    # the right panel's bars' signs are the decile differences' signs, in months
    side = ax.direction_axis
    bars = [p for c in side.containers if hasattr(c, "patches") for p in c.patches]
    ys = {round(p.get_y() + p.get_height() / 2): p.get_width() for p in bars}
    checked = 0
    for y, label in enumerate(labels):
        name = next((n for n in res.parameters if ps.parameter_label(n) == label), None)
        if name is not None:
            assert np.sign(ys[y]) == np.sign(direction.loc[name, "top_minus_bottom_decile"])
            checked += 1
    assert checked >= 7
    # the monthly shocks have no direction: a note, not a bar
    shocks = ps.parameter_label(SHOCK_FACTOR) in labels
    assert [t.get_text() for t in side.texts] == ["no direction"] * shocks
    assert checked + shocks == 8
    order = [n for n, _ in res.top("repayment_month", 8)]
    assert labels[::-1] == [ps.parameter_label(n) for n in order]  # largest on top
    ax2 = ps.plot_tornado(res, output="cumulative_azure_spend", by="correlation")
    assert "ρ" in ax2.get_xlabel() and "$" in ax2.direction_axis.get_xlabel()
    assert ax2.get_title(loc="left").startswith("What drives")
    with pytest.raises(ValueError, match="by="):
        ps.plot_tornado(res, by="variance")
    assert res.plot_drivers(top=5).get_yticklabels()
    plt.close("all")


def test_wide_interval_warning(study, tiny):
    small, caught = tiny
    assert caught and small.warnings
    assert all("increase --base-rows" in str(w.message) for w in caught)
    assert all(issubclass(w.category, UserWarning) for w in caught)
    res, none = study
    assert none == [] and res.warnings == ()


def test_report_writes_drivers_and_warnings(study, tiny, tmp_path):
    import json

    import pandas as pd

    from mcsim.report.sensitivity import write_sensitivity

    res, _ = study
    cfg = mcsim.load_config(CONFIGS_DIR / "v1_base.toml")
    out = write_sensitivity(res, cfg, tmp_path / "s")
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["drivers.csv", "drivers.png", "sensitivity.csv", "sensitivity.json",
                     "tornado.png"]
    csv = pd.read_csv(out / "sensitivity.csv")
    assert set(SIGNED) <= set(csv.columns)
    drivers = pd.read_csv(out / "drivers.csv")
    assert list(drivers.columns[:3]) == ["output", "group", "parameter"]
    assert set(drivers["output"]) == set(res.indices)
    doc = json.loads((out / "sensitivity.json").read_text())
    assert doc["warnings"] == []
    assert doc["outputs"]["repayment_month"]["factors"][KNOWN]["rank_correlation"] > 0
    small, _ = tiny
    doc = json.loads((write_sensitivity(small, cfg, tmp_path / "t") /
                      "sensitivity.json").read_text())
    assert doc["warnings"] and "increase --base-rows" in doc["warnings"][0]
