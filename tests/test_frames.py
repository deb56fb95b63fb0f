"""Tidy frames of Results (issue 15, item 2): index types and dtypes, one column scheme in
the API and the CSV files, names checked with the valid choices, the event month table and
the summary frame, for plain, conditioned (importance) and SMC results (the conditioned runs
are the ones the other modules share: conftest.py's importance_run and smc_run)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mcsim
from mcsim.events import names as event_names
from mcsim.events import table as events_table
from mcsim.layout import ALL_HORIZON_TOTALS, ANNUAL_FLOWS, HORIZON_TOTALS, STOCKS
from mcsim.report.tables import RESULT_TABLES, write_tables
from mcsim.results import Estimate

EVENTS = event_names(events_table())  # a run without [funding]: version 2's events

QUANTILE_COLUMNS = ["p5", "p5_low", "p5_high", "p25", "p25_low", "p25_high", "p50", "p50_low",
                    "p50_high", "p75", "p75_low", "p75_high", "p95", "p95_low", "p95_high",
                    "mean", "mean_se"]
SUMMARY_COLUMNS = ["mean", "sd", "p5", "p25", "p50", "p75", "p95", "mc_error", "unit"]
SUMMARY_ROWS = ["cumulative_azure_spend", *HORIZON_TOTALS,
                *[f"{e}_{k}" for e in EVENTS for k in ("month", "beyond_horizon")]]
#: a run with every version-3 mechanism (the shared SMC run's, configs/observed.toml's):
#: version 3's totals and events after version 2's
EVENTS_V3 = event_names(events_table(None))
SUMMARY_ROWS_V3 = ["cumulative_azure_spend", *ALL_HORIZON_TOTALS,
                   *[f"{e}_{k}" for e in EVENTS_V3 for k in ("month", "beyond_horizon")]]


#: base.toml as it was before version 3 (its frames' rows are version 2's; version 3's
#: rows in frames: the SMC posterior's below, and tests/test_v3_outputs.py)
V2_BASE = Path(__file__).resolve().parent / "data" / "v2" / "base.toml"


@pytest.fixture(scope="module")
def results():
    cfg = mcsim.load_config(V2_BASE).with_simulation(horizon="2028-12",
                                                                        paths=4096)
    return mcsim.simulate(cfg, condition=False, progress=False)


@pytest.fixture(scope="module")
def conditioned(importance_run):
    """tests/data/observed_importance.toml (version 1's terms: version 2's rows) to 2026-12,
    4,096 paths, with its importance-conditioned pass."""
    return importance_run.results


@pytest.fixture(scope="module")
def posterior(smc_run):
    """configs/observed.toml's SMC posterior, small (tests/data/smc_small.toml): every
    version-3 row."""
    return smc_run.results.conditioned


def _is_month_index(index) -> bool:
    return isinstance(index, pd.PeriodIndex) and index.freqstr == "M" and \
        index.name == "month"


def _floats(frame, columns) -> None:
    for c in columns:
        assert frame[c].dtype == np.float64, c


def test_mean_is_a_labelled_estimate(results):
    est = results.mean("horizon")
    assert isinstance(est, Estimate) and len(est) == 2
    mean, se = est
    assert mean is est.mean and se is est.se and len(mean) == len(HORIZON_TOTALS)
    frame = results.mean_frame("horizon")
    assert list(frame.columns) == ["mean", "mean_se"] and frame.index.name == "statistic"
    assert frame.loc["microsoft_net", "mean"] == mean[HORIZON_TOTALS.index("microsoft_net")]
    years = results.mean_frame("revenue")
    assert list(years.columns) == ["partial", "mean", "mean_se"]
    assert years.index.dtype == np.int64 and years.index.name == "year"


def test_quantile_frames_have_typed_indexes(results):
    cum = results.quantile_frame("cumulative_azure_spend")
    assert _is_month_index(cum.index) and len(cum) == results.grid.num_months
    assert cum.index[0] == pd.Period("2024-01", "M") and cum.index[-1] == pd.Period("2028-12")
    assert list(cum.columns) == QUANTILE_COLUMNS
    _floats(cum, QUANTILE_COLUMNS)
    annual = results.quantile_frame("revenue")
    assert annual.index.name == "year" and annual.index.dtype == np.int64
    assert list(annual.index) == [2024, 2025, 2026, 2027, 2028]
    assert list(annual.columns) == ["partial"] + QUANTILE_COLUMNS
    assert annual["partial"].dtype == bool and not annual["partial"].any()
    _floats(annual, QUANTILE_COLUMNS)
    stocks = results.stock_frame()
    assert stocks.index.names == ["stock", "year"]
    assert set(stocks.index.get_level_values("stock")) == set(STOCKS)
    allf = results.annual_frame()
    assert allf.index.names == ["flow", "year"]
    assert set(allf.index.get_level_values("flow")) == set(ANNUAL_FLOWS)
    assert allf.index.get_level_values("year").dtype == np.int64
    horizon = results.quantile_frame("horizon")
    assert list(horizon.index) == list(HORIZON_TOTALS) and horizon.index.name == "statistic"


def test_partial_years_are_flagged():
    cfg = mcsim.load_config(V2_BASE).with_simulation(
        start="2024-03", horizon="2025-10", paths=1024)
    res = mcsim.simulate(cfg, condition=False, progress=False)
    frame = res.quantile_frame("azure_spend")
    assert list(frame.index) == [2024, 2025] and list(frame["partial"]) == [True, True]


def test_event_frame(results):
    for which in EVENTS:
        ev = results.event_frame(which)
        assert _is_month_index(ev.index) and len(ev) == results.grid.num_months
        assert list(ev.columns) == ["survival", "survival_se", "cdf", "cdf_se"]
        _floats(ev, ev.columns)
        np.testing.assert_allclose(ev["survival"], 1 - ev["cdf"])
        assert ev["cdf"].is_monotonic_increasing
        np.testing.assert_array_equal(ev["cdf"], getattr(results, which).cdf)


def test_bad_names_raise_naming_the_choices(results):
    with pytest.raises(ValueError, match="which = 'repaymnet'") as err:
        results.event_frame("repaymnet")
    for e in EVENTS:
        assert f'"{e}"' in str(err.value)
    assert 'did you mean "repayment"' in str(err.value)
    with pytest.raises(ValueError, match='cumulative_revenue is a row of "horizon"') as err:
        results.quantile_frame("cumulative_revenue")
    assert '"cumulative_azure_spend"' in str(err.value) and '"horizon"' in str(err.value)
    with pytest.raises(ValueError, match='did you mean "revenue_share"'):
        results.mean("revenue_shares")
    with pytest.raises(ValueError, match='did you mean "horizon"'):
        results.mean_frame("horizn")
    with pytest.raises(ValueError, match="which = 'cap'"):
        results.plot_survival(which="cap")


def test_event_quantile_frame(results):
    eq = results.event_quantile_frame()
    assert eq.index.names == ["event", "percentile"] and len(eq) == 4 * 5
    assert list(eq.columns) == ["month", "month_low", "month_high", "beyond_horizon"]
    for c in ("month", "month_low", "month_high"):
        assert eq[c].dtype == pd.PeriodDtype("M"), c
    assert eq["beyond_horizon"].dtype == bool
    assert eq["beyond_horizon"].any()  # repayment by 2028 is rare: p50 beyond the horizon
    assert eq.loc[eq["beyond_horizon"], "month"].isna().all()
    assert eq.loc[~eq["beyond_horizon"], "month"].notna().all()
    for which in EVENTS:
        dist = getattr(results, which)
        for p in (5.0, 50.0, 95.0):
            m, _, _ = dist.quantiles[p]
            got = eq.loc[(which, p), "month"]
            assert (pd.isna(got) if m is None else got == results.month_period(m))
    known = eq.dropna(subset=["month", "month_low", "month_high"])
    assert (known["month_low"] <= known["month"]).all()
    assert (known["month"] <= known["month_high"]).all()


def _check_summary(res, rows=SUMMARY_ROWS, totals=HORIZON_TOTALS,
                   events=EVENTS) -> pd.DataFrame:
    s = res.summary_frame()
    assert list(s.columns) == SUMMARY_COLUMNS and list(s.index) == rows
    assert s.index.name == "statistic"
    _floats(s, SUMMARY_COLUMNS[:-1])
    h = res.quantile_frame("horizon")
    for name in totals:
        assert s.loc[name, "p50"] == h.loc[name, "p50"], name
        assert s.loc[name, "mean"] == h.loc[name, "mean"]
        assert s.loc[name, "mc_error"] == h.loc[name, "mean_se"]
    cum = res.quantile_frame("cumulative_azure_spend")
    assert s.loc["cumulative_azure_spend", "p50"] == cum["p50"].iloc[-1]
    assert s.loc["cumulative_azure_spend", "sd"] > 0
    eq = res.event_quantile_frame()
    start = res.month_period(0)
    for which in events:
        month = eq.loc[(which, 50.0), "month"]
        expected = np.inf if pd.isna(month) else float((month - start).n)
        assert s.loc[f"{which}_month", "p50"] == expected, which
        dist = res.event(which)
        assert s.loc[f"{which}_beyond_horizon", "mean"] == dist.censored
        assert s.loc[f"{which}_beyond_horizon", "mc_error"] == dist.censored_se
        assert np.isnan(s.loc[f"{which}_month", "mean"]) == (dist.censored > 0)
    assert s.loc["repayment_month", "unit"] == "months since 2024-01"
    return s


def test_summary_frame(results):
    s = _check_summary(results)
    assert s.loc["microsoft_receipts", "unit"] == "$"


def test_summary_frame_conditioned(conditioned):
    _check_summary(conditioned.conditioned)
    assert conditioned.conditioned.summary_frame().loc["cumulative_revenue", "mc_error"] == \
        conditioned.conditioned.mean("horizon").se[0]


def test_summary_frame_posterior(posterior):
    s = _check_summary(posterior, SUMMARY_ROWS_V3, ALL_HORIZON_TOTALS, EVENTS_V3)
    # the SMC results' own errors: the spread of the runs
    from mcsim.posterior import spread_error
    se = spread_error([r.accumulator.moments.mean for r in posterior.run_results])
    row = posterior.layout.row("cumulative_revenue")
    assert s.loc["cumulative_revenue", "mc_error"] == pytest.approx(se[row])


def test_step_frame_posterior(posterior):
    # each tempering step's moves (whole numbers) and mixing diagnostic (issue 24)
    f = posterior.step_frame()
    steps = [st for r in posterior.posterior.runs for st in r.steps]
    assert {"moves", "mixing", "distinct_after_resampling"} <= set(f.columns)
    assert len(f) == len(steps) and f["moves"].dtype.kind == "i"
    assert list(f["moves"]) == [st.moves for st in steps]
    np.testing.assert_array_equal(f["mixing"], [st.mixing for st in steps])


def _header(path):
    with open(path, newline="") as fh:
        return next(csv.reader(fh)), list(csv.reader(fh))


def test_csv_headers_are_the_frames_columns(results, conditioned, tmp_path):
    write_tables(conditioned, tmp_path)
    for suffix, res in (("", conditioned), ("_conditioned", conditioned.conditioned)):
        frames = {"cumulative_azure_spend.csv": res.quantile_frame("cumulative_azure_spend"),
                  "annual.csv": res.annual_frame(), "stocks.csv": res.stock_frame(),
                  "event_quantiles.csv": res.event_quantile_frame(),
                  "horizon_totals.csv": res.quantile_frame("horizon")}
        for name, frame in frames.items():
            header, rows = _header(tmp_path / name.replace(".csv", f"{suffix}.csv"))
            assert header == list(frame.index.names) + list(frame.columns), name
            assert len(rows) == len(frame), name
        for name in RESULT_TABLES:
            assert (tmp_path / name.replace(".csv", f"{suffix}.csv")).exists()
    header, rows = _header(tmp_path / "cumulative_azure_spend.csv")
    assert rows[0][0] == "2024-01" and "p5_ci95_low" not in header
    header, rows = _header(tmp_path / "annual.csv")
    assert rows[0][:3] == ["azure_spend", "2024", "False"]
    header, rows = _header(tmp_path / "event_quantiles.csv")
    beyond = [r for r in rows if r[header.index("beyond_horizon")] == "True"]
    assert beyond and all(r[header.index("month")] == "" for r in beyond)
    known = [r for r in rows if r[header.index("beyond_horizon")] == "False"]
    assert all(len(r[header.index("month")]) == 7 for r in known)
    back = pd.read_csv(tmp_path / "event_quantiles.csv")
    assert back["beyond_horizon"].dtype == bool


def test_plot_methods_delegate_and_return_the_axes(results, conditioned):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5)
    assert results.plot_fan(axes[0], bands=[(10, 90)]) is axes[0]
    assert results.plot_annual(axes[1], flow="revenue") is axes[1]
    assert results.plot_survival(axes[2], which="credit_exhaustion") is axes[2]
    assert results.plot_repayment_survival(axes[2], color="tab:red") is axes[2]
    assert conditioned.plot_conditioned_fan(axes[3]) is axes[3]
    assert conditioned.plot_conditioned_survival(axes[4]) is axes[4]
    with pytest.raises(ValueError, match="no conditioned results"):
        results.plot_conditioned_fan(axes[3])
    plt.close(fig)
