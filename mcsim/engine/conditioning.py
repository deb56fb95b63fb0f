"""Conditioning on observations: the run's paths weighted by their likelihood.

A config's ``[observations]`` (e.g. the leaked Azure inference spend of 2024) give each
path the weight ``w = exp(-sum_o ((sum_o - value_o) / sd_o)^2 / 2)`` (independent Gaussian
errors of the stated sizes). The conditioned distribution is the prior's, reweighted:
self-normalized importance sampling with the prior as proposal.

Everything about the weighting is here, in the order a weighted run uses it:

1. :func:`observation_windows`: the observations as the kernel's traced inputs;
2. :func:`reference_log_likelihood`: a pass over the run's own paths (months up to the last
   observed one only) for the best log-likelihood, the unit of the weights;
3. :func:`likelihood_weights` and :func:`weighted_rows`, inside the chunk reduction: the
   weights as integers in units of 2^-20 (:data:`WEIGHT_ONE`), so every weighted histogram
   and month count is exact and order-free like the prior's, and the sum tree's rows;
4. :func:`weighted_moments` and :func:`ess_warning`, on the host: weighted means with
   their errors and the effective sample size.

Errors: the effective sample size ``ESS = (sum w)^2 / sum w^2`` (Kish) stands in for the
number of paths in every quantile interval and event probability; a mean's error is the
delta-method one, ``sqrt(sum (a_k - mean b_k)^2) / sum b_k`` over units k (paths, or
antithetic pairs). When the ESS is small the weights are degenerate and those errors are
themselves unreliable: :func:`ess_warning` says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, ConfigError
from ..months import MonthGrid
from ..qmc import sobol_points_for
from .kernel import KernelSpec, build_kernel, kernel_inputs, pair_sums

#: Likelihood weights are counted in units of 2^-20 (integers): integer adds are exact in
#: any order, so weighted histograms are as reproducible as plain counts; the rounding
#: (at most 2^-21 per path) is far below the Monte Carlo error of any weighted statistic.
WEIGHT_ONE = 2**20
#: A path's weight relative to the reference is capped at e^12 (int64 headroom: 2^20 e^12
#: < 2^38 per path). The reference is the best path of the whole run
#: (:func:`reference_log_likelihood`), so no path reaches the cap: it only guards against
#: a last-bit difference between the reference's compiled program and the run's.
MAX_RELATIVE_LOGLIK = 12.0
#: Paths per call of the reference pass.
PILOT_PATHS = 8192
#: Below either, the conditioned statistics are flagged: fewer than this many effective
#: paths make quantile intervals rough, and ...
MIN_ESS = 1000
#: ... an ESS under this fraction of the paths means a few paths carry the weight.
MIN_ESS_FRACTION = 0.01


def observation_windows(config: Config) -> dict:
    """The observations' month windows (indices, inclusive), values and errors, as the
    kernel's traced arguments (a new value or window reuses the compiled kernel)."""
    grid, obs = config.grid, config.observations
    return {"start": jnp.array([grid.index(o.start) for o in obs], jnp.int32),
            "end": jnp.array([grid.index(o.end) for o in obs], jnp.int32),
            "value": jnp.array([o.value for o in obs], jnp.float64),
            "sd": jnp.array([o.sd for o in obs], jnp.float64)}


def no_windows() -> dict:
    """The windows argument of an unweighted run: no observations, reference 0."""
    return {**{k: jnp.zeros((0,), t) for k, t in (
        ("start", jnp.int32), ("end", jnp.int32), ("value", jnp.float64),
        ("sd", jnp.float64))}, "reference": jnp.float64(0.0)}


def log_likelihood(observed_sums, windows):
    """Each path's log-likelihood of the observations (independent Gaussian errors), [n]."""
    r = (observed_sums - windows["value"][:, None]) / windows["sd"][:, None]
    return -0.5 * jnp.sum(r * r, axis=0)


def likelihood_weights(observed_sums, windows):
    """Each path's likelihood of the observations relative to the run's best path
    (``windows["reference"]``, see :func:`reference_log_likelihood`), in units of 2^-20
    (int64 [n]). Relative, so that tight observations, which leave every path far below
    the Gaussian's peak, still give integer weights of full resolution (the constant
    cancels in every self-normalized statistic). A path with a NaN or inf sum gets 0.
    """
    rel = jnp.minimum(log_likelihood(observed_sums, windows) - windows["reference"],
                      MAX_RELATIVE_LOGLIK)
    w = jnp.round(jnp.exp(rel) * WEIGHT_ONE)
    return jnp.where(jnp.isfinite(w), w, 0.0).astype(jnp.int64)


