"""The terminal's text: :func:`format_summary`, a run's headline (:mod:`mcsim.report.headline`)
then a few detail lines, each quantile with its 95% interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layout import STOCKS
from .format import interval_end_text, money_text
from .headline import figures_text, headline
from .summary import _month_text, _nonfinite_block, posterior_blocks

if TYPE_CHECKING:
    from ..results import MonthDistribution, QuantileTable, Results


def _money_ci(q: QuantileTable, i: int, j: int) -> str:
    """A quantile with its 95% interval: ``$1.2B [$1.1B..$1.3B]``; an interval end that is
    infinite is open (too few paths, or beyond the histogram's range): ``-inf``/``inf``."""
    low, high = interval_end_text(q.ci_low[i, j]), interval_end_text(q.ci_high[i, j])
    return f"{money_text(q.value[i, j])} [{low}..{high}]"


def _month_ci(results: Results, dist: MonthDistribution, pct: float) -> str:
    m, lo, hi = dist.quantiles[float(pct)]
    grid = results.grid
    if lo == hi == m:  # exact to the month, or all beyond the horizon
        return _month_text(grid, m)
    return f"{_month_text(grid, m)} [{_month_text(grid, lo)}..{_month_text(grid, hi)}]"


#: The horizon totals the terminal's detail lines show (every one is in summary.json's
#: "horizon" block and horizon_totals.csv), those a run has, in this order.
DETAIL_TOTALS = ("cumulative_revenue", "cumulative_profit", "deepest_cumulative_loss",
                 "microsoft_receipts", "microsoft_economic_return", "microsoft_equity_value")


def headline_lines(h: dict) -> list[str]:
    """The headline (:func:`mcsim.report.headline.headline`) as the terminal's lines: each
    item's title, then its rows (a conditioned run's prior on the line below each)."""
    if h["lead"] == "posterior":
        n = h["observations"]
        lines = [f"Headline, conditioned on {n} observation{'s' if n != 1 else ''} "
                 f"(effective sample size {h['effective_sample_size']:,.0f}); the prior "
                 "below each:"]
    else:
        lines = ["Headline:"]
    for item in h["items"]:
        lines.append(f"  {item['title']}")
        for row in item["rows"]:
            lines.append(f"    {row['label']}: {figures_text(row['kind'], _own(row))}")
            if "prior" in row:
                lines.append(f"      prior: {figures_text(row['kind'], row['prior'])}")
        if item["note"]:
            lines.append(f"    ({item['note']})")
    return lines


def _own(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "prior"}


def format_summary(results: Results) -> str:
    """The run's headline (:func:`mcsim.report.headline.headline`), then a few detail
    lines; each quantile with its 95% interval in [..]."""
    grid = results.grid
    T = grid.num_months
    end = grid.label(T - 1)
    lines = [f"mcsim: {results.num_paths:,} paths, {grid.label(0)} .. {end}, "
             f"seed {results.info.seed}, {results.info.seconds:.1f} s on {results.info.device}"
             "  (quantiles with 95% intervals in [..]; ± = 1.96 × SE, 95%; 90%: the 5% and "
             "95% quantiles over paths)"]
    lines += headline_lines(headline(results))
    lines.append("Detail" + (" (prior):" if results.conditioned is not None else ":"))
    ai = results.quantiles("azure_inference_spend", (50,))
    labels = grid.year_labels()
    shown = ", ".join(f"{labels[y]}: {_money_ci(ai, y, 0)}" for y in range(min(3,
                                                                              len(labels))))
    lines.append(f"  Azure inference spend, median by year: {shown}")
    deal = results.config.deal
    events = [(e.label, results.event(e.name)) for e in results.layout.events
              if e.shown(deal)]
    for title, dist in events:
        lines.append(f"  {title}: median {_month_ci(results, dist, 50)}; "
                     f"5%: {_month_ci(results, dist, 5)}; 95%: {_month_ci(results, dist, 95)}; "
                     f"P(not by the horizon) = {dist.censored:.3f} ± "
                     f"{1.96 * dist.censored_se:.3f}")
    hm, hse = results.mean("horizon")
    hq = results.quantiles("horizon", (50,))
    totals = results.layout.horizon_totals
    for name in (n for n in DETAIL_TOTALS if n in totals):
        i = totals.index(name)
        lines.append(f"  {name.replace('_', ' ')} at {end}: median {_money_ci(hq, i, 0)}, "
                     f"mean {money_text(hm[i])} ± {money_text(1.96 * hse[i])}")
    lines.append(f"  (every total at {end}: summary.json \"horizon\", horizon_totals.csv)")
    if results.conditioned is not None:
        cond = results.conditioned
        if getattr(cond, "posterior", None) is not None:
            lines += _smc_lines(cond)
        if cond.warning:
            lines.append(f"  WARNING: {cond.warning}")
    if results.accumulator.nonfinite_paths:
        block = _nonfinite_block(results)
        lines.append(f"  WARNING: {block['paths']:,} paths had a NaN or inf (first in "
                     f"{block['first_month']}) and are left out of every statistic above")
    return "\n".join(lines)


def _smc_lines(cond) -> list[str]:
    """The SMC posterior in a few lines: particles x runs, tempering steps and final
    acceptance per run, the effective sample size, the parameters shifted most and any
    observation the posterior misses (|z| >= 3)."""
    blocks = posterior_blocks(cond)
    diag = blocks["smc"]
    runs = diag["runs_detail"]
    steps = "/".join(str(r["steps"]) for r in runs)
    acc = "/".join("n/a" if not r["acceptance"] or r["acceptance"][-1] is None
                   else f"{r['acceptance'][-1]:.2f}" for r in runs)
    lines = [f"  method: smc, {diag['particles']:,} particles x {diag['runs']} runs; "
             f"tempering steps per run {steps}; final acceptance {acc}; effective sample "
             f"size {cond.ess:,.0f} of {cond.num_paths:,} pooled paths"]
    top = [r for r in blocks["posterior_parameters"]
           if r["shift_in_prior_sd"] is not None][:5]
    if top:
        lines.append("  shifted most (posterior mean - prior mean, in prior sds): " + ", ".join(
            f"{r['parameter']} {r['shift_in_prior_sd']:+.2f}" for r in top))
    missed = [r for r in blocks["posterior_predictive"]
              if r["posterior_z"] is not None and abs(r["posterior_z"]) >= 3]
    for r in missed:
        lines.append(f"  WARNING: observation {r['observation']} is far from the posterior "
                     f"(z = {r['posterior_z']:+.1f}): value {_value_text(r['value'], r)}, "
                     f"posterior median {_value_text(r['posterior_p50'], r)}")
    return lines


def _value_text(x, row) -> str:
    """An observation's value: dollars for a flow, a plain number for a stock."""
    if x is None:
        return "n/a"
    return f"{x:.3g}" if row["series"] in STOCKS else money_text(x)  # cash: dollars
