"""Conditioning on observations: the run's paths weighted by their likelihood.

A config's ``[observations]`` (e.g. the leaked Azure inference spend of 2024) give each
path the likelihood ``prod_o f_o((b_o m_o - value_o) / sd_o)``: ``m_o`` the path's sum of
the observed series over the window (or its stock at the month), ``b_o`` the observation's
bias factor (1 unless given), ``f_o`` a standard normal or Student-t density (independent
errors of the stated sizes). This module holds the likelihood, which both methods share,
and importance sampling (``conditioning.method = "importance"``): the conditioned
distribution is the prior's, reweighted, self-normalized with the prior as proposal.
Tempered sequential Monte Carlo (the default) is :mod:`mcsim.engine.smc`.

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

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, ConfigError
from ..months import MonthGrid
from ..qmc import sobol_points_for
from ..rng import STREAM_BIAS, stream_key, threefry2x32
from .kernel import KernelSpec, kernel_inputs, pair_sums
from .runner import MaxOf, run_paths

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


#: An observation's bias factor: none (1), a constant, or drawn per path from one of these
#: (closed-form quantiles of a standard normal z, so the factor is a latent normal like
#: every parameter's).
BIAS_KINDS = ("none", "constant", "lognormal", "uniform", "triangular")


def bias_code(bias) -> tuple[int, tuple[float, float, float]]:
    """(index in :data:`BIAS_KINDS`, up to three fields) of an observation's ``bias``."""
    if bias is None:
        return 0, (1.0, 0.0, 0.0)
    if isinstance(bias, (int, float)):
        return 1, (float(bias), 0.0, 0.0)
    f = bias.params
    names = {"lognormal": ("median", "sigma"), "uniform": ("low", "high"),
             "triangular": ("low", "mode", "high")}[bias.kind]
    fields = tuple(f[k] for k in names) + (0.0,) * (3 - len(names))
    return BIAS_KINDS.index(bias.kind), tuple(float(x) for x in fields)


def observation_windows(config: Config) -> dict:
    """The observations as the kernel's traced arguments (a new value or window reuses
    the compiled kernel): month windows (indices, inclusive), values, error sizes, the
    Student-t degrees of freedom (inf: normal), bias factors and the key of the bias
    factors' per-path stream (importance sampling)."""
    grid, obs = config.grid, config.observations
    codes = [bias_code(o.bias) for o in obs]
    return {"start": jnp.array([grid.index(o.start) for o in obs], jnp.int32),
            "end": jnp.array([grid.index(o.end) for o in obs], jnp.int32),
            "value": jnp.array([o.value for o in obs], jnp.float64),
            "sd": jnp.array([o.sd for o in obs], jnp.float64),
            "dof": jnp.array([o.dof for o in obs], jnp.float64),
            "bias_code": jnp.array([c for c, _ in codes], jnp.int32),
            "bias_fields": jnp.array([f for _, f in codes], jnp.float64).reshape(-1, 3),
            "bias_key": jnp.asarray(stream_key(config.simulation.seed, STREAM_BIAS),
                                    jnp.uint32)}


def no_windows() -> dict:
    """The windows argument of an unweighted run: no observations, reference 0."""
    return {**{k: jnp.zeros((0,), t) for k, t in (
        ("start", jnp.int32), ("end", jnp.int32), ("value", jnp.float64),
        ("sd", jnp.float64), ("dof", jnp.float64), ("bias_code", jnp.int32))},
        "bias_fields": jnp.zeros((0, 3), jnp.float64),
        "bias_key": jnp.zeros((2,), jnp.uint32), "reference": jnp.float64(0.0)}


def bias_factors(windows, z):
    """Each observation's bias factor [O, n] from standard normals z [O, n] (float64)."""
    code, f = windows["bias_code"][:, None], windows["bias_fields"]
    a, b, c = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    u = jax.scipy.special.ndtr(z)
    # triangular(low a, mode b, high c) by its inverse CDF. The branch is evaluated for
    # every row, so the rows it does not serve (and, within it, the side of the mode a
    # draw is not on) get a finite placeholder under each square root: sqrt at 0 or below
    # has an infinite or NaN derivative, and jnp.select/where passes 0 * that = NaN into
    # the gradient of every row (the double-where trick; the selected values are
    # untouched, so they are bit-identical to the plain formula).
    split = (b - a) / jnp.where(c > a, c - a, 1.0)
    tri = code == 4
    on_left = u < split
    left_arg = u * (c - a) * (b - a)
    right_arg = jnp.maximum(1.0 - u, 0.0) * (c - a) * (c - b)
    left = a + jnp.sqrt(jnp.where(tri & on_left, left_arg, 1.0))
    right = c - jnp.sqrt(jnp.where(tri & ~on_left, right_arg, 1.0))
    return jnp.select([code <= 1, code == 2, code == 3],
                      [jnp.broadcast_to(a, z.shape), a * jnp.exp(b * z), a + (b - a) * u],
                      jnp.where(on_left, left, right))


