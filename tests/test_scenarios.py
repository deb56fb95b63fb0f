"""Scenarios that answer the question (issue 15, item 3): a drawn parameter fixed by an
override drops its correlation pairs with one warning; rates as "% per year"; a sweep's
folders named by value, its tidy CSV and its figure of the repayment month."""

from __future__ import annotations

import csv
import math
import re
import warnings

import pytest
from helpers import CONFIGS_DIR, short_config_file

from mcsim import ConfigError, load_config, parse_config_text, with_overrides
from mcsim.overrides import parse_override, parse_sweep
from mcsim.rates import RATE_PARAMETERS, log_rate, percent_per_year

BASE = CONFIGS_DIR / "base.toml"


# --- a fixed parameter's correlation pairs ---------------------------------------------

def test_fixing_a_correlated_parameter_drops_its_pairs_with_one_warning():
    config = load_config(BASE)
    named = [p for p in config.correlation_pairs if "gpu_price_drift_inf" in p[:2]]
    assert named, "base.toml correlates gpu_price_drift_inf (the test needs a pair)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fixed = with_overrides(config, {"parameters.gpu_price_drift_inf": -0.51})
    assert len(caught) == 1 and caught[0].category is UserWarning
    message = str(caught[0].message)
    assert "\n" not in message and "parameters.gpu_price_drift_inf" in message
    assert "[token_growth_inf, gpu_price_drift_inf, -0.9]" in message
    assert caught[0].filename == __file__  # points at the caller, not at mcsim
    assert fixed.parameters["gpu_price_drift_inf"] == -0.51
    # exactly those pairs go; the others stay, in order
    assert fixed.correlation_pairs == tuple(p for p in config.correlation_pairs
                                            if p not in named)
    # the resolved document says so too (provenance, reproduce)
    pairs = fixed.resolved["parameter_correlation"]["pairs"]
    assert all("gpu_price_drift_inf" not in p[:2] for p in pairs) and len(pairs) == \
        len(config.correlation_pairs) - len(named)


def test_a_parameter_in_several_pairs_warns_once_naming_them_all():
    config = load_config(BASE)
    named = [p for p in config.correlation_pairs if "token_growth_0" in p[:2]]
    assert len(named) >= 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fixed = with_overrides(config, {"parameters.token_growth_0": 0.5})
    assert len(caught) == 1
    assert f"dropped {len(named)} rank-correlation pairs" in str(caught[0].message)
    assert len(fixed.correlation_pairs) == len(config.correlation_pairs) - len(named)


def test_uncorrelated_or_still_drawn_overrides_warn_nothing():
    config = load_config(BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = with_overrides(config, {"parameters.gpu_price_vol": 0.2,  # in no pair
                                       "parameters.gpu_price_drift_inf.p5": -0.5})
    assert same.correlation_pairs == config.correlation_pairs


def test_a_pair_written_in_the_same_overrides_is_still_refused():
    config = load_config(BASE)
    with pytest.raises(ConfigError, match="gpu_price_drift_inf is fixed"):
        with_overrides(config, {
            "parameters.gpu_price_drift_inf": -0.51,
            "parameter_correlation.pairs": [["token_growth_inf", "gpu_price_drift_inf",
                                             -0.9]]})


def test_a_refused_value_warns_nothing():
    config = load_config(BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="parameters.tokens_0"):
            with_overrides(config, {"parameters.tokens_0": -1.0})


def test_a_sweep_warns_once_for_the_pairs_its_points_drop(monkeypatch):
    from mcsim import api

    monkeypatch.setattr(api, "run_batch", lambda group, **kw: [object() for _ in group])
    monkeypatch.setattr(api, "with_tables", lambda r, *args, **kw: r)  # no runs: the warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = api.run_sweep(load_config(BASE).with_simulation(paths=1024), {
            "parameters.gpu_price_drift_inf": ["-20%/yr", "-40%/yr", -0.9]})
    assert len(runs) == 3 and len(caught) == 1 and caught[0].filename == __file__
    assert "gpu_price_drift_inf" in str(caught[0].message)


# --- rates as "% per year" -------------------------------------------------------------

