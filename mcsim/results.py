"""Results: plain NumPy statistics with their Monte Carlo error, computed from accumulators.

Quantiles come from the fixed histogram bins. Each has a 95% confidence interval from order
statistics: the p-quantile of n paths lies, with 95% confidence, between the order statistics
of ranks ``n p -+ 1.96 sqrt(n p (1-p))`` (normal approximation to the binomial), and those
are bracketed by the lower and upper edges of the bins that hold them. The interval thus
covers both the Monte Carlo error and the bin width. Means carry ``sqrt(var/n)``.
Months are indices into the grid; a quantile beyond the horizon is ``None``.

The ``*_frame`` methods label all of it as pandas DataFrames, with one column scheme shared
with the report's CSV files (whose header is a frame's index names, then its columns):

* ``p5``, ``p5_low``, ``p5_high``, ``p25``, ... ``p95_high``: each quantile and its 95%
  interval; then ``mean``, ``mean_se`` (the mean and its Monte Carlo standard error).
* months: a ``pandas.PeriodIndex`` (freq "M") named ``month``; years: int calendar years
  named ``year``, with a bool column ``partial`` (a partial first or last year); horizon
  totals: their names, ``statistic``.
* event months (:meth:`Results.event_quantile_frame`): ``month``, ``month_low``,
  ``month_high`` as Periods, ``NaT`` beyond the horizon, and ``beyond_horizon``;
  :meth:`Results.event_frame`: ``survival``, ``survival_se``, ``cdf``, ``cdf_se``.
* :meth:`Results.summary_frame`: ``mean``, ``sd``, ``p5`` ... ``p95``, ``mc_error``,
  ``unit``; months there as offsets from the start month (+inf beyond the horizon).

A group or event name that is not one raises ValueError naming the valid ones.
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from .accumulators import Accumulator, MoneyBins
from .config import Config
from .engine.conditioning import WeightedMoments, ess_warning, weighted_moments
from .events import names as events_names
from .layout import (
    ALL_HORIZON_TOTALS,
    ANNUAL_FLOWS,
    GROUPS,
    HORIZON_TOTALS,
    STOCK_UNITS,
    StatLayout,
)

Z_95 = 1.959964
DEFAULT_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)


def _money(x: float) -> str:
    """Dollars in a short text (``$1.23B``), for reprs (the report has its own)."""
    if not np.isfinite(x):
        return "n/a" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    sign, a = ("-" if x < 0 else ""), abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if a >= scale:
            return f"{sign}${a / scale:.3g}{suffix}"
    return f"{sign}${a:,.0f}"


class Estimate(tuple):
    """A mean with its Monte Carlo standard error over a group's rows, labelled.

    Unpacks as before, ``mean, se = results.mean(group)`` (two float arrays; also
    ``est.mean``, ``est.se``, ``est[0]``), and says what each row is: ``labels`` (months
    ``"YYYY-MM"``, calendar years as ints, or the horizon totals' names), ``group`` and
    ``unit``; ``est.at(label)`` is one row's ``(mean, se)``, ``est.to_frame()`` all of them
    as a pandas DataFrame (as :meth:`Results.mean_frame`, without its ``partial``)."""

    def __new__(cls, mean: np.ndarray, se: np.ndarray, labels=None, group: str = "",
                unit: str = "$") -> Estimate:
        self = super().__new__(cls, (mean, se))
        self.labels = tuple(labels) if labels is not None else tuple(range(len(mean)))
        self.group = group
        self.unit = unit
        return self

    def __reduce__(self):  # pickling: the labels too (a tuple's would pass one argument)
        return (Estimate, (self[0], self[1], self.labels, self.group, self.unit))

    @property
    def mean(self) -> np.ndarray:
        return self[0]

    @property
    def se(self) -> np.ndarray:
        return self[1]

    def at(self, label) -> tuple[float, float]:
        """``(mean, se)`` of the row named ``label`` (a ValueError names the labels)."""
        if label not in self.labels:
            shown = ", ".join(map(str, self.labels[:3] + ("...",) + self.labels[-2:]))
            raise ValueError(_bad_name("label", label, [str(x) for x in self.labels])
                             if len(self.labels) <= 20 else
                             f"label = {label!r}: expected one of {shown}")
        i = self.labels.index(label)
        return float(self[0][i]), float(self[1][i])

    def to_frame(self):
        """Columns ``mean``, ``mean_se``, indexed by the labels (a pandas DataFrame)."""
        import pandas as pd

        name = {"horizon": "statistic", "cumulative_azure_spend": "month"}.get(self.group,
                                                                               "year")
        return pd.DataFrame({"mean": self[0], "mean_se": self[1]},
                            index=pd.Index(list(self.labels), name=name))

    def _value(self, x: float) -> str:
        return _money(x) if self.unit == "$" else f"{x:.4g}"

    def __repr__(self) -> str:
        rows = list(range(len(self.labels)))
        if len(rows) > 8:  # months: the first and last few
            rows = rows[:3] + [None] + rows[-3:]
        width = max((len(str(x)) for x in self.labels), default=0)
        lines = [f"Estimate of {self.group or 'a group'}: mean ± 1.96 SE (95%), "
                 f"{self.unit}, {len(self.labels)} rows"]
        for i in rows:
            lines.append("  ..." if i is None else
                         f"  {str(self.labels[i]):<{width}}  {self._value(self[0][i])} "
                         f"± {self._value(1.96 * self[1][i])}")
        return "\n".join(lines)


def _bad_name(what: str, value, choices, hint: str = "") -> str:
    """The message for a name not among ``choices``: every valid one, and the closest."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    guess = f" (did you mean \"{close[0]}\"?)" if close else ""
    return (f"{what} = {value!r}: expected one of " + ", ".join(f'"{c}"' for c in choices)
            + guess + hint)


def check_group(group: str) -> str:
    """``group`` if it names a group of rows (:data:`~mcsim.layout.GROUPS`), else a
    ValueError naming the valid groups (and the group a horizon total belongs to)."""
    if group in GROUPS:
        return group
    hint = (f"; {group} is a row of \"horizon\": quantile_frame(\"horizon\")"
            f".loc[\"{group}\"]" if group in ALL_HORIZON_TOTALS else "")
    raise ValueError(_bad_name("group", group, GROUPS, hint))


def check_event(which: str, names: tuple[str, ...] | None = None) -> str:
    """``which`` if it names a first-passage month (:mod:`mcsim.events`; ``names``: a
    layout's), else a ValueError naming them."""
    names = events_names() if names is None else names
    if which in names:
        return which
    raise ValueError(_bad_name("which", which, names))


@dataclass(frozen=True, eq=False)
class QuantileTable:
    """Quantiles of R statistics at P percentiles: arrays [R, P] of $ (NaN when empty),
    labelled: ``labels`` (each row's month "YYYY-MM", calendar year or total's name),
    ``group`` and ``unit``; :meth:`at` gives one row, :meth:`to_frame` all of them (as
    :meth:`Results.quantile_frame`, without the means)."""

    percentiles: tuple[float, ...]
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    labels: tuple = ()
    group: str = ""
    unit: str = "$"

    def at(self, label) -> dict[float, tuple[float, float, float]]:
        """One row: {percentile: (quantile, 95% interval's low end, high end)}."""
        if label not in self.labels:
            raise ValueError(_bad_name("label", label, [str(x) for x in self.labels]))
        i = self.labels.index(label)
        return {p: (float(self.value[i, j]), float(self.ci_low[i, j]),
                    float(self.ci_high[i, j])) for j, p in enumerate(self.percentiles)}

    def to_frame(self):
        """Columns ``p5``, ``p5_low``, ``p5_high``, ... indexed by the labels."""
        import pandas as pd

        data = {}
        for j, p in enumerate(self.percentiles):
            data[f"p{p:g}"], data[f"p{p:g}_low"], data[f"p{p:g}_high"] = (
                self.value[:, j], self.ci_low[:, j], self.ci_high[:, j])
        labels = list(self.labels) if self.labels else list(range(len(self.value)))
        return pd.DataFrame(data, index=pd.Index(labels, name=_index_name(self.group)))

    def __repr__(self) -> str:
        """A few rows, labelled (the arrays are the fields)."""
        n = len(self.value)
        rows = list(range(n)) if n <= 8 else list(range(3)) + [None] + list(range(n - 3, n))
        labels = self.labels or tuple(range(n))
        width = max((len(str(x)) for x in labels), default=0)
        fmt = _money if self.unit == "$" else (lambda x: f"{x:.4g}")
        pcts = ", ".join(f"{p:g}%" for p in self.percentiles)
        lines = [f"QuantileTable of {self.group or 'a group'} ({self.unit}): {n} rows at "
                 f"{pcts}; 95% intervals in .ci_low, .ci_high"]
        for i in rows:
            lines.append("  ..." if i is None else f"  {str(labels[i]):<{width}}  " +
                         "  ".join(fmt(v) for v in self.value[i]))
        return "\n".join(lines)


def _index_name(group: str) -> str:
    return {"horizon": "statistic", "cumulative_azure_spend": "month"}.get(group, "year")


@dataclass(frozen=True, eq=False)
class MonthDistribution:
    """Distribution of a first-passage month (repayment or credit exhaustion).

    ``cdf[m]`` = P(event by month index m) with ``cdf_se``; ``quantiles`` maps a
    percentile to (month index or None, ci_low or None, ci_high or None); ``censored`` is
    P(not by the horizon) with ``censored_se``. Labelled by :meth:`Results.event`:
    ``labels`` (the grid's months, "YYYY-MM") and ``which`` (the event); :meth:`month`
    gives a percentile's month as "YYYY-MM", :meth:`to_frame` the CDF by month.
    """

    counts: np.ndarray
    cdf: np.ndarray
    cdf_se: np.ndarray
    censored: float
    censored_se: float
    quantiles: dict[float, tuple[int | None, int | None, int | None]]
    labels: tuple[str, ...] = ()
    which: str = ""

    def month(self, percentile: float = 50.0) -> tuple[str | None, str | None, str | None]:
        """The ``percentile``'s month and its 95% interval as "YYYY-MM" (None: beyond the
        horizon)."""
        if float(percentile) not in self.quantiles:
            raise ValueError(_bad_name("percentile", percentile,
                                       [f"{p:g}" for p in self.quantiles]))
        return tuple(None if t is None else (self.labels[t] if self.labels else str(t))
                     for t in self.quantiles[float(percentile)])

    def to_frame(self):
        """``cdf``, ``cdf_se`` and ``survival`` = 1 - cdf by month (as
        :meth:`Results.event_frame`, indexed by "YYYY-MM" labels)."""
        import pandas as pd

        labels = list(self.labels) if self.labels else list(range(len(self.cdf)))
        return pd.DataFrame({"cdf": self.cdf, "cdf_se": self.cdf_se,
                             "survival": 1.0 - self.cdf},
                            index=pd.Index(labels, name="month"))

    def __repr__(self) -> str:
        """The months at each percentile and P(not by the horizon), in one or two lines."""
        end = self.labels[-1] if self.labels else "the horizon"
        parts = []
        for p in self.quantiles:
            m, lo, hi = self.month(p)
            text = m or f"after {end}"
            if (lo, hi) != (m, m):
                text += f" [{lo or 'after ' + end}..{hi or 'after ' + end}]"
            parts.append(f"{p:g}%: {text}")
        return (f"<MonthDistribution of {self.which or 'an event'}: " + "; ".join(parts)
                + f"; P(not by {end}) {self.censored:.3f} ± {1.96 * self.censored_se:.3f} "
                "(95%)>")


def _rank_bounds(n: float, p: float) -> tuple[float, float]:
    """Ranks of the 95% interval's ends; below 0 or above n where the paths cannot bound
    the quantile on that side (too few paths in the tail: the interval is open there)."""
    half = Z_95 * np.sqrt(n * p * (1.0 - p))
    return n * p - half, n * p + half


def histogram_quantiles(counts: np.ndarray, bins: MoneyBins, percentiles,
                        non_negative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantiles of one histogram row with 95% CIs. Log-linear interpolation inside a bin.

    A quantile in an overflow bin (beyond +-10^max_exponent $, the histogram's range) is
    +-inf: the bins say only that it lies beyond the range, never a value (its interval
    then runs from the range's edge to +-inf). ``non_negative``: the statistic is never
    negative by construction (spend, revenue, receipts), so the zero bin, which holds
    |x| < $1, starts at 0, and so does an interval open below: no interval of such a
    statistic has a negative end.
    """
    lo, hi = bins.edges()
    c = counts[: bins.nan_bin].astype(np.float64)
    cum = np.cumsum(c)
    # the total as the cumulative sum's own last entry: with fractional (effective) counts
    # a separately rounded sum can exceed it, and a rank of n would fall off the end
    n = cum[-1]
    out = np.full((3, len(percentiles)), np.nan)
    if n == 0:
        return out[0], out[1], out[2]
    zero = bins.per_sign + 1
    lo = lo.copy()
    if non_negative:
        lo[zero] = 0.0
    open_below = 0.0 if non_negative else -np.inf
    overflow = (0, len(c) - 1)

    def bin_at(rank: float) -> int:
        return int(np.searchsorted(cum, min(max(rank, 1e-9), n), side="left"))

    for i, pct in enumerate(percentiles):
        p = pct / 100.0
        target = p * n
        k = bin_at(target)
        prev = cum[k - 1] if k > 0 else 0.0
        frac = (target - prev) / c[k] if c[k] > 0 else 0.5
        out[0, i] = (-np.inf if k == 0 else np.inf) if k in overflow else \
            _interpolate(lo[k], hi[k], frac)
        r_lo, r_hi = _rank_bounds(n, p)
        # too few paths to bound a side: the interval is open there
        out[1, i] = lo[bin_at(r_lo)] if r_lo > 0 else open_below
        out[2, i] = hi[min(bin_at(r_hi), len(hi) - 1)] if r_hi < n else np.inf
    return out[0], out[1], out[2]


def _interpolate(lo: float, hi: float, frac: float) -> float:
    if lo >= 1.0:  # positive magnitudes: geometric
        return float(lo * (hi / lo) ** frac)
    if hi <= -1.0:  # negative magnitudes: geometric in |x|, from lo (frac 0) to hi (frac 1)
        return float(-((-lo) * ((-hi) / (-lo)) ** frac))
    return 0.0  # the zero bin: |x| < $1


def net_error_from_receipts(layout: StatLayout, group: str, stderr: np.ndarray) -> np.ndarray:
    """``stderr`` (every statistic's) with Microsoft's nets taking their receipts' (and
    economic return's) errors: a net is its total minus a constant, so the two errors are
    equal, while the net's own sum of squares overflows float64 for an investment past
    ~1e154 (its error came out null at an investment of 1e300)."""
    if group == "horizon":
        stderr[layout.row("microsoft_net")] = stderr[layout.row("microsoft_receipts")]
        stderr[layout.row("microsoft_economic_net")] = \
            stderr[layout.row("microsoft_economic_return")]
        if "pv_microsoft_economic_net" in layout.horizon_totals:
            stderr[layout.row("pv_microsoft_economic_net")] = \
                stderr[layout.row("pv_microsoft_economic_return")]
    return stderr


def month_distribution(counts: np.ndarray, percentiles) -> MonthDistribution:
    """From counts per month index (last entry: not by the horizon); counts may be
    fractional (effective paths of a weighted run)."""
    counts = np.asarray(counts)
    T = len(counts) - 1
    cum_all = np.cumsum(counts.astype(np.float64))
    # the total as the cumulative sum's last entry, so a rank of n never falls off its end
    # by a rounding of fractional (effective) counts
    n = float(cum_all[-1])
    cum = cum_all[:T]
    # clipped: with fractional (effective) counts, rounding can put cum / n a hair above 1
    cdf = np.minimum(cum / max(n, 1), 1.0)
    cdf_se = np.sqrt(cdf * (1.0 - cdf) / max(n, 1))
    censored = counts[T] / max(n, 1)

    def month_at(rank: float) -> int | None:
        m = int(np.searchsorted(cum_all, min(max(rank, 1e-9), n), side="left"))
        return m if m < T else None

    quantiles = {}
    for pct in percentiles:
        p = pct / 100.0
        r_lo, r_hi = _rank_bounds(n, p)
        # too few paths to bound a side: the earliest month, or not by the horizon
        quantiles[float(pct)] = (month_at(p * n), month_at(r_lo) if r_lo > 0 else 0,
                                 month_at(r_hi) if r_hi < n else None)
    return MonthDistribution(counts, cdf, cdf_se, float(censored),
                             float(np.sqrt(censored * (1 - censored) / max(n, 1))), quantiles)


@dataclass
class Results:
    """The reduced output of a run. All money in $, months as grid indices.

    Use :meth:`quantiles`, :meth:`mean`, :attr:`repayment` and :attr:`credit_exhaustion`;
    :mod:`mcsim.report` turns them into files.
    """

    config: Config
    layout: StatLayout
    bins: MoneyBins
    accumulator: Accumulator
    info: object
    #: with a precision target: what was asked and reached (mcsim.precision.report)
    precision: dict | None = None
    #: with [observations]: the same paths weighted by their likelihood
    #: (:class:`ConditionedResults`)
    conditioned: Results | None = None
    #: every drawn parameter's p5 / p50 / p95 and mean, as drawn (and conditioned)
    #: (:func:`mcsim.engine.parameters.parameter_table`)
    parameter_table: dict | None = None
    #: the public facts inside the run and where the model puts them
    #: (:func:`mcsim.facts.facts_vs_model`)
    facts: list | None = None

    @property
    def grid(self):
        return self.layout.grid

    def __repr__(self) -> str:
        """The headline in a few lines, like the terminal's summary (the arrays are behind
        the methods: printing them all drowned a notebook in hundreds of lines)."""
        grid, info = self.grid, self.info
        end = grid.label(grid.num_months - 1)
        source = getattr(self.config, "source_path", "") or "a config"
        ess = getattr(self, "ess", None)
        kind = type(self).__name__
        head = (f"<{kind}: {source}, {self.num_paths:,} paths"
                + (f" (effective {ess:,.0f})" if ess is not None else "")
                + f", {grid.label(0)}..{end}")
        if info is not None and hasattr(info, "seconds"):
            head += (f", seed {info.seed}, {info.dtype}, {info.seconds:.1f} s on "
                     f"{info.device} x {info.num_devices}")
        lines = [head]
        q = self.quantiles("cumulative_azure_spend", (5, 50, 95)).value[-1]
        lines.append(f"  cumulative Azure spend by {end}: median {_money(q[1])} "
                     f"(5-95%: {_money(q[0])} - {_money(q[2])})")
        deal = self.config.deal
        for event in self.layout.events:
            if not event.shown(deal):
                continue
            dist = self.event(event.name, (5, 50, 95))
            m = [self.month_label(dist.quantiles[p][0]) or f"after {end}"
                 for p in (5.0, 50.0, 95.0)]
            months = (f"median {m[1]} (5-95%: {m[0]} - {m[2]})" if m[0] != m[2]
                      else f"median {m[1]}")
            lines.append(f"  {event.label}: {months}; P(not by {end}) {dist.censored:.3f} "
                         f"± {1.96 * dist.censored_se:.3f}")
        if self.conditioned is not None:
            lines.append("  .conditioned: " + repr(self.conditioned).splitlines()[0][1:])
        lines.append("  (± = 1.96 SE, 95%; tables: .summary_frame(), .quantile_frame(group), "
                     ".mean(group), .event_frame(which); plots: .plot_fan(), ...)>")
        return "\n".join(lines)

    @property
    def num_paths(self) -> int:
        return self.accumulator.paths

    def quantiles(self, group: str, percentiles=DEFAULT_PERCENTILES) -> QuantileTable:
        """Quantiles of every row of ``group`` (``"cumulative_azure_spend"``, an annual flow
        of :data:`~mcsim.layout.ANNUAL_FLOWS`, a stock of :data:`~mcsim.layout.STOCKS`, or
        ``"horizon"``); a ValueError names the valid groups."""
        rows = range(self.layout.num_stats)[self.layout.rows(check_group(group))]
        sign = self.layout.non_negative()
        scale = self.layout.bin_scale()
        hist = self.accumulator.histogram
        vals = np.array([histogram_quantiles(self._effective(hist[r], r), self.bins,
                                             percentiles, bool(sign[r]))
                         for r in rows])
        if group in self.layout.stocks:  # binned scaled into the money range: back to the
            # stock's unit (a scale of 1 for cash: dollars as they are)
            vals = vals / scale[rows.start]
        return QuantileTable(tuple(percentiles), vals[:, 0], vals[:, 1], vals[:, 2],
                             tuple(self._labels(group)), group,
                             STOCK_UNITS.get(group, "$"))

    def mean(self, group: str) -> Estimate:
        """``Estimate(mean, se)`` of every row of ``group``: arrays (a 2-tuple, so
        ``mean, se = results.mean(group)`` works), labelled (``.labels``, ``.at(label)``,
        ``.to_frame()``; :meth:`mean_frame` with the years' ``partial``)."""
        mean, se = self._mean_and_se(check_group(group))
        return Estimate(mean, se, self._labels(group), group,
                        STOCK_UNITS.get(group, "$"))

    def _labels(self, group: str) -> list:
        """Each row's label: "YYYY-MM", the total's name, or the calendar year (int)."""
        if group == "cumulative_azure_spend":
            return [self.grid.label(t) for t in range(self.grid.num_months)]
        if group == "horizon":
            return list(self.layout.horizon_totals)
        return [int(y) for y in self.grid.years]

    def _mean_and_se(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        sl = self.layout.rows(group)
        m = self.accumulator.moments
        return m.mean[sl].copy(), net_error_from_receipts(self.layout, group,
                                                          m.stderr().copy())[sl]

    def _sd(self, group: str) -> np.ndarray:
        """The sd of every row of ``group`` over the paths (the statistic's spread)."""
        return np.sqrt(self.accumulator.moments.variance()[self.layout.rows(group)])

    @property
    def events(self) -> tuple[str, ...]:
        """The first-passage events this run counted (:mod:`mcsim.events`), in order."""
        return self.layout.event_names

    def event_counts(self, which: str) -> np.ndarray:
        """Paths by the first month of event ``which`` ([T]: not by the horizon), as
        counted (int64 [T+1]; for conditioned results, sums of integer weights)."""
        check_event(which, self.events)
        return self.accumulator.event_counts[self.layout.event_index(which)]

    def event(self, which: str, percentiles=DEFAULT_PERCENTILES) -> MonthDistribution:
        """The distribution of one first-passage month of :attr:`events` (a ValueError
        names them), with quantiles at ``percentiles``."""
        dist = month_distribution(self._effective(self.event_counts(which), which),
                                  percentiles)
        return replace(dist, labels=tuple(self.grid.labels), which=which)

    @property
    def repayment(self) -> MonthDistribution:
        return self.event("repayment")

    @property
    def credit_exhaustion(self) -> MonthDistribution:
        return self.event("credit_exhaustion")

    @property
    def cap_reached(self) -> MonthDistribution:
        """The month the revenue-share cap is reached (censored: never, or no cap)."""
        return self.event("cap_reached")

    @property
    def commitment_met(self) -> MonthDistribution:
        """The month Azure spend meets the take-or-pay commitment (censored: never met by
        spend, including a shortfall paid instead, or no commitment)."""
        return self.event("commitment_met")

    @property
    def pair_factor(self) -> float:
        """Independent units per path behind a count: 1/2 for antithetic pairs, else 1.

        Quantile intervals and event probabilities count pairs: a pair's two indicators
        have correlation rho <= 1, so the variance of a proportion is at most twice the
        i.i.d. one, ``p (1 - p) (1 + rho) / n <= p (1 - p) / (n / 2)``. A bound: for the
        monotone events here rho is negative and the true error smaller
        (benchmarks/variance_reduction.py measures it).
        """
        return 0.5 if self.config.simulation.variance_reduction == "antithetic" else 1.0

    def _effective(self, counts: np.ndarray, key: int | str | None = None) -> np.ndarray:
        """Counts as the independent units behind every interval (see pair_factor).
        ``key``: whose counts they are (a statistic's row, or an event's name), for
        results whose effective paths differ by statistic (:class:`PosteriorResults`)."""
        f = self.pair_factor
        return counts if f == 1.0 else np.asarray(counts, np.float64) * f

    def month_label(self, t: int | None) -> str | None:
        return None if t is None else self.grid.label(t)

    def month_period(self, t: int | None):
        """Month index ``t`` as a ``pandas.Period`` (freq "M"); ``NaT`` for None (beyond
        the horizon)."""
        import pandas as pd

        return pd.NaT if t is None else pd.Period(self.grid.label(t), freq="M")

    # --- tables as pandas DataFrames --------------------------------------------------
    # Column scheme, the same in every frame and in the report's CSV files (whose header
    # is the index names followed by the frame's columns):
    #   pP, pP_low, pP_high   the P% quantile and its 95% interval (mean, mean_se after)
    #   mean, mean_se         the mean and its Monte Carlo standard error
    #   index "month"         a pandas PeriodIndex, freq "M" (CSV: "YYYY-MM")
    #   index "year"          int calendar years, with a bool column ``partial`` first
    #                         (a partial first/last year: a partial sum, or a stock's level
    #                         at its last simulated month)
    #   index "statistic"     the horizon totals by name
    def _index(self, group: str):
        import pandas as pd

        if group == "cumulative_azure_spend":
            return pd.period_range(self.grid.label(0), periods=self.grid.num_months,
                                   freq="M", name="month")
        if group == "horizon":
            return pd.Index(list(self.layout.horizon_totals), name="statistic")
        return pd.Index(np.asarray(self.grid.years, np.int64), name="year")

    def _labelled(self, group: str, data: dict):
        import pandas as pd

        index = self._index(group)
        if index.name == "year":
            data = {"partial": np.asarray(self.grid.year_is_partial(), bool), **data}
        return pd.DataFrame(data, index=index)

    def quantile_frame(self, group: str, percentiles=DEFAULT_PERCENTILES):
        """Quantiles of a group with their 95% intervals, one row per statistic.

        Columns ``p5``, ``p5_low``, ``p5_high``, ... then ``mean``, ``mean_se`` (floats; a
        quantile beyond the histogram's range is +-inf). Index: a ``PeriodIndex`` "month"
        (``"cumulative_azure_spend"``), int "year" with a leading bool column ``partial``
        (annual flows, stocks), or the total's name, "statistic" (``"horizon"``). A bad
        group raises ValueError naming the valid ones.
        """
        q = self.quantiles(group, percentiles)
        mean, se = self.mean(group)
        data = {}
        for j, p in enumerate(q.percentiles):
            name = f"p{p:g}"
            data[name], data[f"{name}_low"], data[f"{name}_high"] = (
                q.value[:, j], q.ci_low[:, j], q.ci_high[:, j])
        data["mean"], data["mean_se"] = mean, se
        return self._labelled(group, data)

    def mean_frame(self, group: str):
        """:meth:`mean` labelled: columns ``mean``, ``mean_se`` on the index of
        :meth:`quantile_frame` (with ``partial`` for years)."""
        mean, se = self.mean(group)
        return self._labelled(group, {"mean": mean, "mean_se": se})

    def annual_frame(self, percentiles=DEFAULT_PERCENTILES):
        """Every annual flow by calendar year: a long table (flow, year) -> ``partial``,
        quantiles, mean (as :meth:`quantile_frame`)."""
        import pandas as pd

        return pd.concat({flow: self.quantile_frame(flow, percentiles)
                          for flow in ANNUAL_FLOWS}, names=["flow"])

    def stock_frame(self, percentiles=DEFAULT_PERCENTILES):
        """Every stock at each year's last simulated month, in its own unit: a long table
        (stock, year) -> ``partial``, quantiles, mean (as :meth:`quantile_frame`)."""
        import pandas as pd

        return pd.concat({stock: self.quantile_frame(stock, percentiles)
                          for stock in self.layout.stocks}, names=["stock"])

    def event_frame(self, which: str = "repayment"):
        """One first-passage month of :attr:`events` by month (``PeriodIndex`` "month"):
        ``survival`` = P(not yet by the month's end), ``survival_se``, ``cdf`` = P(by the
        month) = 1 - survival, ``cdf_se`` (the same error). A bad name raises ValueError
        naming the events."""
        dist = self.event(which)
        return self._labelled("cumulative_azure_spend", {
            "survival": 1.0 - dist.cdf, "survival_se": dist.cdf_se.copy(),
            "cdf": dist.cdf.copy(), "cdf_se": dist.cdf_se.copy()}).rename_axis("month")

    def event_quantile_frame(self, percentiles=DEFAULT_PERCENTILES):
        """The months of every event of :attr:`events` at each percentile: one row per
        (event, percentile), columns ``month``, ``month_low``, ``month_high`` (the month
        and its 95% interval, ``pandas.Period`` freq "M"; ``NaT`` where it lies beyond the
        horizon) and ``beyond_horizon`` (bool: the month itself is beyond it, i.e.
        fewer than P% of paths have the event by the horizon)."""
        import pandas as pd

        rows, keys = [], []
        for which in self.events:
            dist = self.event(which, percentiles)
            for p in percentiles:
                m, lo, hi = dist.quantiles[float(p)]
                keys.append((which, float(p)))
                rows.append((self.month_period(m), self.month_period(lo),
                             self.month_period(hi), m is None))
        index = pd.MultiIndex.from_tuples(keys, names=["event", "percentile"])
        frame = pd.DataFrame(rows, index=index,
                             columns=["month", "month_low", "month_high", "beyond_horizon"])
        for c in ("month", "month_low", "month_high"):
            frame[c] = frame[c].astype("period[M]")
        frame["beyond_horizon"] = frame["beyond_horizon"].astype(bool)
        return frame

    def summary_frame(self, percentiles=DEFAULT_PERCENTILES):
        """One row per headline statistic, in the spirit of ``arviz.summary``.

        Rows ("statistic"): ``cumulative_azure_spend`` (at the horizon), every horizon
        total of :data:`~mcsim.layout.HORIZON_TOTALS`, then for each event of
        :attr:`events` its month ``<event>_month`` and ``<event>_beyond_horizon``
        (P(not by the horizon)). Columns: ``mean``, ``sd`` (the spread over paths),
        ``p5`` ... ``p95``, ``mc_error`` (the mean's Monte Carlo standard error; for
        conditioned and SMC results their own, see :meth:`mean`), all floats, and
        ``unit``. Months are offsets in months from the start month (0 = the start
        month; ``results.month_period(int(x))`` turns one into a Period); a month
        quantile beyond the horizon is +inf, and a month's mean, sd and mc_error are NaN
        when any path has no event by the horizon (the mean is then undefined). A
        probability row has mean = P, sd = sqrt(P (1 - P)), no quantiles.
        """
        import pandas as pd

        pcols = [f"p{p:g}" for p in percentiles]
        cols = ["mean", "sd", *pcols, "mc_error", "unit"]
        rows, names = [], []

        def money(group: str, i: int, name: str) -> None:
            q = self.quantiles(group, percentiles)
            mean, se = self.mean(group)
            sd = self._sd(group)
            names.append(name)
            rows.append([mean[i], sd[i], *q.value[i], se[i], "$"])

        money("cumulative_azure_spend", self.grid.num_months - 1, "cumulative_azure_spend")
        for i, name in enumerate(self.layout.horizon_totals):
            money("horizon", i, name)
        unit = f"months since {self.grid.label(0)}"
        for which in self.events:
            dist = self.event(which, percentiles)
            qs = [np.inf if dist.quantiles[float(p)][0] is None
                  else float(dist.quantiles[float(p)][0]) for p in percentiles]
            c = np.asarray(dist.counts, np.float64)
            n = c.sum()
            if c[-1] > 0 or n <= 1:
                mean = sd = err = np.nan
            else:
                t = np.arange(len(c) - 1, dtype=np.float64)
                mean = float((t * c[:-1]).sum() / n)
                sd = float(np.sqrt(((t - mean) ** 2 * c[:-1]).sum() / (n - 1)))
                err = sd / np.sqrt(n)
            names.append(f"{which}_month")
            rows.append([mean, sd, *qs, err, unit])
            p = dist.censored
            names.append(f"{which}_beyond_horizon")
            rows.append([p, np.sqrt(p * (1 - p)), *[np.nan] * len(pcols),
                         dist.censored_se, "probability"])
        frame = pd.DataFrame(rows, columns=cols, index=pd.Index(names, name="statistic"))
        return frame.astype({c: np.float64 for c in cols if c != "unit"})

    # --- plots on a matplotlib Axes -----------------------------------------------------
    # Thin delegates to mcsim.plots: every keyword is forwarded; each returns the Axes.
    def plot_fan(self, ax=None, **kw):
        """Fan chart of cumulative Azure spend (:func:`mcsim.plots.plot_fan`)."""
        from . import plots
        return plots.plot_fan(self, ax, **kw)

    def plot_annual(self, ax=None, **kw):
        """One annual flow by calendar year (:func:`mcsim.plots.plot_annual`)."""
        from . import plots
        return plots.plot_annual(self, ax, **kw)

    def plot_survival(self, ax=None, which: str = "repayment", **kw):
        """S(m) = P(event not yet by month m) (:func:`mcsim.plots.plot_survival`)."""
        from . import plots
        check_event(which, self.events)
        return plots.plot_survival(self, ax, which=which, **kw)

    def plot_repayment_survival(self, ax=None, **kw):
        """P(Microsoft not yet repaid by month): :meth:`plot_survival` of "repayment"."""
        return self.plot_survival(ax, which="repayment", **kw)

    def plot_conditioned_fan(self, ax=None, **kw):
        """Prior and conditioned fan charts overlaid (needs ``conditioned``;
        :func:`mcsim.plots.plot_conditioned_fan`)."""
        from . import plots
        self._need_conditioned()
        return plots.plot_conditioned_fan(self, ax, **kw)

    def plot_conditioned_survival(self, ax=None, **kw):
        """Prior and conditioned P(not yet repaid) overlaid (needs ``conditioned``;
        :func:`mcsim.plots.plot_conditioned_survival`)."""
        from . import plots
        self._need_conditioned()
        return plots.plot_conditioned_survival(self, ax, **kw)

    def _need_conditioned(self) -> None:
        if self.conditioned is None:
            raise ValueError("no conditioned results: the config has no [observations] "
                             "(or condition=False was given)")


class _EffectivePaths:
    """What conditioned results of either method share: every interval counts
    :attr:`ess` effective paths instead of the (weighted or dependent) paths behind the
    counts; a subclass says what ``ess`` is."""

    @property
    def ess_fraction(self) -> float:
        return self.ess / max(self.num_paths, 1)

    @property
    def warning(self) -> str | None:
        return ess_warning(self.ess, self.num_paths)

    def _effective(self, counts: np.ndarray, key: int | str | None = None) -> np.ndarray:
        """Counts rescaled to effective paths (they sum to the ESS of ``key``, the
        statistic's row or event's name whose counts they are, see
        :meth:`effective_paths_of`; for antithetic pairs, to half of it, see
        :attr:`Results.pair_factor`)."""
        c = np.asarray(counts, np.float64)
        total = c.sum()
        ess = self.effective_paths_of(key)
        return c * (self.pair_factor * ess / total) if total > 0 else c

    def effective_paths_of(self, key: int | str | None = None) -> float:
        """The effective paths behind the intervals of ``key`` (a statistic's row or an
        event's name; None: all of them): :attr:`ess` unless a subclass knows each."""
        return self.ess


@dataclass(repr=False)  # Results' short repr, not every field's arrays
class ConditionedResults(_EffectivePaths, Results):
    """Results of the same paths, weighted by their likelihood of the observations.

    The same interface as :class:`Results` (quantiles, means, month distributions, frames
    and plots): the histograms and month counts hold weight sums, which
    :meth:`_effective` rescales to the effective sample size for every interval; means
    are the weighted ones with their delta-method errors. ``reference_loglik``: the
    pilot's best log-likelihood, the weights' unit.
    """

    reference_loglik: float = 0.0

    @property
    def weighted(self) -> WeightedMoments:
        t = self.accumulator.tree.total()
        return weighted_moments(t[1], t[2], self.layout.num_stats)

    @property
    def ess(self) -> float:
        return self.weighted.ess

    def _mean_and_se(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        sl = self.layout.rows(group)
        m = self.weighted
        return m.mean[sl].copy(), net_error_from_receipts(self.layout, group,
                                                          m.stderr.copy())[sl]

    def _sd(self, group: str) -> np.ndarray:
        return np.sqrt(self.weighted.variance[self.layout.rows(group)])


@dataclass(repr=False)  # Results' short repr, not every field's arrays
class PosteriorResults(_EffectivePaths, Results):
    """Results of the posterior particles of ``runs`` independent tempered SMC runs
    (:mod:`mcsim.engine.smc`), each particle one path of the forecast, pooled.

    Resampling makes a run's particles dependent, so errors come from the spread of the
    independent runs: a mean's error is the sd of the runs' means over sqrt(R), and every
    interval counts the independent paths its own statistic is worth, the pooled particles
    divided by the design effect the runs measure for it (:meth:`effective_paths_of`: a
    statistic's quantiles, :func:`mcsim.posterior.effective_paths_per_statistic` of its
    mean; an event's months, :func:`mcsim.posterior.event_effective_paths`), falling back
    to :attr:`ess` (the design effect averaged over the statistics,
    :func:`mcsim.posterior.effective_paths`) where the runs cannot say.
    ``run_results``: each run's own Results; ``posterior``: the runs' particles and
    diagnostics.
    """

    run_results: list = field(default_factory=list)
    posterior: object = None

    @property
    def method(self) -> str:
        return "smc"

    @functools.cached_property
    def ess(self) -> float:
        from .posterior import effective_paths
        m = self.accumulator.moments
        return effective_paths(m.variance(), [r.accumulator.moments.mean
                                            for r in self.run_results], self.num_paths)

    @functools.cached_property
    def statistic_ess(self) -> np.ndarray:
        """Each statistic's own effective paths [S] (NaN where the runs cannot say:
        fewer than 2 runs, or no spread; :func:`mcsim.posterior.design_effects`)."""
        from .posterior import effective_paths_per_statistic
        m = self.accumulator.moments
        if len(self.run_results) < 2:
            return np.full(self.layout.num_stats, np.nan)
        return effective_paths_per_statistic(
            m.variance(), [r.accumulator.moments.mean for r in self.run_results],
            self.num_paths)

    @functools.cached_property
    def _event_ess(self) -> dict[str, float]:
        return {}

    def event_ess(self, which: str) -> float:
        """Event ``which``'s own effective paths (NaN where the runs cannot say;
        :func:`mcsim.posterior.event_effective_paths`)."""
        from .posterior import event_effective_paths
        if which not in self._event_ess:
            self._event_ess[which] = math.nan if len(self.run_results) < 2 else \
                event_effective_paths([r.event_counts(which) for r in self.run_results])
        return self._event_ess[which]

    def effective_paths_of(self, key: int | str | None = None) -> float:
        """The effective paths behind the intervals of ``key``: a statistic's row (its
        :attr:`statistic_ess`), an event's name (its :meth:`event_ess`), or None; the
        pooled :attr:`ess` where the runs cannot say."""
        if isinstance(key, str):
            own = self.event_ess(key)
        elif key is not None:
            own = float(self.statistic_ess[int(key)])
        else:
            own = math.nan
        return own if math.isfinite(own) else self.ess

    def _mean_and_se(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        # errors from the spread of the independent runs (see the class)
        from .posterior import spread_error
        sl = self.layout.rows(group)
        se = spread_error([r.accumulator.moments.mean for r in self.run_results])
        return self.accumulator.moments.mean[sl].copy(), \
            net_error_from_receipts(self.layout, group, se.copy())[sl]

    def posterior_frame(self):
        """Every drawn parameter (and bias factor), prior vs posterior: mean, sd, 5/50/95%,
        the posterior mean's error, the shift in prior sds (a pandas DataFrame)."""
        import pandas as pd

        from .posterior import posterior_table
        return pd.DataFrame(posterior_table(self.config, self.posterior)) \
            .set_index("parameter")

    def observation_frame(self):
        """The posterior predictive check of every observation (a pandas DataFrame)."""
        import pandas as pd

        from .posterior import observation_table
        return pd.DataFrame(observation_table(self.config, self.posterior)) \
            .set_index("observation")

    def smc_diagnostics(self) -> dict:
        """Temperatures, ESS, acceptance, step size, moves and mixing per step of every
        run (:func:`mcsim.posterior.diagnostics`)."""
        from .posterior import diagnostics
        return diagnostics(self.posterior)

    def step_frame(self):
        """One row per (run, tempering step): temperature, ESS, distinct particles after
        resampling, the moves made and the mixing diagnostic after them
        (:func:`mcsim.engine.smc.mixing_correlation`), acceptance, step size (a pandas
        DataFrame)."""
        import pandas as pd
        rows = []
        for r in self.posterior.runs:
            for k, st in enumerate(r.steps):
                rows.append({"run": r.run, "step": k + 1, "temperature": st.temperature,
                             "ess": st.ess,
                             "distinct_after_resampling": st.distinct_after_resampling,
                             "moves": st.moves, "mixing": st.mixing,
                             "acceptance": st.acceptance, "rho": st.rho})
        return pd.DataFrame(rows)

    def inference_data(self):
        """The SMC posterior as ``arviz.InferenceData`` (chains: the SMC runs; groups
        posterior, prior, observed_data, posterior/prior_predictive, log_likelihood,
        sample_stats: :func:`mcsim.posterior.inference_data`); needs the optional extra
        ``mcsim[arviz]``. ArviZ's ESS/MCSE do not apply to SMC particles (warned once):
        mcsim's own errors are the variables' ``mcsim_mean_se`` attributes and the
        posterior's ``mcsim_effective_paths`` (:attr:`ess`)."""
        from .posterior import inference_data
        return inference_data(self.config, self.posterior, effective_paths=self.ess)


__all__ = ["Results", "ConditionedResults", "PosteriorResults", "QuantileTable",
           "MonthDistribution", "Estimate", "check_group", "check_event",
           "ANNUAL_FLOWS", "HORIZON_TOTALS", "histogram_quantiles", "month_distribution"]
