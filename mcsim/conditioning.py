"""Conditioning on observations: the run's paths weighted by their likelihood.

A config's ``[observations]`` (e.g. the leaked Azure inference spend of 2024) give each
path the weight ``w = exp(-sum_o ((sum_o - value_o) / sd_o)^2 / 2)`` (independent Gaussian
errors of the stated sizes). The conditioned distribution is the prior's, reweighted:
self-normalized importance sampling with the prior as proposal. The engine counts weights
as integers in units of 2^-20 (:data:`mcsim.engine.WEIGHT_ONE`), so every weighted
histogram and month count is exact and order-free, like the prior's.

Errors: the effective sample size ``ESS = (sum w)^2 / sum w^2`` (Kish) stands in for the
number of paths in every quantile interval and event probability; a mean's error is the
delta-method one, ``sqrt(sum (a_k - mean b_k)^2) / sum b_k`` over units k (paths, or
antithetic pairs). When the ESS is small the weights are degenerate and those errors are
themselves unreliable: :func:`ess_warning` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .results import Results, net_error_from_receipts

#: Below either, the conditioned statistics are flagged: fewer than this many effective
#: paths make quantile intervals rough, and ...
MIN_ESS = 1000
#: ... an ESS under this fraction of the paths means a few paths carry the weight.
MIN_ESS_FRACTION = 0.01


@dataclass(frozen=True)
class WeightedMoments:
    """Weighted means of S statistics with their errors and the weights' summary."""

    mean: np.ndarray     # (S,)
    stderr: np.ndarray   # (S,)
    variance: np.ndarray # (S,): weighted variance of the statistic itself
    weight_sum: float    # sum of weights (units of 2^-20 of the pilot's best path)
    ess: float           # (sum w)^2 / sum w^2 over paths


def weighted_moments(s1: np.ndarray, s2: np.ndarray, num_stats: int) -> WeightedMoments:
    """From the sum tree's totals of :func:`mcsim.engine.weighted_rows`."""
    S = num_stats
    sum_a, sum_b, sum_ab = s1[:S], s1[S], s1[S + 1:2 * S + 1]
    sum_c, sum_d = s1[2 * S + 1:3 * S + 1], s1[3 * S + 1]
    sum_a2, sum_b2 = s2[:S], s2[S]  # over units (paths, or antithetic pairs)
    if sum_b <= 0:
        nan = np.full(S, np.nan)
        return WeightedMoments(nan, nan, nan, 0.0, 0.0)
    mean = sum_a / sum_b
    resid = np.maximum(sum_a2 - 2.0 * mean * sum_ab + mean * mean * sum_b2, 0.0)
    var = np.maximum(sum_c / sum_b - mean * mean, 0.0)
    return WeightedMoments(mean, np.sqrt(resid) / sum_b, var, float(sum_b),
                           float(sum_b * sum_b / sum_d))


def ess_warning(ess: float, paths: int) -> str | None:
    """A sentence when the effective sample size is too small to trust, else None."""
    if ess >= MIN_ESS and ess >= MIN_ESS_FRACTION * paths:
        return None
    return (f"effective sample size {ess:,.0f} of {paths:,} paths "
            f"({ess / max(paths, 1):.2%}): below {MIN_ESS:,} or {MIN_ESS_FRACTION:.0%} of "
            "the paths, so few paths carry the weight and the conditioned errors are "
            "unreliable; run more paths, or check that the observations' tolerances are "
            "not far tighter than the prior allows")


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
