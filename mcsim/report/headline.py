"""The headline: the few figures a run leads with, each with its Monte Carlo error, as plain
JSON-ready data (:func:`headline`); the terminal (:mod:`~mcsim.report.text`), ``report.html``
(:mod:`~mcsim.report.html`, from summary.json's ``"headline"`` block) and summary.json
(:mod:`~mcsim.report.summary`) all show this one computation.

The items, in order (an item whose mechanism the config lacks is left out):

1. ``cumulative_azure_spend``: cumulative Azure spend by the horizon (its present value too,
   with ``simulation.discount_rate``);
2. ``revenue_share_cap`` (a deal with a revenue-share cap): the month it is reached, and
   P(the revenue share ends -- the deal's ``revenue_share_end`` in force at the horizon --
   before the cap is reached) = 1 - P(cap reached by that month);
3. ``azure_commitment`` (a deal with a commitment): P(met by spend), P(a shortfall is paid)
   and the shortfall given it is paid: the quantiles of the nonzero values of the annual flow
   ``azure_commitment_shortfall`` in the commitment's due year (its histogram without the
   zero bin, which holds |x| < $1);
4. ``funding_gap`` (``[funding]``): P(OpenAI's cash runs out by 2027-12, 2028-12, 2030-12 and
   by the horizon), the median month, and the funding still to be found at the horizon
   (``funding_to_find``): a path whose cash runs out keeps spending;
5. ``microsoft_position``: Microsoft's whole position (economic return + equity value;
   undiscounted, and its present value) with ``microsoft_equity_stake``; without it, its
   economic return (a version-2 quantity) under that name;
6. ``repayment``: the month Microsoft is repaid, and P(not by the horizon).

Every figure carries its Monte Carlo error: a quantile its 95% interval (order statistics
widened to the histogram's bins, :func:`mcsim.results.histogram_quantiles`), a month its 95%
interval of months, a probability its standard error (shown as +- 1.96 SE). A conditioned run
leads with the conditioned (posterior) figures and puts the prior's beside each
(``row["prior"]``). Money is nominal US dollars; "90%" is the 5% to 95% quantiles over paths.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..events import by_name as event_by_name
from ..results import histogram_quantiles
from .format import _num, money_text

if TYPE_CHECKING:
    from ..results import Results

#: The items' keys, in the order the headline shows them.
ORDER = ("cumulative_azure_spend", "revenue_share_cap", "azure_commitment", "funding_gap",
         "microsoft_position", "repayment")
#: The months at which the headline asks P(OpenAI's cash has run out by then) (issue 23).
FUNDING_GAP_DATES = ("2027-12", "2028-12", "2030-12")
#: The percentiles of a money figure: the median and the 90% interval.
PERCENTILES = (5.0, 50.0, 95.0)
KEEPS_SPENDING = ("a path whose cash runs out keeps spending: the model reports what it "
                  "would take, not what would happen")
METHOD = ("each item's figures lead with the conditioned (posterior) run where there is one, "
          "the prior beside them (\"prior\"); money: median and 90% interval (5% and 95% over "
          "paths), each with its 95% Monte Carlo interval [ci95_low, ci95_high] (order "
          "statistics widened to the histogram's bins; null: open); months likewise; a "
          "probability with its standard error se (95%: +- 1.96 se)")


def headline(results: Results) -> dict:
    """The headline of a run (see the module docstring) as plain data: ``lead``
    ("posterior" or "prior"), ``horizon``, ``items`` (each ``key``, ``title``, ``note``
    and its ``rows``: ``key``, ``label``, ``kind`` "money", "month" or "probability" and
    its figures; with a conditioned run each row's ``prior`` holds the prior's figures)."""
    cond = results.conditioned
    lead = cond if cond is not None else results
    items = _items(lead)
    out = {"lead": "posterior" if cond is not None else "prior",
           "horizon": results.grid.label(results.grid.num_months - 1),
           "method": METHOD}
    if cond is not None:
        out["observations"] = len(results.config.observations)
        out["effective_sample_size"] = _num(cond.ess)
        prior = {(i["key"], r["key"]): r for i in _items(results) for r in i["rows"]}
        for item in items:
            for row in item["rows"]:
                other = prior.get((item["key"], row["key"]))
                row["prior"] = None if other is None else _figures(other)
    out["items"] = items
    return out


def _figures(row: dict) -> dict:
    """A row's figures alone (no key, label or kind)."""
    return {k: v for k, v in row.items() if k not in ("key", "label", "kind", "prior")}


