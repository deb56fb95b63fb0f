"""Every report output carries the SMC posterior: summary.json's ``conditioned`` block (the
diagnostics, the posterior of every parameter, the posterior predictive check, each run's
headline numbers), the three CSVs, report.html's sections, the three plots and the terminal
text; and the importance method still writes its version-1 block.

The runs are shared with the other modules that read a conditioned run's outputs (conftest.py):
one small SMC run of configs/observed.toml's 25 observations (tests/data/smc_small.toml: 256
particles x 2 runs, 3 moves, 2,048 prior paths to 2029-12; flows, sums of flows and stocks,
normal and Student-t errors, three drawn bias factors), and one importance run of
tests/data/observed_importance.toml's two (4,096 paths to 2026-12)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from mcsim import plots
from mcsim.report import format_summary, render, summarize
from mcsim.report.html import plots_shown
from mcsim.report.summary import IMPORTANCE_METHOD, SCHEMA
from mcsim.report.tables import STEP_COLUMNS

#: The SMC run's observations checked field by field (configs/observed.toml's): a flow with
#: a normal error and no bias factor, a flow with a drawn bias factor, a stock with a
#: Student-t error, a sum of flows
FLOW, BIASED, STOCK, SUM = ("net_revenue_share_2024", "azure_inference_2024", "wau_2025_02",
                            "costs_2024")
#: its drawn bias factors, as posterior parameters
BIASES = ["bias:azure_inference_2024", "bias:azure_inference_2025_h1",
          "bias:azure_inference_2025_q3"]

PARAMETER_COLUMNS = ["parameter", "prior_mean", "prior_sd", "prior_p5", "prior_p50",
                     "prior_p95", "posterior_mean", "posterior_sd", "posterior_p5",
                     "posterior_p50", "posterior_p95", "posterior_mean_se",
                     "shift_in_prior_sd", "sd_ratio"]
PREDICTIVE_COLUMNS = ["observation", "series", "start", "end", "value", "sd", "error", "dof",
                      "prior_p5", "prior_p50", "prior_p95", "posterior_p5", "posterior_p50",
                      "posterior_p95", "posterior_mean", "posterior_sd", "posterior_z"]


def _strict(text: str):
    """JSON that refuses NaN and Infinity (Python's reader accepts them by default)."""
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def _warned_of_the_small_ess(run) -> None:
    """The run raised the small effective sample size's warning (when it was made)."""
    assert any("effective sample size" in w for w in run.warnings), run.warnings


@pytest.fixture(scope="module")
def smc(smc_run):
    """(results, report directory, summary.json) of conftest.py's shared SMC run."""
    _warned_of_the_small_ess(smc_run)  # 512 pooled paths
    summary = _strict((smc_run.report / "summary.json").read_text())
    return smc_run.results, smc_run.report, summary


@pytest.fixture(scope="module")
def importance(importance_run):
    """(results, report directory) of conftest.py's shared importance run."""
    _warned_of_the_small_ess(importance_run)
    return importance_run.results, importance_run.report


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


# --- summary.json ----------------------------------------------------------------------

def _summary_has_the_smc_blocks(smc):
    results, _, summary = smc
    assert summary["schema"] == SCHEMA
    cond = summary["conditioned"]
    assert cond["conditioning_method"] == "smc"
    assert "spread of the independent runs" in cond["method"]
    assert cond["reference_log_likelihood"] is None
    assert (cond["particles"], cond["runs"], cond["paths"]) == (256, 2, 512)
    assert 2 <= cond["effective_sample_size"] <= 512
    diag = cond["smc"]
    assert len(diag["runs_detail"]) == 2
    for run in diag["runs_detail"]:
        n = run["steps"]
        assert n >= 1
        for key in ("temperature", "ess", "acceptance", "rho", "distinct_after_resampling"):
            assert len(run[key]) == n, key
        temps = run["temperature"]
        assert temps[-1] == 1.0 and all(np.diff(temps) > 0)
        assert all(0.0 <= a <= 1.0 for a in run["acceptance"])
    # every drawn parameter and the three drawn bias factors, sorted by |shift|
    config = results.config
    names = [r["parameter"] for r in cond["posterior_parameters"]]
    assert sorted(names) == sorted(config.uncertain_parameters() + BIASES)
    shifts = [abs(r["shift_in_prior_sd"]) for r in cond["posterior_parameters"]]
    assert shifts == sorted(shifts, reverse=True)
    assert all(r["posterior_mean_se"] > 0 for r in cond["posterior_parameters"])
    assert [r["observation"] for r in cond["posterior_predictive"]] == \
        [o.name for o in config.observations]
    assert len(cond["posterior_predictive"]) == 25
    assert all(set(r) == set(PREDICTIVE_COLUMNS) for r in cond["posterior_predictive"])
    # the conditioned statistics, through the Results interface
    assert len(cond["cumulative_azure_spend"]["mean"]) == results.grid.num_months
    assert cond["cumulative_azure_spend"]["mean_se"][-1] > 0
    # times are provenance, one per run
    assert len(summary["provenance"]["smc_run_seconds"]) == 2


def _observations_carry_their_new_fields(smc):
    obs = {o["name"]: o for o in smc[2]["conditioned"]["observations"]}
    flow, biased, stock, total = obs[FLOW], obs[BIASED], obs[STOCK], obs[SUM]
    assert flow["series"] == ["net_revenue_share"] and flow["stock"] is False
    assert flow["error"] == "normal" and flow["dof"] is None and flow["bias"] is None
    assert math.isclose(flow["sd"], 0.15 * 0.4938e9)
    assert stock["series"] == ["weekly_active_users"] and stock["stock"] is True
    assert (stock["start"], stock["end"]) == ("2025-02", "2025-02")
    assert stock["error"] == "student_t" and stock["dof"] == 5.0 and stock["bias"] is None
    assert biased["series"] == ["azure_inference_spend"] and biased["error"] == "normal"
    assert biased["bias"]["kind"] == "lognormal"
    assert math.isclose(biased["bias"]["params"]["median"], 1.0, rel_tol=0.02)
    assert total["series"] == ["compute_spend", "other_opex", "net_revenue_share",
                               "azure_commitment_shortfall"] and total["stock"] is False


def _per_run_headlines_and_their_spread(smc):
    results, _, summary = smc
    cond = summary["conditioned"]
    runs = results.conditioned.run_results
    assert len(cond["per_run"]) == len(runs) == 2
    values = []
    for row, run in zip(cond["per_run"], runs, strict=True):
        T = run.grid.num_months
        v = run.quantiles("cumulative_azure_spend", (50,)).value[T - 1, 0]
        assert row["cumulative_azure_spend_p50"] == pytest.approx(v, rel=1e-12)
        assert row["repayment_p50"] == run.month_label(run.repayment.quantiles[50.0][0])
        assert row["p_azure_commitment_met"] == pytest.approx(
            1.0 - run.commitment_met.censored)
        values.append(v)
    # sd of two runs over sqrt(2) is half their difference
    se = cond["per_run_se"]
    assert se["cumulative_azure_spend_p50"] == \
        pytest.approx(abs(values[0] - values[1]) / 2, rel=1e-9)
    # a month median has no spread error: it is a whole month, and says so (issue 24)
    assert {"cumulative_azure_spend_p50", "p_azure_commitment_met"} <= set(se)
    assert not [k for k in se if k.endswith("_months")], se
    assert se["month_resolution"] == "1 month" and "whole months" in se["note"]
    assert all("_months" not in row for row in cond["per_run"])
    # the pooled mean's error is the runs' spread too
    means = [r.mean("cumulative_azure_spend")[0][-1] for r in runs]
    assert cond["cumulative_azure_spend"]["mean_se"][-1] == \
        pytest.approx(abs(means[0] - means[1]) / 2, rel=1e-9)


def _each_statistic_counts_its_own_effective_paths(smc):
    """Quantile intervals and event probabilities count the effective paths of their own
    statistic (issue 24), not one pooled ESS: two statistics with different design effects
    get different interval widths."""
    from mcsim.posterior import effective_paths_per_statistic, event_effective_paths
    from mcsim.results import histogram_quantiles

    cond = smc[0].conditioned
    runs = cond.run_results
    own = effective_paths_per_statistic(
        cond.accumulator.moments.variance(), [r.accumulator.moments.mean for r in runs],
        cond.num_paths)
    np.testing.assert_array_equal(cond.statistic_ess, own)
    rows = cond.layout.rows("cumulative_azure_spend")
    T = cond.grid.num_months
    ess = own[rows][T // 2:]
    # they differ (by 7.9x here: a few statistics at their i.i.d. count, 512 paths, the
    # others well below it)
    assert np.isfinite(ess).all() and ess.max() > 1.25 * ess.min()
    hist = cond.accumulator.histogram
    sign = cond.layout.non_negative()
    q = cond.quantiles("cumulative_azure_spend", (50.0,))
    widths = {}
    for t in (T // 2 + int(np.argmin(ess)), T // 2 + int(np.argmax(ess))):
        r = rows.start + t
        counts = hist[r] * (own[r] / hist[r].sum())
        value, low, high = histogram_quantiles(counts, cond.bins, (50.0,), bool(sign[r]))
        assert (q.value[t, 0], q.ci_low[t, 0], q.ci_high[t, 0]) == pytest.approx(
            (value[0], low[0], high[0]), rel=1e-12)
        pooled = histogram_quantiles(hist[r] * (cond.ess / hist[r].sum()), cond.bins,
                                     (50.0,), bool(sign[r]))
        widths[t] = (high[0] - low[0], pooled[2][0] - pooled[1][0])
    (few, few_pooled), (many, many_pooled) = widths.values()
    # relative to the pooled ESS's interval, the fewer effective paths the wider
    assert few / few_pooled > many / many_pooled
    # an event counts its own effective paths, from its cumulative probabilities: shown on
    # an event whose count differs from the pooled ESS (with the preconditioned move most
    # are at the cap, all the particles, as the pooled ESS may be too)
    own_paths = {e: event_effective_paths([r.event_counts(e) for r in runs])
                 for e in cond.layout.event_names}
    assert all(math.isfinite(v) for v in own_paths.values())
    differing = [e for e, v in own_paths.items() if v != pytest.approx(cond.ess)]
    assert differing, own_paths
    which = differing[0]
    expected = own_paths[which]
    assert cond.effective_paths_of(which) == expected
    counts = cond.event_counts(which).astype(np.float64)
    censored = counts[-1] / counts.sum()
    assert cond.event(which).censored_se == pytest.approx(
        math.sqrt(censored * (1 - censored) / expected), rel=1e-9)
    # the public ESS is still the pooled one
    assert cond.effective_paths_of() == cond.ess


# --- CSV tables ----------------------------------------------------------------------

def _posterior_csvs(smc):
    _, out, summary = smc
    cond = summary["conditioned"]
    header, rows = _read_csv(out / "posterior_parameters.csv")
    assert header == PARAMETER_COLUMNS
    assert [r[0] for r in rows] == [r["parameter"] for r in cond["posterior_parameters"]]
    assert float(rows[0][header.index("shift_in_prior_sd")]) == pytest.approx(
        cond["posterior_parameters"][0]["shift_in_prior_sd"], rel=1e-8)
    header, rows = _read_csv(out / "posterior_predictive.csv")
    assert header == PREDICTIVE_COLUMNS and len(rows) == len(cond["posterior_predictive"])
    row = {r[0]: r for r in rows}
    assert row[FLOW][header.index("dof")] == ""  # a Gaussian error: no degrees of freedom
    assert float(row[STOCK][header.index("dof")]) == 5.0
    header, rows = _read_csv(out / "smc_steps.csv")
    assert header == list(STEP_COLUMNS)
    detail = cond["smc"]["runs_detail"]
    assert len(rows) == sum(r["steps"] for r in detail)
    assert [(int(r[0]), int(r[1])) for r in rows] == [
        (d["run"], k + 1) for d in detail for k in range(d["steps"])]
    assert float(rows[-1][header.index("temperature")]) == 1.0
    # each step's moves (whole numbers) and mixing diagnostic
    assert [int(r[header.index("moves")]) for r in rows] == [
        m for d in detail for m in d["moves"]]
    assert [float(r[header.index("mixing")]) for r in rows] == pytest.approx(
        [m for d in detail for m in d["mixing"]])
    manifest = json.loads((out / ".mcsim-output.json").read_text())["files"]
    for name in ("posterior_parameters.csv", "posterior_predictive.csv", "smc_steps.csv",
                 "parameter_shift.png", "smc_diagnostics.png", "posterior_predictive.png"):
        assert name in manifest, name


def _saved_posterior_reads_back_whole_moves(smc, tmp_path):
    """A sweep point's saved SMC posterior reads its steps back as they were: moves and
    distinct particles as ints (mcsim.engine.smc.step_from_row), mixing as a float."""
    from mcsim import saved

    results = smc[0]
    data = saved.results_arrays(results)
    back = saved.results_from_arrays(data, results.config, "float32", tmp_path / "p.npz")
    for run, again in zip(results.conditioned.posterior.runs,
                          back.conditioned.posterior.runs, strict=True):
        assert again.steps == run.steps
        for st in again.steps:
            assert type(st.moves) is int and type(st.distinct_after_resampling) is int
            assert type(st.mixing) is float
    assert back.conditioned.ess == pytest.approx(results.conditioned.ess, rel=1e-12)


# --- report.html -------------------------------------------------------------------------

def _table_rows(page: str, table_id: str) -> list[str]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table, table_id
    return re.findall(r"<tr[ >].*?</tr>", table.group(1), re.S)[1:]  # without the header


def _html_has_the_posterior_sections(smc):
    _, out, summary = smc
    page = (out / "report.html").read_text(encoding="utf-8")
    cond = summary["conditioned"]
    for anchor in ('id="smc-diagnostics"', 'id="posterior-parameters"',
                   'id="posterior-predictive"', 'id="smc-headline"'):
        assert anchor in page, anchor
    headline = _table_rows(page, "smc-headline")
    assert len(headline) == 4
    # the month medians carry their pooled interval and the month resolution, no +-
    for row in headline[1:3]:
        assert "resolution 1 month" in row and "&plusmn;" not in row, row
    steps = re.search(r'<table id="smc-steps">(.*?)</table>', page, re.S).group(1)
    header = re.findall(r"<th>(.*?)</th>", steps)
    assert {"moves", "mixing"} <= set(header)
    first = cond["smc"]["runs_detail"][0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in _table_rows(page, "smc-steps")]
    assert [c[header.index("moves")] for c in cells] == [str(m) for m in first["moves"]]
    assert [c[header.index("mixing")] for c in cells] == [f"{m:.2f}" for m in first["mixing"]]
    runs_header = re.findall(r"<th>(.*?)</th>", re.search(
        r'<table id="smc-runs">(.*?)</table>', page, re.S).group(1))
    assert "moves" in runs_header and not any("distinct" in h for h in runs_header)
    # a summary of a version before moves and mixing still renders (n/a in their cells)
    old = json.loads(json.dumps(summary))
    for run in old["conditioned"]["smc"]["runs_detail"]:
        del run["moves"], run["mixing"]
    old["conditioned"]["per_run_se"].pop("month_resolution")
    assert 'id="smc-steps"' in render(old, {})
    assert len(_table_rows(page, "smc-runs")) == 2
    assert len(_table_rows(page, "smc-steps")) == cond["smc"]["runs_detail"][0]["steps"]
    params = _table_rows(page, "posterior-parameters-table")
    assert len(params) == len(cond["posterior_parameters"])
    assert sum(r.startswith("<tr class=top>") for r in params) == 10
    assert all(r.startswith("<tr class=top>") for r in params[:10])
    assert len(_table_rows(page, "posterior-predictive-table")) == \
        len(cond["posterior_predictive"])
    # every PNG written is inline, the SMC ones in the conditioned section
    drawn = [name for name, _ in plots_shown() if (out / name).exists()]
    assert {"parameter_shift.png", "smc_diagnostics.png", "posterior_predictive.png"} <= \
        set(drawn)
    assert page.count("data:image/png;base64,") == len(drawn)
    section = page[page.index("<h2>Conditioned"):page.index("<h2>Plots")]
    assert section.count("data:image/png;base64,") == 3


def _html_flags_an_observation_the_posterior_misses(smc):
    summary = json.loads(json.dumps(smc[2]))
    page = render(summary, {})
    assert "class=miss" not in page  # every observation is reproduced here
    summary["conditioned"]["posterior_predictive"][1]["posterior_z"] = -3.4
    page = render(summary, {})
    rows = _table_rows(page, "posterior-predictive-table")
    assert rows[1].startswith("<tr class=miss>") and "-3.40" in rows[1]
    assert not rows[0].startswith("<tr class=miss>")


# --- plots --------------------------------------------------------------------------------

def _plot_parameter_shift_draws_the_top_bars(smc):
    rows = smc[2]["conditioned"]["posterior_parameters"]
    ax = plots.plot_parameter_shift(rows, Figure().add_subplot(), top=5)
    assert len(ax.patches) == 5
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[::-1] == [plots._name_text(r["parameter"]) for r in rows[:5]]
    widths = [p.get_width() for p in ax.patches]
    assert widths[::-1] == pytest.approx([r["shift_in_prior_sd"] for r in rows[:5]])
    ratio = ax.sd_ratio_axis.get_lines()[0].get_xdata()
    assert list(ratio[::-1]) == pytest.approx([r["sd_ratio"] for r in rows[:5]])
    everything = plots.plot_parameter_shift(rows, Figure().add_subplot(), top=100)
    assert len(everything.patches) == len(rows)


def _plot_smc_diagnostics_draws_one_line_per_run(smc):
    diag = smc[2]["conditioned"]["smc"]
    axes = plots.plot_smc_diagnostics(diag, Figure().subplots(1, 3))
    assert len(axes) == 3
    for ax in axes:
        runs = [line for line in ax.get_lines() if line.get_label().startswith("run ")]
        assert len(runs) == 2
        assert [len(line.get_xdata()) for line in runs] == \
            [r["steps"] for r in diag["runs_detail"]]
    ess = [line for line in axes[1].get_lines() if line.get_label() == "run 1"][0]
    first = diag["runs_detail"][0]
    assert list(ess.get_ydata()) == pytest.approx(np.array(first["ess"]) / 256)
    band = [p for p in axes[2].patches if p.get_label().startswith("target")]
    assert len(band) == 1
    ys = band[0].get_path().transformed(band[0].get_patch_transform()).vertices[:, 1]
    # the default move's band, as the summary records it
    assert diag["move"] == "preconditioned" and diag["acceptance_band"] == [0.4, 0.6]
    assert (ys.min(), ys.max()) == pytest.approx((0.4, 0.6))


def _plot_predictive_normalises_by_the_value(smc):
    rows = json.loads(json.dumps(smc[2]["conditioned"]["posterior_predictive"]))
    ax = plots.plot_predictive(rows, Figure().add_subplot())
    assert ax.get_xscale() == "log"
    assert len(ax.get_yticks()) == len(rows)
    posterior = [line for line in ax.get_lines() if line.get_linewidth() == 5]
    assert len(posterior) == len(rows)
    top = rows[-1]  # drawn at the bottom row first: rows are reversed
    assert list(posterior[0].get_xdata()) == pytest.approx(
        [top["posterior_p5"] / top["value"], top["posterior_p95"] / top["value"]])
    rows[0]["posterior_z"] = 4.5
    ax = plots.plot_predictive(rows, Figure().add_subplot())
    flagged = [t for t in ax.get_yticklabels() if "z = +4.5" in t.get_text()]
    assert len(flagged) == 1 and flagged[0].get_color() == "tab:red"


def _every_plot_returns_its_axes_without_one(smc):
    cond = smc[2]["conditioned"]
    import matplotlib.pyplot as plt

    try:
        assert plots.plot_parameter_shift(cond["posterior_parameters"]).patches
        assert len(plots.plot_smc_diagnostics(cond["smc"])) == 3
        assert plots.plot_predictive(cond["posterior_predictive"]).get_lines()
    finally:
        plt.close("all")


# --- terminal text --------------------------------------------------------------------------

def _text_names_the_method_and_the_shifts(smc, monkeypatch):
    results, _, summary = smc
    text = format_summary(results)
    cond = summary["conditioned"]
    steps = "/".join(str(r["steps"]) for r in cond["smc"]["runs_detail"])
    assert "method: smc, 256 particles x 2 runs" in text
    assert f"tempering steps per run {steps}" in text
    top = [r["parameter"] for r in cond["posterior_parameters"][:5]]
    line = next(x for x in text.splitlines() if "shifted most" in x)
    assert [w.split()[0] for w in line.split(": ", 1)[1].split(", ")] == top
    assert "far from the posterior" not in text  # every observation is reproduced
    # an observation the posterior misses gets a line of its own
    import mcsim.report.text as text_module

    blocks = text_module.posterior_blocks(results.conditioned)
    blocks["posterior_predictive"][1]["posterior_z"] = -3.4
    monkeypatch.setattr(text_module, "posterior_blocks", lambda cond: blocks)
    missed = [x for x in format_summary(results).splitlines() if "far from the posterior" in x]
    assert len(missed) == 1 and "z = -3.4" in missed[0]
    assert "observation azure_inference_2025_h1" in missed[0]  # the config's second


def test_smc_report(smc, monkeypatch, tmp_path):
    """One SMC run's report, checked part by part (one test: the run is made once, on one
    worker)."""
    _summary_has_the_smc_blocks(smc)
    _observations_carry_their_new_fields(smc)
    _per_run_headlines_and_their_spread(smc)
    _each_statistic_counts_its_own_effective_paths(smc)
    _saved_posterior_reads_back_whole_moves(smc, tmp_path)
    _posterior_csvs(smc)
    _html_has_the_posterior_sections(smc)
    _html_flags_an_observation_the_posterior_misses(smc)
    _plot_parameter_shift_draws_the_top_bars(smc)
    _plot_smc_diagnostics_draws_one_line_per_run(smc)
    _plot_predictive_normalises_by_the_value(smc)
    _every_plot_returns_its_axes_without_one(smc)
    _text_names_the_method_and_the_shifts(smc, monkeypatch)


# --- the importance method ------------------------------------------------------------------

def test_importance_keeps_its_block(importance):
    results, out = importance
    summary = _strict((out / "summary.json").read_text())
    cond = summary["conditioned"]
    assert cond["conditioning_method"] == "importance"
    assert cond["method"] == IMPORTANCE_METHOD
    assert isinstance(cond["reference_log_likelihood"], float)
    assert cond["paths"] == results.num_paths == 4096
    for key in ("smc", "posterior_parameters", "posterior_predictive", "per_run"):
        assert key not in cond, key
    assert [o["name"] for o in cond["observations"]] == ["azure_inference_2024",
                                                         "azure_inference_2025_q1_q3"]
    for name in ("posterior_parameters.csv", "posterior_predictive.csv", "smc_steps.csv",
                 "parameter_shift.png", "smc_diagnostics.png", "posterior_predictive.png"):
        assert not (out / name).exists(), name
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Conditioned on the observations" in page and "smc-diagnostics" not in page
    assert "method: smc" not in format_summary(results)
    assert summarize(results)["conditioned"]["effective_sample_size"] == \
        pytest.approx(results.conditioned.ess)
