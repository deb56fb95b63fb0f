"""The terminal's text: :func:`format_summary`, a run's headline numbers in a few lines, each
quantile with its 95% interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layout import STOCKS
from .format import interval_end_text, money_text
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


def format_summary(results: Results) -> str:
    """A short text of the headline numbers, each quantile with its 95% interval in [..]."""
    grid = results.grid
    T = grid.num_months
    end = grid.label(T - 1)
    lines = [f"mcsim: {results.num_paths:,} paths, {grid.label(0)} .. {end}, "
             f"seed {results.info.seed}, {results.info.seconds:.1f} s on {results.info.device}"
             "  (quantiles with 95% intervals in [..]; ± = 1.96 × SE, 95%)"]
    q = results.quantiles("cumulative_azure_spend", (5, 50, 95))
    lines.append(f"  cumulative Azure spend by {end}: median {_money_ci(q, T - 1, 1)}; "
                 f"5%: {_money_ci(q, T - 1, 0)}; 95%: {_money_ci(q, T - 1, 2)}")
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
    for i, name in enumerate(results.layout.horizon_totals):
        lines.append(f"  {name.replace('_', ' ')} at {end}: median {_money_ci(hq, i, 0)}, "
                     f"mean {money_text(hm[i])} ± {money_text(1.96 * hse[i])}")
    if results.conditioned is not None:
        cond = results.conditioned
        cq = cond.quantiles("cumulative_azure_spend", (50,))
        lines.append(f"  conditioned on {len(results.config.observations)} observations "
                     f"(effective sample size {cond.ess:,.0f}): cumulative Azure spend by "
                     f"{end}: median {_money_ci(cq, T - 1, 0)}; Microsoft repaid: median "
                     f"{_month_ci(cond, cond.repayment, 50)}; P(not by the horizon) = "
                     f"{cond.repayment.censored:.3f} ± {1.96 * cond.repayment.censored_se:.3f}")
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
