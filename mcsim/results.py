"""Results: plain NumPy statistics with their Monte Carlo error, computed from accumulators.

Quantiles come from the fixed histogram bins. Each has a 95% confidence interval from order
statistics: the p-quantile of n paths lies, with 95% confidence, between the order statistics
of ranks ``n p -+ 1.96 sqrt(n p (1-p))`` (normal approximation to the binomial), and those
are bracketed by the lower and upper edges of the bins that hold them. The interval thus
covers both the Monte Carlo error and the bin width. Means carry ``sqrt(var/n)``.
Months are indices into the grid; a quantile beyond the horizon is ``None``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .accumulators import Accumulator, MoneyBins
from .config import Config
from .engine.conditioning import WeightedMoments, ess_warning, weighted_moments
from .layout import ANNUAL_FLOWS, HORIZON_TOTALS, STOCKS, StatLayout

Z_95 = 1.959964
#: The first-passage months a run reports (each a :class:`MonthDistribution`).
EVENTS = ("repayment", "credit_exhaustion", "cap_reached", "commitment_met")
DEFAULT_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)


@dataclass(frozen=True)
class QuantileTable:
    """Quantiles of R statistics at P percentiles: arrays [R, P] of $ (NaN when empty)."""

    percentiles: tuple[float, ...]
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


@dataclass(frozen=True)
class MonthDistribution:
    """Distribution of a first-passage month (repayment or credit exhaustion).

    ``cdf[m]`` = P(event by month index m) with ``cdf_se``; ``quantiles`` maps a
    percentile to (month index or None, ci_low or None, ci_high or None); ``censored`` is
    P(not by the horizon) with ``censored_se``.
    """

    counts: np.ndarray
    cdf: np.ndarray
    cdf_se: np.ndarray
    censored: float
    censored_se: float
    quantiles: dict[float, tuple[int | None, int | None, int | None]]


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

    @property
    def num_paths(self) -> int:
        return self.accumulator.paths

    def quantiles(self, group: str, percentiles=DEFAULT_PERCENTILES) -> QuantileTable:
        """Quantiles of every row of ``group`` (``"cumulative_azure_spend"``, an annual flow
        of :data:`~mcsim.layout.ANNUAL_FLOWS`, or ``"horizon"``)."""
        rows = range(self.layout.num_stats)[self.layout.rows(group)]
        sign = self.layout.non_negative()
        scale = self.layout.bin_scale()
        vals = np.array([histogram_quantiles(self._effective(self.accumulator.histogram[r]),
                                             self.bins, percentiles, bool(sign[r]))
                         for r in rows])
        if group in STOCKS:  # binned scaled into the money range: back to the stock's unit
            vals = vals / scale[rows.start]
        return QuantileTable(tuple(percentiles), vals[:, 0], vals[:, 1], vals[:, 2])

    def mean(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard error) of every row of ``group``."""
        sl = self.layout.rows(group)
        m = self.accumulator.moments
        return m.mean[sl].copy(), net_error_from_receipts(self.layout, group,
                                                          m.stderr().copy())[sl]

    @property
    def repayment(self) -> MonthDistribution:
        return month_distribution(self._effective(self.accumulator.repayment_counts),
                                  DEFAULT_PERCENTILES)

    @property
    def credit_exhaustion(self) -> MonthDistribution:
        return month_distribution(self._effective(self.accumulator.credit_counts),
                                  DEFAULT_PERCENTILES)

    @property
    def cap_reached(self) -> MonthDistribution:
        """The month the revenue-share cap is reached (censored: never, or no cap)."""
        return month_distribution(self._effective(self.accumulator.cap_counts),
                                  DEFAULT_PERCENTILES)

    @property
    def commitment_met(self) -> MonthDistribution:
        """The month Azure spend meets the take-or-pay commitment (censored: never met by
        spend, including a shortfall paid instead, or no commitment)."""
        return month_distribution(self._effective(self.accumulator.commitment_counts),
                                  DEFAULT_PERCENTILES)

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

    def _effective(self, counts: np.ndarray) -> np.ndarray:
        """Counts as the independent units behind every interval (see pair_factor)."""
        f = self.pair_factor
        return counts if f == 1.0 else np.asarray(counts, np.float64) * f

    def month_label(self, t: int | None) -> str | None:
        return None if t is None else self.grid.label(t)

    # --- tables as pandas DataFrames --------------------------------------------------
    def quantile_frame(self, group: str, percentiles=DEFAULT_PERCENTILES):
        """Quantiles of a group with their 95% intervals, one row per statistic.

        Columns ``p5``, ``p5_low``, ``p5_high``, ... and ``mean``, ``mean_se``; the index
        is the month label, the year label or the horizon total's name ($).
        """
        import pandas as pd

        q = self.quantiles(group, percentiles)
        mean, se = self.mean(group)
        data = {}
        for j, p in enumerate(q.percentiles):
            name = f"p{p:g}"
            data[name], data[f"{name}_low"], data[f"{name}_high"] = (
                q.value[:, j], q.ci_low[:, j], q.ci_high[:, j])
        data["mean"], data["mean_se"] = mean, se
        return pd.DataFrame(data, index=pd.Index(self._row_labels(group), name=group))

    def annual_frame(self, percentiles=DEFAULT_PERCENTILES):
        """Every annual flow by calendar year: a long table (flow, year) -> quantiles."""
        import pandas as pd

        frames = {flow: self.quantile_frame(flow, percentiles).rename_axis("year")
                  for flow in ANNUAL_FLOWS}
        return pd.concat(frames, names=["flow"])

    def event_frame(self, which: str = "repayment"):
        """P(event by month) with its standard error and the survival 1 - P, by month."""
        import pandas as pd

        if which not in EVENTS:
            raise ValueError(f"which = {which!r}: expected one of "
                             + ", ".join(f'"{e}"' for e in EVENTS))
        dist = getattr(self, which)
        return pd.DataFrame({"probability": dist.cdf, "se": dist.cdf_se,
                             "survival": 1.0 - dist.cdf},
                            index=pd.Index(self.grid.labels, name="month"))

    def _row_labels(self, group: str) -> list[str]:
        if group == "cumulative_azure_spend":
            return list(self.grid.labels)
        if group == "horizon":
            return list(HORIZON_TOTALS)
        return list(self.grid.year_labels())

    # --- plots on a matplotlib Axes -----------------------------------------------------
    def plot_fan(self, ax=None, bands=((5, 95), (25, 75)), **style):
        """Fan chart of cumulative Azure spend with the given percentile bands."""
        from . import plots

        ax = ax if ax is not None else plots.new_axes()
        plots.fan_chart(self, ax, bands=tuple(map(tuple, bands)), **style)
        return ax

    def plot_annual(self, ax=None, flow: str = "azure_spend", **style):
        """Box-style chart of one annual flow by calendar year."""
        from . import plots

        ax = ax if ax is not None else plots.new_axes()
        plots.annual_chart(self, ax, flow=flow, **style)
        return ax

    def plot_conditioned_fan(self, ax=None, band=(5, 95)):
        """Prior and conditioned fan charts overlaid (needs ``conditioned``)."""
        from . import plots

        self._need_conditioned()
        ax = ax if ax is not None else plots.new_axes()
        plots.prior_vs_conditioned_fan(self, self.conditioned, ax, band)
        return ax

    def plot_conditioned_survival(self, ax=None):
        """Prior and conditioned P(not yet repaid) overlaid (needs ``conditioned``)."""
        from . import plots

        self._need_conditioned()
        ax = ax if ax is not None else plots.new_axes()
        plots.prior_vs_conditioned_survival(self, self.conditioned, ax)
        return ax

    def _need_conditioned(self) -> None:
        if self.conditioned is None:
            raise ValueError("no conditioned results: the config has no [observations] "
                             "(or condition=False was given)")

    def plot_repayment_survival(self, ax=None, **style):
        """P(Microsoft not yet repaid by month), with a 95% band."""
        from . import plots

        ax = ax if ax is not None else plots.new_axes()
        plots.survival_curve(self, ax, **style)
        return ax


