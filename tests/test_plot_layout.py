"""Every plot, drawn at its usual size and at small ones, is readable: no two text labels
overlap, none is cut at the figure's edge, no legend covers data, and the axes are scaled
to the data (:mod:`plot_checks`, from matplotlib's own bounding boxes). And what issue 25
found, each looked at once by eye, stays fixed: overlaid survival curves' median months,
the commitment's window, the fan chart's commitment step, the annual chart's dollar ticks,
the tornado's sorted measure drawn.

The runs: one short compiled config (the base config to 2036-12, its Azure commitment
window closing in 2033-10) at 4,096 paths, run again with changed numbers (no new compile)
for overlays and sweeps; the sensitivity study and SMC tables are synthetic (their plots
read arrays and rows only), so the module takes one compile.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import short_config
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from plot_checks import all_problems, text_problems

import mcsim
from mcsim import plots, plots_sensitivity
from mcsim.parameters import PARAMETER_NAMES
from mcsim.report import summarize
from mcsim.report.compare import compare_figure
from mcsim.report.sweep import sweep_figure
from mcsim.sensitivity import SensitivityResult
from mcsim.sobol import SobolIndices

#: (size in inches, layout engine): the report's, matplotlib's default (no engine, as
#: ``plt.subplots()`` gives), and a small one
SIZES = [((8, 4.5), "constrained"), ((6.4, 4.8), None), ((4.5, 3.2), "constrained")]


@pytest.fixture(scope="module")
def runs():
    from mcsim import api

    config = short_config("2036-12", base="base.toml", paths=4096)
    out = {share: api.run(mcsim.with_overrides(config, {"deal.revenue_share": share}),
                          progress=False)
           for share in (0.2, 0.1, 0.3)}
    return out


def _figure(size, layout, panels: int = 1):
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig, (fig.add_subplot() if panels == 1 else fig.subplots(1, panels))


def _composables(runs):
    """name -> draw(ax): every plot of mcsim.plots that draws on one Axes."""
    base, low, high = runs[0.2], runs[0.1], runs[0.3]
    paired = replace(base, conditioned=low)  # a second Results, drawn as "conditioned"
    draws = {
        "fan": lambda ax: base.plot_fan(ax),
        "fan (log)": lambda ax: base.plot_fan(ax, scale="log"),
        "annual": lambda ax: base.plot_annual(ax),
        "annual (linear)": lambda ax: base.plot_annual(ax, scale="linear"),
        "conditioned fan": lambda ax: paired.plot_conditioned_fan(ax),
        "conditioned survival": lambda ax: paired.plot_conditioned_survival(ax),
        "compare fan": lambda ax: mcsim.plot_compare({"a": base, "b": base, "c": high},
                                                     ax=ax, what="fan"),
        "compare survival": lambda ax: mcsim.plot_compare({"a": base, "b": low}, ax=ax,
                                                          what="survival"),
        "report fan": lambda ax: plots.fan_chart(base, ax),
        "report annual": lambda ax: plots.annual_chart(base, ax),
        "prior vs conditioned fan": lambda ax: plots.prior_vs_conditioned_fan(base, low, ax),
        "prior vs conditioned survival":
            lambda ax: plots.prior_vs_conditioned_survival(base, low, ax),
    }
    for event in base.events:
        draws[f"survival {event}"] = lambda ax, e=event: base.plot_survival(ax, which=e)
        draws[f"report {event}"] = lambda ax, e=event: plots.event_cdf(base, ax, which=e)
    return draws


NAMES = ["fan", "fan (log)", "annual", "annual (linear)", "conditioned fan",
         "conditioned survival", "compare fan", "compare survival", "report fan",
         "report annual", "prior vs conditioned fan", "prior vs conditioned survival",
         *[f"{kind} {e}" for kind in ("survival", "report")
           for e in ("repayment", "credit_exhaustion", "cap_reached", "commitment_met",
                     "funding_gap")]]


@pytest.mark.parametrize("size, layout", SIZES, ids=lambda v: str(v))
def test_every_plot_is_readable_at_every_size(runs, size, layout):
    draws = _composables(runs)
    assert sorted(draws) == sorted(NAMES)
    problems = []
    for name, draw in draws.items():
        fig, ax = _figure(size, layout)
        draw(ax)
        problems += [f"{name}: {p}" for p in all_problems(fig)]
    assert problems == []


def test_report_figures_are_readable(runs):
    base, high = runs[0.2], runs[0.3]
    figures = {
        "compare.png": compare_figure([summarize(base), summarize(base), summarize(high)],
                                      ["a", "a again", "b"]),
        "sweep.png": sweep_figure([({"deal.revenue_share": s}, runs[s])
                                   for s in (0.1, 0.2, 0.3)]),
        "sweep.png, two keys": sweep_figure(
            [({"deal.revenue_share": s, "deal.investment": i}, runs[s])
             for s in (0.1, 0.3) for i in (13e9, 2e10)]),
    }
    problems = []
    for name, fig in figures.items():
        FigureCanvasAgg(fig)
        problems += [f"{name}: {p}" for p in all_problems(fig)]
    assert problems == []


def test_overlaid_survival_curves_keep_their_median_months_apart(runs):
    fig, ax = _figure((9, 4), "constrained")
    for share in (0.2, 0.1):  # medians a few months apart: their labels collided
        runs[share].plot_repayment_survival(ax, label=f"share {share}")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    months = [runs[s].month_label(runs[s].repayment.quantiles[50][0]) for s in (0.2, 0.1)]
    assert months[0] != months[1]
    for share, month in zip((0.2, 0.1), months, strict=True):
        assert any(t.startswith(f"share {share}:") and f"median {month}" in t
                   for t in labels), labels
    assert text_problems(fig) == []


def test_a_flat_survival_curve_stops_where_its_data_stop(runs):
    base = runs[0.2]
    fig, ax = _figure((8, 4.5), "constrained")
    base.plot_survival(ax, which="commitment_met")
    # the commitment's window closes in 2033-10: the curve and the axis stop there
    assert base.config.deal.azure_commitment_by == "2033-10"
    right = ax.get_xlim()[1]
    import matplotlib.dates as mdates

    assert mdates.num2date(right).strftime("%Y-%m") == "2033-11"
    notes = [t.get_text() for t in ax.texts]
    assert any("not by 2033-10, when its window closes" in t for t in notes), notes
    fig, ax = _figure((8, 4.5), "constrained")
    base.plot_survival(ax, which="repayment")  # repaid by ~2028 on every path
    assert mdates.num2date(ax.get_xlim()[1]).year < 2032
    assert any("not by 2036-12 (the horizon)" in t.get_text() for t in ax.texts)


def test_fan_chart_says_where_the_commitment_shortfall_is_paid(runs):
    fig, ax = _figure((8, 4.5), "constrained")
    runs[0.2].plot_fan(ax)
    assert any(t.get_text().strip().startswith("2033-10: shortfall of the")
               for t in ax.texts)


def test_annual_log_axis_is_labelled_in_dollars(runs):
    fig, ax = _figure((8, 4.5), "constrained")
    runs[0.2].plot_annual(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
             if lo <= v <= hi and t.get_text()]
    assert len(shown) >= 4 and all(t.startswith("$") and t[-1] in "MBT" for t in shown), shown


def _sensitivity() -> SensitivityResult:
    """A sensitivity study with the real parameters' names and synthetic numbers: the
    plots read arrays only."""
    rng = np.random.default_rng(7)
    params = tuple(PARAMETER_NAMES[:14])
    names = (*params, "monthly_shocks")
    k, n = len(names), 256
    ranks = rng.uniform(size=(2 * n, len(params)))
    weights = rng.normal(size=len(params))
    indices, outputs = {}, {}
    for output, scale in (("repayment_month", 30.0), ("cumulative_azure_spend", 4e11),
                          ("repaid_by", 0.3)):
        total = np.sort(rng.uniform(0.01, 0.3, size=k))[::-1]
        first = total * rng.uniform(0.3, 0.9, size=k)
        indices[output] = SobolIndices(names, first, total, first * 0.7, first * 1.3,
                                       total * 0.6, total * 1.4, first * 0.1, total * 0.1,
                                       0.95, n, 200, 1.0)
        outputs[output] = scale * (ranks @ weights + rng.normal(size=2 * n))
    return SensitivityResult(indices, "2030-12", n, n * (k + 3), 1, {}, 1.0, params,
                             ranks, outputs)


@pytest.mark.parametrize("size", [(9, 5.5), (7, 5)], ids=str)
def test_sensitivity_plots_are_readable(size):
    """At the notebook's sizes (a full-width Axes, and one of two side by side): a tornado
    has two panels of long parameter names, which need some width."""
    result = _sensitivity()
    problems = []
    for name, draw in (("tornado", plots_sensitivity.plot_tornado),
                       ("drivers", plots_sensitivity.plot_drivers)):
        for output in ("repayment_month", "cumulative_azure_spend", "repaid_by"):
            if name == "drivers" and output == "repaid_by":
                continue
            fig, ax = _figure(size, "constrained")
            draw(result, ax, output)
            problems += [f"{name} {output}: {p}" for p in all_problems(fig)]
    assert problems == []


def test_the_tornado_draws_the_measure_it_is_sorted_by():
    result = _sensitivity()
    fig, ax = _figure((10, 6), "constrained")
    plots_sensitivity.plot_tornado(result, ax, "repayment_month")
    idx = result.indices["repayment_month"]
    rows = len(ax.get_yticks())
    bars = sorted(ax.patches[:rows], key=lambda p: p.get_y())  # the ST bars, bottom up
    widths = [b.get_width() for b in bars]
    assert widths == sorted(widths)  # largest at the top, as sorted
    np.testing.assert_allclose(sorted(widths)[::-1], np.sort(idx.total)[::-1][:rows])
    assert "direction" in ax.direction_axis.get_xlabel() or \
        "decile" in ax.direction_axis.get_xlabel()


def test_tornado_report_figure_is_readable(tmp_path):
    result = _sensitivity()
    path = plots_sensitivity.write_tornado(result, tmp_path / "tornado.png")
    assert path.stat().st_size > 10_000


def test_posterior_plots_are_readable():
    """The SMC report's three plots, from synthetic tables (they read rows only)."""
    rng = np.random.default_rng(3)
    shift = [{"parameter": p, "shift_in_prior_sd": float(rng.normal()),
              "posterior_mean_se": 0.05, "prior_sd": 1.0,
              "sd_ratio": float(rng.uniform(0.3, 1.1))} for p in PARAMETER_NAMES[:15]]
    steps = 6
    # 2 runs (a legend of runs) and the default 16 (too many to name: the count instead)
    # (and the preconditioned move's acceptance band, 0.4-0.6; the 16 runs' summary is one
    # written before bands were recorded: pCN's 0.2-0.4)
    diags = [{"particles": 512, "ess_fraction": 0.5, "moves": 4, "runs_detail": [
        {"run": r, "steps": steps, "temperature": list(np.geomspace(1e-3, 1, steps)),
         "ess": list(rng.uniform(200, 500, steps)),
         "acceptance": list(rng.uniform(0.2, 0.4, steps))} for r in range(runs)]}
        for runs in (2, 16)]
    diags[0]["acceptance_band"] = [0.4, 0.6]
    checks = [{"observation": f"revenue_{y}", "series": "revenue", "value": 1e10 * (y - 2020),
               "sd": 1e9, "prior_p5": 5e9, "prior_p50": 1e10 * (y - 2020), "prior_p95": 1e11,
               "posterior_p5": 8e9 * (y - 2020), "posterior_p50": 1e10 * (y - 2020),
               "posterior_p95": 1.2e10 * (y - 2020), "posterior_z": 0.5}
              for y in (2024, 2025)]
    problems = []
    fig, ax = _figure((8, 1.8 + 0.3 * 15), "constrained")
    plots.plot_parameter_shift(shift, ax, top=15)
    problems += [f"parameter_shift: {p}" for p in text_problems(fig)]
    for diag in diags:
        fig, axes = _figure((12, 3.8), "constrained", panels=3)
        plots.plot_smc_diagnostics(diag, axes)
        problems += [f"smc_diagnostics ({len(diag['runs_detail'])} runs): {p}"
                     for p in text_problems(fig)]
        # 2 runs are named in a legend; 16 (the default) are not: their legend covered
        # the curves
        legend = axes[0].get_legend()
        if len(diag["runs_detail"]) == 2:
            assert legend is not None and len(legend.get_texts()) == len(diag["runs_detail"])
        else:
            assert legend is None and axes[0].get_title().endswith("16 runs")
        band = axes[2].patches[-1].get_extents()  # the shaded band, in display units
        lo, hi = diag.get("acceptance_band", (0.2, 0.4))
        to_data = axes[2].transData.inverted().transform
        assert to_data((0, band.y0))[1] == pytest.approx(lo) \
            and to_data((0, band.y1))[1] == pytest.approx(hi)
        assert axes[2].get_legend().get_texts()[0].get_text() == f"target {lo:g}-{hi:g}"
    fig, ax = _figure((8, 1.8 + 0.45 * len(checks)), "constrained")
    plots.plot_predictive(checks, ax)
    problems += [f"predictive: {p}" for p in text_problems(fig)]
    assert problems == []