def test_percent_helpers_are_inverse():
    assert log_rate(-40) == pytest.approx(math.log(0.6)) == pytest.approx(-0.5108, abs=1e-4)
    assert percent_per_year(math.log(0.6)) == pytest.approx(-40.0)
    assert percent_per_year(log_rate(25)) == pytest.approx(25.0)
    with pytest.raises(ValueError):
        log_rate(-100)
    assert "gpu_price_drift_inf" in RATE_PARAMETERS and "token_growth_0" in RATE_PARAMETERS
    assert "tokens_0" not in RATE_PARAMETERS and "users_growth" not in RATE_PARAMETERS


@pytest.mark.parametrize("text, percent", [("-40%/yr", -40), ("-40 %/yr", -40),
                                           ("+25%/yr", 25), ("12.5% per year", 12.5),
                                           ("-40%/year", -40)])
def test_a_rate_in_toml_as_percent_per_year(base_config_text, text, percent):
    toml = base_config_text.replace("gpu_price_drift_inf = ", f'gpu_price_drift_inf = "{text}"'
                                    " # was ", 1)
    # the pair naming it must go too: it is fixed now
    toml = toml.replace('["token_growth_inf", "gpu_price_drift_inf"', '# [', 1)
    config = parse_config_text(toml)
    assert config.parameters["gpu_price_drift_inf"] == pytest.approx(
        math.log1p(percent / 100))
    assert config.resolved["parameters"]["gpu_price_drift_inf"] == text  # as written


def test_a_rate_override_as_percent_per_year():
    config = load_config(BASE)
    for text in ('parameters.gpu_price_drift_inf="-40%/yr"',
                 "parameters.gpu_price_drift_inf=-40%/yr"):  # unquoted on a command line
        key, value = parse_override(text)
        assert (key, value) == ("parameters.gpu_price_drift_inf", "-40%/yr")
        with pytest.warns(UserWarning, match="gpu_price_drift_inf"):
            fixed = with_overrides(config, {key: value})
        assert fixed.parameters["gpu_price_drift_inf"] == pytest.approx(math.log(0.6))
        assert fixed.resolved["parameters"]["gpu_price_drift_inf"] == "-40%/yr"
    # a distribution's values may be "% per year" too (quantiles, support ends)
    drawn = with_overrides(config, {"parameters.gpu_price_drift": {
        "dist": "normal", "p5": "-40%/yr", "p95": "+10%/yr"}})
    d = drawn.parameters["gpu_price_drift"]
    assert d.params["mean"] == pytest.approx((math.log(0.6) + math.log(1.1)) / 2)
    assert parse_sweep(["parameters.gpu_price_drift_inf=-20%/yr,-40%/yr"]) == {
        "parameters.gpu_price_drift_inf": ["-20%/yr", "-40%/yr"]}


@pytest.mark.parametrize("key, value, words", [
    ("parameters.tokens_0", "-40%/yr", ['"%/yr" is only for rates',
                                        "a log rate per year (e.g. -0.51) or a percentage "
                                        'per year like "-40%/yr"']),
    ("parameters.gpu_price_drift_inf", "-100%/yr", ["-100%/yr", "log rate per year",
                                                    "100% or more"]),
    ("parameters.gpu_price_drift_inf", "-140%/yr", ["-140%/yr", "log rate per year"]),
    ("parameters.gpu_price_drift_inf", "fast", ["'fast'", "a log rate per year (e.g. "
                                                "-0.51) or a percentage per year like "
                                                '"-40%/yr"']),
    ("parameters.gpu_price_drift", {"dist": "normal", "mean": "-20%/yr", "sd": "5%/yr"},
     ["parameters.gpu_price_drift.sd", "5%/yr"]),
    ("deal.revenue_share", "20%/yr", ["deal.revenue_share"]),
])
def test_percent_per_year_refused_where_it_means_nothing(key, value, words):
    with pytest.raises(ConfigError) as exc:
        with_overrides(load_config(BASE), {key: value})
    message = str(exc.value)
    assert key.split(".")[1] in message and "\n" not in message
    for w in words:
        assert w in message