@dataclass
class ConditionedResults(Results):
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

    @property
    def ess_fraction(self) -> float:
        return self.ess / max(self.num_paths, 1)

    @property
    def warning(self) -> str | None:
        return ess_warning(self.ess, self.num_paths)

    def _effective(self, counts: np.ndarray) -> np.ndarray:
        """Weight sums rescaled to effective paths (they sum to the ESS; for antithetic
        pairs, to half of it, see :attr:`Results.pair_factor`)."""
        c = np.asarray(counts, np.float64)
        total = c.sum()
        return c * (self.pair_factor * self.ess / total) if total > 0 else c

    def mean(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        sl = self.layout.rows(group)
        m = self.weighted
        return m.mean[sl].copy(), net_error_from_receipts(self.layout, group,
                                                          m.stderr.copy())[sl]


@dataclass
class PosteriorResults(Results):
    """Results of the posterior particles of ``runs`` independent tempered SMC runs
    (:mod:`mcsim.engine.smc`), each particle one path of the forecast, pooled.

    Resampling makes a run's particles dependent, so errors come from the spread of the
    independent runs: a mean's error is the sd of the runs' means over sqrt(R), and every
    interval (quantiles, month probabilities) counts :attr:`ess` independent paths, the
    pooled particles divided by the design effect the runs measure
    (:func:`mcsim.posterior.effective_paths`). ``run_results``: each run's own Results;
    ``posterior``: the runs' particles and diagnostics.
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

    @property
    def ess_fraction(self) -> float:
        return self.ess / max(self.num_paths, 1)

    @property
    def warning(self) -> str | None:
        return ess_warning(self.ess, self.num_paths)

    def _effective(self, counts: np.ndarray) -> np.ndarray:
        c = np.asarray(counts, np.float64)
        total = c.sum()
        return c * (self.ess / total) if total > 0 else c

    def mean(self, group: str) -> tuple[np.ndarray, np.ndarray]:
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
        """Temperatures, ESS, acceptance and step size per step of every run."""
        from .posterior import diagnostics
        return diagnostics(self.posterior)

    def step_frame(self):
        """One row per (run, tempering step): temperature, ESS, distinct particles after
        resampling, acceptance, step size (a pandas DataFrame)."""
        import pandas as pd
        rows = []
        for r in self.posterior.runs:
            for k, st in enumerate(r.steps):
                rows.append({"run": r.run, "step": k + 1, "temperature": st.temperature,
                             "ess": st.ess,
                             "distinct_after_resampling": st.distinct_after_resampling,
                             "acceptance": st.acceptance, "rho": st.rho})
        return pd.DataFrame(rows)

    def inference_data(self):
        """The prior and posterior parameter draws as ``arviz.InferenceData`` (chains:
        the SMC runs); needs the optional extra ``mcsim[arviz]``."""
        from .posterior import inference_data
        return inference_data(self.config, self.posterior)


__all__ = ["Results", "ConditionedResults", "PosteriorResults", "QuantileTable",
           "MonthDistribution", "ANNUAL_FLOWS", "HORIZON_TOTALS", "histogram_quantiles",
           "month_distribution"]