def weighted_rows(x, q, pairs: bool = False):
    """The sum tree's rows for a weighted run, per unit k (a path, or an antithetic pair):
    ``[a_k (S), b_k, b_k a_k (S), c_k (S), d_k]`` with ``a = sum q x``, ``b = sum q``,
    ``c = sum q x^2`` and ``d = sum q^2`` over the unit. Their sums and sums of squares give
    the weighted mean ``sum a / sum b``, its delta-method error
    ``sum (a - mean b)^2 / (sum b)^2`` (over units), the weighted variance and the
    effective number of paths ``(sum q)^2 / sum q^2`` (:func:`weighted_moments`)."""
    a = pair_sums(q * x, pairs)
    b = pair_sums(q, pairs)
    c = pair_sums(q * x * x, pairs)
    d = pair_sums(q * q, pairs)
    return jnp.concatenate([a, b[None, :], b * a, c, d[None, :]])


def reference_log_likelihood(config: Config, dtype: str = "float32") -> float:
    """The best log-likelihood among all the run's paths (the same draws, shocks and
    variance reduction), the unit of the weights. A maximum is exact and order-free, so
    it is a function of the config alone and the weights do not depend on the chunking;
    and since no path of the run beats it, no weight is ever clipped. The pass simulates
    the months up to the last observed one only (a few percent of a run's time for
    observations near the start).

    Raises ConfigError when no path has a finite, non-zero likelihood: conditioning on
    observations nothing can explain is undefined.
    """
    last = max(config.grid.index(o.end) for o in config.observations)
    grid = MonthGrid(config.grid.start, max(last + 1, 1))
    total = config.simulation.paths
    n = min(PILOT_PATHS, total + total % 2)  # whole antithetic pairs (PILOT_PATHS is even)
    source = sobol_points_for(config)
    pilot = _pilot(KernelSpec.for_config(config, dtype, grid=grid, observed=True), n)
    inputs = kernel_inputs(config, grid)
    windows = observation_windows(config)
    best = -np.inf
    for start in range(0, total, n):
        points = None if source is None else jnp.asarray(source.points(start, n))
        best = max(best, float(pilot(inputs, points, windows, jnp.uint32(start % 2**32),
                                     jnp.int64(total - start))))
    if not np.isfinite(best):
        names = [o.name for o in config.observations]
        raise ConfigError("observations", names, "values that some simulated path can "
                          "explain: every path's likelihood of them is 0 in float64 (an sd "
                          "far too small for the spread of the paths, or a value in the "
                          "wrong units?)")
    return best


@functools.lru_cache(maxsize=16)
def _pilot(spec: KernelSpec, n: int) -> Callable:
    """The best log-likelihood of ``n`` paths from ``start`` (those below ``remaining``),
    compiled once per shape (a sweep's conditioned points, or a second run, reuse it)."""
    kernel = build_kernel(spec)

    @jax.jit
    def pilot(inputs, uniforms, windows, start, remaining):
        local = jnp.arange(n, dtype=jnp.uint32)
        out = kernel(inputs, start + local, uniforms=uniforms, windows=windows)
        ll = log_likelihood(out.observed_sums, windows)
        ok = jnp.all(jnp.isfinite(out.stats), axis=0) & jnp.isfinite(ll) \
            & (local.astype(jnp.int64) < remaining)
        return jnp.max(jnp.where(ok, ll, -jnp.inf))

    return pilot


@dataclass(frozen=True)
class WeightedMoments:
    """Weighted means of S statistics with their errors and the weights' summary."""

    mean: np.ndarray     # (S,)
    stderr: np.ndarray   # (S,)
    variance: np.ndarray # (S,): weighted variance of the statistic itself
    weight_sum: float    # sum of weights (units of 2^-20 of the best path's)
    ess: float           # (sum w)^2 / sum w^2 over paths


def weighted_moments(s1: np.ndarray, s2: np.ndarray, num_stats: int) -> WeightedMoments:
    """From the sum tree's totals of :func:`weighted_rows`."""
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