# --- sweeps ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory):
    from mcsim.api import run_sweep

    path = short_config_file(tmp_path_factory.mktemp("cfg"), "2030-12",
                             base="v1_base.toml")
    config = load_config(path).with_simulation(paths=2048, seed=3)
    grid = {"deal.revenue_share": [0.1, 0.3], "deal.investment": [13e9, 30e9]}
    return run_sweep(config, grid, progress=False)


def test_point_folders_are_named_by_value_and_parse_back():
    from mcsim.report.sweep import parse_point_dir_name, point_dir_names

    assert point_dir_names([{"deal.revenue_share": 0.1}, {"deal.revenue_share": 0.25}]) == [
        "deal.revenue_share=0.1", "deal.revenue_share=0.25"]
    assert point_dir_names([{"deal.revenue_share": 0.1, "deal.investment": 13e9}]) == [
        "deal.revenue_share=0.1,deal.investment=13000000000"]
    points = [{"parameters.gpu_price_drift_inf": "-40%/yr"},
              {"parameters.gpu_price_drift_inf": "-40%:yr"},
              {"simulation.horizon": "../../etc"}, {"simulation.horizon": "2030-12"},
              {"deal.change[1].revenue_share_cap": 10e9}, {"x.flag": True},
              {"x.text": "true"}, {"x.list": [1, 2.5]}, {"x.rate": -0.5, "x.s": "a b~c"},
              {"parameters.tokens_0": {"dist": "lognormal", "p5": 1.5e13, "p95": 4e13}}]
    names = point_dir_names(points)
    assert names[0] == "parameters.gpu_price_drift_inf=-40%25%2Fyr"
    assert names[3] == "simulation.horizon=2030-12"
    assert names[4] == "deal.change%5B1%5D.revenue_share_cap=10000000000"
    assert len(set(names)) == len(names)
    for point, name in zip(points, names, strict=True):
        assert not any(c in name for c in "/ :\"'[]*?{}~"), name
        assert parse_point_dir_name(name) == point, name  # the round trip
    # twins on a case-insensitive file system, and a name too long, get ~N (no round trip)
    twins = point_dir_names([{"x.s": "Ab"}, {"x.s": "aB"}])
    assert twins == ["x.s=Ab", "x.s=aB~2"]
    with pytest.raises(ValueError, match="summary.json"):
        parse_point_dir_name(twins[1])
    long = point_dir_names([{"parameters.tokens_0": {"dist": "lognormal", "p5": 1.5e13,
                                                     "p95": 4e13, "min": 1e12,
                                                     "max": 1e17, "note": "x" * 80}}])[0]
    assert len(long) <= 200 and long.endswith("~1")
    assert long.startswith("parameters.tokens_0=%7Bdist%3D%22lognormal%22")


def test_sweep_files_csv_and_folders(sweep_runs, tmp_path):
    from mcsim.report.sweep import (
        LONG_COLUMNS,
        STATISTICS,
        decimal_year,
        month_of_decimal_year,
        parse_point_dir_name,
        write_sweep,
    )

    out = write_sweep(sweep_runs, tmp_path / "sw", plots=False)
    names = {p.name for p in out.iterdir()}
    assert names == {"sweep.csv", ".mcsim-output.json",
                     "deal.revenue_share=0.1,deal.investment=13000000000",
                     "deal.revenue_share=0.1,deal.investment=30000000000",
                     "deal.revenue_share=0.3,deal.investment=13000000000",
                     "deal.revenue_share=0.3,deal.investment=30000000000"}
    with open(out / "sweep.csv") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    assert header == ["point", "deal.revenue_share", "deal.investment", *LONG_COLUMNS]
    assert not any(re.search(r"\d{4}-\d{2}", c) for c in header)  # no dates in names
    assert len(rows) == len(sweep_runs) * len(STATISTICS)  # one per point per statistic
    for (point, res), start in zip(sweep_runs, range(0, len(rows), len(STATISTICS)),
                                   strict=True):
        block = rows[start:start + len(STATISTICS)]
        assert [r["statistic"] for r in block] == list(STATISTICS)
        # the swept values as numbers; the point column names its folder and parses back
        assert all(float(r["deal.revenue_share"]) == point["deal.revenue_share"]
                   for r in block)
        assert all(parse_point_dir_name(r["point"]) == point for r in block)
        assert {r["point"] for r in block} <= names
        month = block[0]
        assert month["unit"] == "year" and month["horizon"] == "2030-12"
        expected = res.month_label(res.repayment.quantiles[50][0])
        if expected is None:  # beyond the horizon: an empty cell
            assert month["value"] == ""
        else:
            assert month_of_decimal_year(float(month["value"])) == expected
            assert decimal_year(expected) == pytest.approx(float(month["value"]))
        # every value, se and interval end a number (or empty: beyond the horizon)
        for r in block:
            for c in ("value", "se", "ci95_low", "ci95_high"):
                assert r[c] == "" or math.isfinite(float(r[c])), (r, c)
        p = block[1]
        assert float(p["value"]) == pytest.approx(1 - res.repayment.censored)
        assert float(p["ci95_low"]) <= float(p["value"]) <= float(p["ci95_high"])


