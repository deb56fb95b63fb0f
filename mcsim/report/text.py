"""The terminal's text: :func:`format_summary`, a run's headline numbers in a few lines, each
quantile with its 95% interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layout import HORIZON_TOTALS
from .format import interval_end_text, money_text
from .summary import _month_text, _nonfinite_block

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
             "  (quantiles with 95% intervals in [..])"]
    q = results.quantiles("cumulative_azure_spend", (5, 50, 95))
    lines.append(f"  cumulative Azure spend by {end}: median {_money_ci(q, T - 1, 1)}; "
                 f"5%: {_money_ci(q, T - 1, 0)}; 95%: {_money_ci(q, T - 1, 2)}")
    ai = results.quantiles("azure_inference_spend", (50,))
    labels = grid.year_labels()
    shown = ", ".join(f"{labels[y]}: {_money_ci(ai, y, 0)}" for y in range(min(3,
                                                                              len(labels))))
    lines.append(f"  Azure inference spend, median by year: {shown}")
    events = [("Microsoft repaid", results.repayment),
              ("Azure credits exhausted", results.credit_exhaustion)]
    deal = results.config.deal
    if any(c is not None for c in deal.term_values("revenue_share_cap")):
        events.append(("Revenue-share cap reached", results.cap_reached))
    if deal.azure_commitment is not None:
        events.append(("Azure commitment met by spend", results.commitment_met))
    for title, dist in events:
        lines.append(f"  {title}: median {_month_ci(results, dist, 50)}; "
                     f"5%: {_month_ci(results, dist, 5)}; 95%: {_month_ci(results, dist, 95)}; "
                     f"P(not by the horizon) = {dist.censored:.3f} +- "
                     f"{1.96 * dist.censored_se:.3f}")
    hm, hse = results.mean("horizon")
    hq = results.quantiles("horizon", (50,))
    for i, name in enumerate(HORIZON_TOTALS):
        lines.append(f"  {name.replace('_', ' ')} at {end}: median {_money_ci(hq, i, 0)}, "
                     f"mean {money_text(hm[i])} +- {money_text(1.96 * hse[i])}")
    if results.conditioned is not None:
        cond = results.conditioned
        cq = cond.quantiles("cumulative_azure_spend", (50,))
        lines.append(f"  conditioned on {len(results.config.observations)} observations "
                     f"(effective sample size {cond.ess:,.0f}): cumulative Azure spend by "
                     f"{end}: median {_money_ci(cq, T - 1, 0)}; Microsoft repaid: median "
                     f"{_month_ci(cond, cond.repayment, 50)}; P(not by the horizon) = "
                     f"{cond.repayment.censored:.3f} +- {1.96 * cond.repayment.censored_se:.3f}")
        if cond.warning:
            lines.append(f"  WARNING: {cond.warning}")
    if results.accumulator.nonfinite_paths:
        block = _nonfinite_block(results)
        lines.append(f"  WARNING: {block['paths']:,} paths had a NaN or inf (first in "
                     f"{block['first_month']}) and are left out of every statistic above")
    return "\n".join(lines)