# --- the items ----------------------------------------------------------------------------

def _items(results: Results) -> list[dict]:
    grid = results.grid
    end = grid.label(grid.num_months - 1)
    deal = results.config.deal
    v3 = results.layout.v3
    horizon = results.layout.horizon_totals
    discount = "discount" in v3
    items = []

    rows = [_money_row("nominal", "nominal", results, "cumulative_azure_spend",
                       grid.num_months - 1)]
    if discount:
        rows.append(_money_row("present_value", f"present value ({_rate_text(results)})",
                               results, "horizon", horizon.index("pv_cumulative_azure_spend")))
    items.append(_item("cumulative_azure_spend", f"Cumulative Azure spend by {end}", rows))

    if "cap_reached" in results.events and \
            event_by_name("cap_reached", results.layout.events).shown(deal):
        items.append(_cap_item(results))
    if deal.azure_commitment is not None and "commitment_met" in results.events:
        items.append(_commitment_item(results))
    if "funding" in v3 and "funding_gap" in results.events:
        items.append(_funding_item(results))
    items.append(_position_item(results))

    dist = results.event("repayment", PERCENTILES)
    items.append(_item("repayment", f"Microsoft repaid ({money_text(deal.investment)})", [
        _month_row("median_month", "median month", results, dist),
        _probability_row("not_by_horizon", f"P(not repaid by {end})", dist.censored,
                         dist.censored_se)]))
    return items


def _cap_item(results: Results) -> dict:
    grid, deal = results.grid, results.config.deal
    T = grid.num_months
    dist = results.event("cap_reached", PERCENTILES)
    cap = _in_force(deal, "revenue_share_cap", grid)
    if cap is None:  # a cap set by a change after the horizon only
        cap = next(c for c in reversed(deal.term_values("revenue_share_cap")) if c is not None)
    rows = [_month_row("median_month", "month reached, median", results, dist),
            _probability_row("by_horizon", f"P(reached by {grid.label(T - 1)})",
                             1.0 - dist.censored, dist.censored_se)]
    share_end = _in_force(deal, "revenue_share_end", grid)
    note = None
    if share_end is not None and 0 <= grid.index(share_end) < T:
        t = grid.index(share_end)
        rows.append(_probability_row(
            "share_ends_first", f"P(the revenue share ends ({share_end}) before the cap is "
            "reached)", 1.0 - float(dist.cdf[t]), float(dist.cdf_se[t])))
    elif share_end is not None:
        note = f"the revenue share ends {share_end}, outside the run's months"
    return _item("revenue_share_cap", f"Revenue-share cap ({money_text(cap)})", rows, note)


def _commitment_item(results: Results) -> dict:
    grid, deal = results.grid, results.config.deal
    T = grid.num_months
    end = grid.label(T - 1)
    due = deal.azure_commitment_by
    dist = results.event("commitment_met", PERCENTILES)
    inside = grid.index(due) < T
    rows = [_probability_row("met", f"P(met by spend{'' if inside else ' by ' + end})",
                             1.0 - dist.censored, dist.censored_se)]
    note = None
    if inside:
        paid, paid_se, row = conditional_nonzero(results, "azure_commitment_shortfall",
                                                 int(due[:4]))
        rows.append(_probability_row("shortfall_paid", f"P(a shortfall is paid, {due})",
                                     paid, paid_se))
        rows.append({"key": "shortfall_given_paid", "label": "shortfall, given it is paid",
                     "kind": "money", **row})
    else:
        note = f"due {due}, after the horizon: no shortfall is paid in the run"
    title = (f"Azure commitment ({money_text(deal.azure_commitment)}, "
             f"{deal.azure_commitment_from} .. {due})")
    return _item("azure_commitment", title, rows, note)