def test_sweep_figure_plots_the_repayment_month_against_the_swept_values(sweep_runs):
    import matplotlib.dates as mdates

    from mcsim.report.sweep import sweep_figure

    fig = sweep_figure(sweep_runs)
    ax_month, ax_p = fig.axes[:2]
    lines = [ln for ln in ax_month.lines if ln.get_gid() == "median_repayment_month"]
    assert len(lines) == 2  # one line per value of the second key
    grid = sweep_runs[0][1].grid
    horizon = mdates.date2num(_first_of(grid.label(grid.num_months - 1)))
    assert [c.get_label() for c in ax_month.containers] == [
        "investment=1.3e+10", "investment=3e+10"]  # the legend's entries
    for line, investment in zip(lines, (13e9, 30e9), strict=True):
        members = [(p, r) for p, r in sweep_runs if p["deal.investment"] == investment]
        assert list(line.get_xdata()) == [p["deal.revenue_share"] for p, _ in members]
        want = []
        for _, r in members:
            label = r.month_label(r.repayment.quantiles[50][0])
            want.append(mdates.date2num(_first_of(label)) if label else horizon)
        assert list(line.get_ydata()) == pytest.approx(want)
    p_lines = [ln for ln in ax_p.lines if ln.get_gid() == "p_repaid_by_horizon"]
    assert [list(ln.get_ydata()) for ln in p_lines] == [
        pytest.approx([1 - r.repayment.censored for p, r in sweep_runs
                       if p["deal.investment"] == inv]) for inv in (13e9, 30e9)]
    assert "repayment month" in ax_month.get_ylabel()
    assert "repaid by the horizon" in ax_p.get_ylabel()
    assert ax_month.get_xlabel() == "deal.revenue_share (fraction)"
    assert isinstance(ax_month.yaxis.get_major_formatter(), mdates.ConciseDateFormatter)


def test_sweep_figure_categorical_for_strings(sweep_runs):
    from mcsim.report.sweep import sweep_figure

    relabelled = [({"simulation.start": s}, r) for s, (_, r) in
                  zip(("2024-01", "2024-02"), sweep_runs[:2], strict=True)]
    ax = sweep_figure(relabelled).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2024-01", "2024-02"]
    line = next(ln for ln in ax.lines if ln.get_gid() == "median_repayment_month")
    assert list(line.get_xdata()) == [0, 1]


def _first_of(label: str):
    from datetime import datetime

    return datetime(int(label[:4]), int(label[5:7]), 1)


def test_sweep_figure_rates_as_percent_per_year(sweep_runs):
    from mcsim.report.sweep import sweep_figure

    key = "parameters.gpu_price_drift_inf"
    relabelled = [({key: v}, r) for v, (_, r) in
                  zip(("-40%/yr", math.log(0.8)), sweep_runs[:2], strict=True)]
    ax = sweep_figure(relabelled).axes[0]
    line = next(ln for ln in ax.lines if ln.get_gid() == "median_repayment_month")
    assert sorted(line.get_xdata()) == pytest.approx([-40.0, -20.0])  # one unit: %/yr
    assert ax.get_xlabel() == f"{key} (% per year)"