def path_bias_normals(windows, paths):
    """Importance sampling's bias normals [O, n]: counter-based per (path, observation),
    so they depend on the path alone, whatever the chunking."""
    O = windows["value"].shape[0]
    k = windows["bias_key"]
    w0, w1 = threefry2x32(k[0], k[1], paths[None, :],
                          jnp.arange(O, dtype=jnp.uint32)[:, None], jnp)
    u = ((w0 >> jnp.uint32(6)).astype(jnp.float64) * 2.0**26
         + (w1 >> jnp.uint32(6)).astype(jnp.float64) + 0.5) * 2.0**-52
    return jax.scipy.special.ndtri(u)


def predicted(observed_sums, windows, bias_z):
    """What the model says each observation measures [O, n]: the path's sum times its
    bias factor (unchanged where there is none)."""
    if bias_z is None:
        return observed_sums
    return jnp.where(windows["bias_code"][:, None] == 0, observed_sums,
                     observed_sums * bias_factors(windows, bias_z))


def observation_log_likelihoods(values, windows):
    """Each observation's log-likelihood at the model's values ``values`` [O, n] (bias
    included: :func:`predicted`), [O, n]: normal (``dof`` inf) or Student-t errors,
    without their constants (path-free terms that cancel in every weight and tempering
    ratio)."""
    r = (values - windows["value"][:, None]) / windows["sd"][:, None]
    r2 = r * r
    dof = windows["dof"][:, None]
    normal = jnp.isinf(dof)
    # Student-t's branch is evaluated for normal rows too: with dof = inf there its
    # factor (dof + 1) is inf and its derivative inf * 0 = NaN, which jnp.where passes
    # into the gradient although the value is discarded. A finite placeholder dof (1) in
    # the rows it does not serve keeps the gradient finite; the Student-t rows' dof is
    # unchanged, so every value is bit-identical to the plain formula.
    safe_dof = jnp.where(normal, 1.0, dof)
    student = -0.5 * (safe_dof + 1.0) * jnp.log1p(r2 / safe_dof)
    return jnp.where(normal, -0.5 * r2, student)


def log_likelihood(observed_sums, windows, bias_z=None):
    """Each path's log-likelihood of the observations, [n]: independent errors, normal
    (``dof`` inf) or Student-t, each without its constant (a path-free term that cancels
    in every weight and tempering ratio). ``bias_z`` [O, n]: the bias factors' normals.
    Differentiable: finite gradients in the sums and the bias normals."""
    return jnp.sum(observation_log_likelihoods(predicted(observed_sums, windows, bias_z),
                                               windows), axis=0)


def likelihood_weights(observed_sums, windows, bias_z=None):
    """Each path's likelihood of the observations relative to the run's best path
    (``windows["reference"]``, see :func:`reference_log_likelihood`), in units of 2^-20
    (int64 [n]). Relative, so that tight observations, which leave every path far below
    the Gaussian's peak, still give integer weights of full resolution (the constant
    cancels in every self-normalized statistic). A path with a NaN or inf sum gets 0.
    """
    rel = jnp.minimum(log_likelihood(observed_sums, windows, bias_z)
                      - windows["reference"], MAX_RELATIVE_LOGLIK)
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
    spec = KernelSpec.for_config(config, dtype, grid=grid, observed=True)
    best = run_paths([spec], [kernel_inputs(config, grid)], MaxOf(PathLogLikelihood()),
                     config.simulation.paths, chunk_size=PILOT_PATHS,
                     uniforms=sobol_points_for(config), windows=observation_windows(config),
                     progress=False)
    if not np.isfinite(best):
        names = [o.name for o in config.observations]
        raise ConfigError("observations", names, "values that some simulated path can "
                          "explain: every path's likelihood of them is 0 in float64 (an sd "
                          "far too small for the spread of the paths, or a value in the "
                          "wrong units?)")
    return best


@dataclass(frozen=True)
class PathLogLikelihood:
    """Each path's log-likelihood of the observations (the device part of a reduction over
    paths: hashable), from a kernel spec with observed flows."""

    def __call__(self, outs, paths, windows):
        out = outs[0]
        return log_likelihood(out.observed_sums, windows, path_bias_normals(windows, paths))


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