def _funding_item(results: Results) -> dict:
    grid = results.grid
    T = grid.num_months
    end = grid.label(T - 1)
    dist = results.event("funding_gap", PERCENTILES)
    rows = []
    for label in FUNDING_GAP_DATES:
        t = grid.index(label)
        if 0 <= t < T - 1:
            rows.append(_probability_row(f"by_{label}", f"P(by {label})", float(dist.cdf[t]),
                                         float(dist.cdf_se[t])))
    rows.append(_probability_row("by_horizon", f"P(by {end})", 1.0 - dist.censored,
                                 dist.censored_se))
    rows.append(_month_row("median_month", "median month", results, dist))
    rows.append(_money_row("funding_to_find", f"funding still to be found by {end}", results,
                           "horizon", results.layout.horizon_totals.index("funding_to_find")))
    return _item("funding_gap", "Funding gap: the first month OpenAI's cash is below $0",
                 rows, KEEPS_SPENDING)


def _position_item(results: Results) -> dict:
    horizon = results.layout.horizon_totals
    end = results.grid.label(results.grid.num_months - 1)
    equity = "equity" in results.layout.v3
    name = "microsoft_whole_position" if equity else "microsoft_economic_return"
    rows = [_money_row("undiscounted", "undiscounted", results, "horizon",
                       horizon.index(name))]
    if f"pv_{name}" in horizon:
        rows.append(_money_row("present_value", f"present value ({_rate_text(results)})",
                               results, "horizon", horizon.index(f"pv_{name}")))
    if equity:
        stake = results.config.parameters.get("microsoft_equity_stake")
        share = f"{100 * stake:.4g}% " if isinstance(stake, int | float) else ""
        title = f"Microsoft's whole position at {end} (economic return + {share}equity)"
        note = None
    else:
        # a config without a stake: its version-2 position, under its own name
        title = f"Microsoft's economic return at {end} (receipts + Azure margin)"
        note = None
    return _item("microsoft_position", title, rows, note)


# --- the figures ----------------------------------------------------------------------------

def _item(key: str, title: str, rows: list[dict], note: str | None = None) -> dict:
    return {"key": key, "title": title, "note": note, "rows": rows}


def _quantile(value, low, high) -> dict:
    return {"value": _num(value), "ci95_low": _num(low), "ci95_high": _num(high)}


def _money_row(key: str, label: str, results: Results, group: str, i: int) -> dict:
    q = results.quantiles(group, PERCENTILES)
    mean, se = results.mean(group)
    return {"key": key, "label": label, "kind": "money",
            **{name: _quantile(q.value[i, j], q.ci_low[i, j], q.ci_high[i, j])
               for j, name in enumerate(("p5", "median", "p95"))},
            "mean": _num(mean[i]), "mean_se": _num(se[i])}


def _month_row(key: str, label: str, results: Results, dist) -> dict:
    m, lo, hi = dist.quantiles[50.0]
    return {"key": key, "label": label, "kind": "month", "month": results.month_label(m),
            "ci95_low": results.month_label(lo), "ci95_high": results.month_label(hi)}


def _probability_row(key: str, label: str, p: float, se: float) -> dict:
    return {"key": key, "label": label, "kind": "probability", "probability": _num(p),
            "se": _num(se)}


def conditional_nonzero(results: Results, flow: str, year: int) -> tuple[float | None,
                                                                        float | None, dict]:
    """An annual flow in calendar ``year``, given it is not zero: (P(nonzero), its
    standard error, and the money figures -- median and 90% interval with their 95%
    intervals, and ``paths``, the paths (effective, for a conditioned run) behind them).

    From the flow's histogram of that year without its zero bin (|x| < $1): the quantiles
    of the rest are those of the nonzero values, their intervals from the order statistics
    of those paths alone."""
    row = results.layout.rows(flow).start + results.grid.years.index(year)
    bins = results.bins
    counts = np.asarray(results._effective(results.accumulator.histogram[row], row),
                        np.float64)
    finite = counts[:bins.nan_bin]
    n = float(finite.sum())
    nonzero = finite.copy()
    nonzero[bins.per_sign + 1] = 0.0
    k = float(nonzero.sum())
    p = k / n if n > 0 else math.nan
    se = math.sqrt(p * (1.0 - p) / n) if n > 0 else math.nan
    value, low, high = histogram_quantiles(nonzero, bins, PERCENTILES,
                                           bool(results.layout.non_negative()[row]))
    figures = {name: _quantile(value[j], low[j], high[j])
               for j, name in enumerate(("p5", "median", "p95"))}
    return _num(p), _num(se), {**figures, "mean": None, "mean_se": None, "paths": _num(k)}


def _in_force(deal, name: str, grid):
    """The value of term ``name`` in force at the horizon: the initial one, replaced by each
    change that sets it from a month inside the run."""
    value = getattr(deal, name)
    last = grid.label(grid.num_months - 1)
    for change in deal.changes:
        if change.start <= last and name in dict(change.terms):
            value = change.get(name)
    return value


def _rate_text(results: Results) -> str:
    """``at 15%/yr to 2024-01``: the discount rate as an annual rate (simulation.discount_rate
    is a log rate), and the month discounted to."""
    r = results.config.simulation.discount_rate
    if r > 700.0:  # e^r - 1 overflows a float near 709.8: say the log rate instead
        return f"at a log rate of {r:.3g}/yr to {results.grid.label(0)}"
    return f"at {100 * math.expm1(r):.3g}%/yr to {results.grid.label(0)}"


# --- text shared by the terminal and report.html ------------------------------------------------

def month_text(month: str | None) -> str:
    return month if month is not None else "not by the horizon"


def figures_text(kind: str, f: dict | None, esc=str, wrap=str, sep: str = "; ") -> str:
    """A row's figures as text: money ``median $1B [$0.9B..$1.1B]; 90%: $0.5B [..] ..
    $2B [..]``, a month ``2028-10 [2028-09..2028-11]``, a probability ``0.353 ± 0.007``.
    ``esc`` escapes a piece of text, ``wrap`` marks up an (escaped) error and ``sep`` joins
    a money figure's median and 90% interval (report.html: ``html.escape``, a span and a
    line break; the terminal: neither, and "; ")."""
    if f is None:
        return "n/a"
    if kind == "probability":
        if f["probability"] is None:
            return "n/a"
        half = "n/a" if f["se"] is None else f"{1.96 * f['se']:.3f}"
        return f"{f['probability']:.3f} " + wrap(esc(f"± {half}"))
    if kind == "month":
        m, lo, hi = f["month"], f["ci95_low"], f["ci95_high"]
        if m == lo == hi:
            return esc(month_text(m))
        return esc(month_text(m)) + " " + wrap(esc(f"[{month_text(lo)}..{month_text(hi)}]"))

    def money(q: dict) -> str:
        low = "-inf" if q["ci95_low"] is None else money_text(q["ci95_low"])
        high = "inf" if q["ci95_high"] is None else money_text(q["ci95_high"])
        return esc(money_text(q["value"])) + " " + wrap(esc(f"[{low}..{high}]"))
    return (f"median {money(f['median'])}{sep}90%: {money(f['p5'])} " + esc("..")
            + f" {money(f['p95'])}")


__all__ = ["FUNDING_GAP_DATES", "KEEPS_SPENDING", "ORDER", "conditional_nonzero",
           "figures_text", "headline"]
