"""Tempered sequential Monte Carlo on a path's Gaussian latent state, then its forecast.

The latent state of a path is Gaussian: the independent normals of its parameters (before
the copula: ``u = Phi(z)`` feeds the same copula and inverse CDFs as every run), the
independent normals of its monthly shocks for the steps into months 1..K (K the last
observed month; before the shock correlation) and the normals of the observations' bias
factors. Under the prior they are i.i.d. standard normal, which is what makes the moves
simple.

One SMC run (:func:`smc_run`), from ``N`` particles drawn from the prior:

1. the next temperature ``beta'`` in ``(beta, 1]`` is chosen by bisection so that the
   incremental weights ``exp((beta' - beta) loglik)`` keep an effective sample size of
   ``ess_fraction * N`` (or 1 is reached);
2. systematic resampling (one uniform; cumulative weights summed in a fixed order on the
   host, float64);
3. moves that leave the tempered posterior invariant, until the particles have forgotten
   where the step started (:func:`mixing_correlation` below ``mixing_threshold``) or
   ``moves`` were made. The move (``[conditioning] move``, :func:`_move_call`):

   - ``"preconditioned"`` (the default): a Crank-Nicolson move around a Gaussian
     ``N(m, S)`` that is the prior's N(0, I) except in the few directions the
     observations pin, where its precision is the prior's plus the tempered likelihood's
     Fisher information (from finite-difference Jacobians of the predicted observations
     at a few particles) and its mean the particles'. Each half of the particles gets
     the Gaussian made from the other half, fixed before the step's moves, so no
     particle's proposal depends on its own state; the proposal is reversible with
     respect to that Gaussian, and its acceptance carries the prior's and the Gaussian's
     density ratios, so it is exact for whatever Gaussian was fitted;
   - ``"pcn"`` (version 2's move): ``z' = sqrt(1 - rho^2) z + rho xi``, which leaves the
     prior invariant, accepted with probability ``min(1, exp(beta' (loglik' - loglik)))``.

   Either way the step size ``rho`` follows the acceptance rate towards
   :data:`TARGET_ACCEPTANCE` move by move (a Robbins-Monro step on log rho). Why the
   preconditioned move: pCN's one rho is set by the two directions the facts pin (posterior
   sd ~0.1), so the ~150 others barely move (latent autocorrelation ~0.93 after 10 moves at
   temperature 1 on configs/observed.toml); with those directions scaled by their own
   curvature rho settles near 0.7-1 and the same autocorrelation is ~0.3
   (benchmarks/smc_mixing.py measures the gain). Block-wise step sizes would still tie each
   block's rho to its most pinned direction, and MALA/HMC cost a gradient (2-3 likelihood
   evaluations) per move for a gain the Gaussian already gives in directions that are
   nearly linear;
4. until ``beta = 1``. Each likelihood evaluation simulates months 0..K only.

Why not ``blackjax.adaptive_tempered_smc``: its tempering, resampling and MCMC steps fit,
but its resampling draws from a JAX key over the whole particle array and its kernels take
one particle at a time through ``vmap``, so a pCN kernel whose likelihood is a batched
month scan (sharded over devices with ``shard_map``) would be wrapped twice; and its
``ess`` solver works on the device in the kernel dtype. Written here it is ~150 lines, the
temperature search and the resampling are float64 NumPy on the host (exact and
order-fixed), and the moves stay on the device.

Determinism: every random number is a function of (conditioning seed, run, step, move)
through JAX's counter-based Threefry keys; the likelihood of a particle is computed by the
same per-path program whatever the device count (particles are sharded with
``shard_map``, padded to a multiple of the devices); temperatures and resampling indices
are computed on the host in a fixed order. So a config and its seed give the same
posterior whatever the devices, chunk size or process count (processes replicate the SMC
and split only the forecast).

Checkpoints (:class:`SMCCheckpoint`): a run's whole state after a tempering step (the
particles, their log-likelihoods and predictions, the temperature, the step size, the
steps so far, the initial population) is saved every ``interval`` seconds and when the run
ends. The random numbers need no saved state: they are keyed by (seed, run, step, move), so
the number of steps done is the generator's position. A run resumed from its state after a
kill takes the same steps with the same numbers as one never stopped: bit-identical
posteriors; a finished run is read back, not run again.

The forecast (:class:`PosteriorSource`): each final particle is a path of an ordinary run
(:func:`mcsim.engine.run.run_batch` with ``posterior=``): its parameters from its latent
normals, its shocks replayed up to month K and fresh counter-based ones after (a stream of
the conditioning seed and run), through the same kernel and accumulators.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import checkpoint as ckpt
from .. import locks
from ..config import SMC_MOVES, Config, ConfigError
from ..months import MonthGrid
from ..rng import STREAM_FORECAST, STREAM_SMC, stream_key
from ..x64 import enable_x64
from .conditioning import log_likelihood, observation_windows, predicted
from .kernel import DTYPES, KernelSpec, build_kernel, kernel_inputs, path_is_finite

#: The band the pCN acceptance rate is steered into (its centre is the target).
ACCEPTANCE_BAND = (0.2, 0.4)
TARGET_ACCEPTANCE = 0.3
#: Robbins-Monro gain of log rho per move (acceptance error of 0.1 changes rho by 15%).
RHO_GAIN = 1.5
INITIAL_RHO = 0.5
#: A run that needs more tempering steps than this stops with an error (the observations
#: are then far outside what the prior can produce).
MAX_STEPS = 400
#: Bisection iterations for the next temperature (float64: 2^-60 of the interval).
BISECTION_STEPS = 60
#: The moves (``[conditioning] move``): see :func:`_move_call`.
MOVES = SMC_MOVES
#: The preconditioned move's Gaussian differs from the prior N(0, I) in at most this many
#: eigen-directions (a static shape: unused ones are zero columns). The likelihood's
#: curvature has rank at most the number of observations (23 in configs/observed.toml);
#: the projections on 2 x 24 directions cost ~10% of a likelihood evaluation on a CPU.
MAX_DIRECTIONS = 24


@dataclass(frozen=True)
class LatentLayout:
    """Columns of a particle's latent normals: parameters, shocks (K steps x 5), biases."""

    num_parameters: int
    num_steps: int                   # K: the steps into months 1..K
    bias_rows: tuple[int, ...]       # observations whose bias factor is drawn

    @property
    def shock_columns(self) -> slice:
        return slice(self.num_parameters, self.num_parameters + 5 * self.num_steps)

    @property
    def bias_columns(self) -> slice:
        start = self.num_parameters + 5 * self.num_steps
        return slice(start, start + len(self.bias_rows))

    @property
    def dimension(self) -> int:
        return self.num_parameters + 5 * self.num_steps + len(self.bias_rows)


def latent_layout(config: Config) -> LatentLayout:
    """The latent layout of ``config``'s observations."""
    last = max(config.grid.index(o.end) for o in config.observations)
    drawn = tuple(k for k, o in enumerate(config.observations)
                  if o.bias is not None and not isinstance(o.bias, (int, float)))
    return LatentLayout(len(config.uncertain_parameters()), last, drawn)


def observed_grid(config: Config) -> MonthGrid:
    """Months 0..K: all a likelihood evaluation simulates."""
    return MonthGrid(config.grid.start, latent_layout(config).num_steps + 1)


def uniforms_from_normals(z):
    """The parameters' uniforms Phi(z), kept inside (0, 1) in float64."""
    u = jax.scipy.special.ndtr(z)
    return jnp.clip(u, 2.0**-53, 1.0 - 2.0**-53)


def _mesh(devices: tuple) -> Mesh:
    return Mesh(np.array(devices), ("paths",))


@functools.lru_cache(maxsize=16)
def likelihood_call(spec: KernelSpec, layout: LatentLayout, num_observations: int,
                    devices: tuple) -> Callable:
    """``(inputs, windows, z [n, D] float64) -> (loglik [n], predicted [O, n])``, n a
    multiple of the devices: each particle's log-likelihood (-inf where a path is not
    finite) and what the model says each observation measures (bias included)."""
    kernel = build_kernel(spec)
    dtype = DTYPES[spec.dtype]
    P_, K = layout.num_parameters, layout.num_steps

    def local(inputs, windows, z):
        n = z.shape[0]
        shocks = z[:, layout.shock_columns].reshape(n, K, 5).transpose(1, 0, 2)
        bias_z = jnp.zeros((num_observations, n), jnp.float64)
        if layout.bias_rows:
            bias_z = bias_z.at[np.array(layout.bias_rows)].set(z[:, layout.bias_columns].T)
        out = kernel(inputs, jnp.arange(n, dtype=jnp.uint32),
                     uniforms=uniforms_from_normals(z[:, :P_]), windows=windows,
                     latent_shocks=shocks.astype(dtype))
        ll = log_likelihood(out.observed_sums, windows, bias_z)
        ok = path_is_finite((out,)) & jnp.isfinite(ll)
        return jnp.where(ok, ll, -jnp.inf), predicted(out.observed_sums, windows, bias_z)

    sharded = jax.shard_map(local, mesh=_mesh(devices), in_specs=(P(), P(), P("paths")),
                            out_specs=(P("paths"), P(None, "paths")), check_vma=False)
    return jax.jit(sharded)


@dataclass(frozen=True)
class SMCSettings:
    """``[conditioning]`` for SMC: particles per run, the ESS kept per tempering step,
    the most moves per step, independent runs, the seed, the move (one of
    :data:`MOVES`) and the mixing threshold that ends a step's moves early (0: never)."""

    particles: int
    ess_fraction: float
    moves: int
    runs: int
    seed: int
    move: str = "pcn"
    mixing_threshold: float = 0.0

    @classmethod
    def for_config(cls, config: Config) -> SMCSettings:
        c = config.conditioning
        seed = config.simulation.seed if c.seed is None else c.seed
        return cls(c.particles, c.ess_fraction, c.moves, c.runs, seed, c.move,
                   c.mixing_threshold)


@dataclass
class SMCStep:
    """One tempering step: its temperature, the ESS of its incremental weights (before
    resampling), the distinct particles after resampling, the mean acceptance of its
    moves, the step size at its end, its log evidence increment, the moves it took and
    its mixing diagnostic after them (:func:`mixing_correlation`: 1 = the particles did
    not move, ~0 = they forgot where the step started; NaN in checkpoints of older
    versions)."""

    temperature: float
    ess: float
    distinct_after_resampling: int
    acceptance: float
    rho: float
    log_evidence_increment: float
    moves: int = 0
    mixing: float = math.nan


@dataclass
class SMCRun:
    """One SMC run's diagnostics and its final particles (host arrays)."""

    run: int
    steps: list[SMCStep]
    z: np.ndarray            # [N, D] float64: the final particles' latent normals
    loglik: np.ndarray       # [N]
    predicted: np.ndarray    # [O, N]: the final particles' model values (bias included)
    prior_z: np.ndarray      # [N, D]: the initial population (a prior sample)
    prior_predicted: np.ndarray  # [O, N]
    distinct: int            # distinct particles at the end
    seconds: float
    evaluations: int = 0

    @property
    def log_evidence(self) -> float:
        """log of the marginal likelihood (up to the likelihood's dropped constants)."""
        return float(sum(s.log_evidence_increment for s in self.steps))


@dataclass
class SMCPosterior:
    """The R runs of one config (``layout`` says what the columns of ``z`` are)."""

    settings: SMCSettings
    layout: LatentLayout
    runs: list[SMCRun] = field(default_factory=list)
    dtype: str = "float32"


def incremental_ess(loglik: np.ndarray, delta: float) -> float:
    """Kish ESS of the weights ``exp(delta * loglik)`` (-inf: weight 0)."""
    a = delta * loglik
    finite = np.isfinite(a)
    if not finite.any():
        return 0.0
    w = np.exp(a[finite] - a[finite].max())
    return float(w.sum() ** 2 / (w * w).sum())


def next_temperature(loglik: np.ndarray, beta: float, target_ess: float) -> float:
    """The largest ``beta'`` in ``(beta, 1]`` whose incremental weights keep an ESS of at
    least ``target_ess`` (1 when that is already so), by bisection in float64."""
    if incremental_ess(loglik, 1.0 - beta) >= target_ess:
        return 1.0
    lo, hi = 0.0, 1.0 - beta
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if incremental_ess(loglik, mid) >= target_ess:
            lo = mid
        else:
            hi = mid
    return beta + lo if lo > 0 else beta + hi


def systematic_resample(weights: np.ndarray, u0: float) -> np.ndarray:
    """Systematic resampling: particle indices [N] from normalised weights and one uniform
    ``u0`` in [0, 1) (the cumulative sum is float64 in particle order)."""
    n = weights.shape[0]
    cum = np.cumsum(weights / weights.sum())
    cum[-1] = 1.0
    return np.minimum(np.searchsorted(cum, (u0 + np.arange(n)) / n, side="right"), n - 1)


def _run_key(seed: int, run: int) -> jax.Array:
    k0, k1 = stream_key(seed, STREAM_SMC)
    return jax.random.fold_in(jax.random.wrap_key_data(
        jnp.array([k0, k1], jnp.uint32), impl="threefry2x32"), run)


class Preconditioner(NamedTuple):
    """The Gaussians of one tempering step's preconditioned moves, one per half of the
    particles (rows ``< N // 2``: half 0, the rest: half 1), each fitted on the *other*
    half after resampling and held fixed through the step's moves:
    ``N(mean, I + V diag(lam - 1) V^T)`` in the latent space (where the prior is N(0, I)).

    ``mean`` [2, D] float64 (in the span of V: elsewhere the Gaussian is the prior's);
    ``vectors`` [2, D, K] orthonormal columns, zero where unused; ``lam`` [2, K] the
    variances along them (1 where unused), K = :data:`MAX_DIRECTIONS`."""

    mean: np.ndarray
    vectors: np.ndarray
    lam: np.ndarray


#: The finite-difference step (in prior sds of a latent normal) of the Jacobians that
#: locate the directions the observations pin: wide enough that float32 sums change by
#: far more than their rounding, narrow next to the posterior's width in those directions.
JACOBIAN_STEP = 0.05


def observation_weights(config: Config) -> np.ndarray:
    """Each observation's Fisher information per unit of its model value squared [O]
    (1 / value unit^2): 1 / sd^2 for a normal error, (dof + 1) / ((dof + 3) sd^2) for a
    Student-t one."""
    w = []
    for o in config.observations:
        f = 1.0 if math.isinf(o.dof) else (o.dof + 1.0) / (o.dof + 3.0)
        w.append(f / (o.sd * o.sd))
    return np.array(w, np.float64)


def jacobian_rows(z: np.ndarray, step: float = JACOBIAN_STEP) -> np.ndarray:
    """Central finite-difference points of particles ``z`` [k, D]: [k, 2D, D], row
    ``2d`` the particle plus ``step`` in coordinate d, row ``2d + 1`` minus."""
    D = z.shape[1]
    offsets = np.zeros((2 * D, D))
    offsets[2 * np.arange(D), np.arange(D)] = step
    offsets[2 * np.arange(D) + 1, np.arange(D)] = -step
    return z[:, None, :] + offsets[None]


def fisher_information(predicted_rows: np.ndarray, weights: np.ndarray,
                       step: float = JACOBIAN_STEP) -> np.ndarray:
    """The mean over particles of ``J^T diag(weights) J`` [D, D] from the model values
    [O, k, 2D] at :func:`jacobian_rows` (J [O, D] a particle's Jacobian of its predicted
    observations; particles with a non-finite value are left out; zeros if none)."""
    J = (predicted_rows[:, :, 0::2] - predicted_rows[:, :, 1::2]) / (2.0 * step)
    D = J.shape[2]
    ok = np.isfinite(J).all(axis=(0, 2))
    if not ok.any():
        return np.zeros((D, D))
    J = J[:, ok]
    return np.einsum("okd,o,oke->de", J, weights, J) / ok.sum()


def gaussian_from_fisher(fisher: np.ndarray, beta: float, z: np.ndarray,
                         max_directions: int = MAX_DIRECTIONS, least: float = 0.1
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Gaussian ``N(mean, I + V diag(lam - 1) V^T)`` whose precision is the prior's
    plus the tempered likelihood's Fisher information, ``I + beta F``, along the
    eigen-directions where ``beta F`` adds at least ``least`` (the largest first, up to
    ``max_directions``), and the prior's N(0, I) elsewhere; its mean is the particles'
    ``z`` [n, D] mean projected on those directions. Returns (mean [D], V [D, K],
    lam [K]), K = ``max_directions`` (unused: zero columns, lam 1).

    Why the likelihood's curvature and not the particles' covariance: after a few
    tempering steps the particles descend from a few hundred ancestors, and their sample
    covariance in the ~150 directions the observations barely see reflects that
    genealogy (variances from 0.1 to 10 where the posterior's are ~1), not the posterior.
    Any Gaussian keeps the move exact (:func:`_move_call`): this choice is about speed.
    """
    D = fisher.shape[0]
    V = np.zeros((D, max_directions))
    lam = np.ones(max_directions)
    f, vectors = np.linalg.eigh(0.5 * (fisher + fisher.T))
    order = np.argsort(-f, kind="stable")
    keep = order[beta * f[order] >= least][:max_directions]
    V[:, :keep.size] = vectors[:, keep]
    lam[:keep.size] = 1.0 / (1.0 + beta * f[keep])
    return V @ (V.T @ z.mean(axis=0)), V, lam


#: At most this many particles of each half give the likelihood's Jacobian to the other.
MAX_JACOBIAN_PARTICLES = 16


def _jacobian_particles(N: int, n: int, D: int) -> int:
    """Particles per half whose Jacobians make the other half's Gaussian: as many as one
    call of ``n`` rows holds (each takes 2D rows, two halves), 1 to
    :data:`MAX_JACOBIAN_PARTICLES`."""
    return int(min(MAX_JACOBIAN_PARTICLES, max(1, n // (4 * D)), max(N // 2, 1)))


def jacobian_calls(N: int, n: int, D: int) -> int:
    """Likelihood calls (of ``n`` rows) a step's preconditioner takes: a function of the
    sizes alone, so a resumed run counts its evaluations as a run never stopped."""
    return -(-(4 * D * _jacobian_particles(N, n, D)) // n)


def fit_preconditioner(evaluate: Callable, inputs, windows, z: np.ndarray, beta: float,
                       weights: np.ndarray, n: int, mesh: Mesh
                       ) -> tuple[Preconditioner, int]:
    """Each half's Gaussian (:class:`Preconditioner`) at temperature ``beta`` from the
    resampled particles ``z`` [N, D] (host float64): half 0 (rows < N // 2) gets the one
    made of half 1's particles (their Jacobians and mean, :func:`gaussian_from_fisher`)
    and the other way round, so that no particle's move depends on its own state
    (systematic resampling keeps the copies of one ancestor in adjacent rows, so at most
    one ancestor straddles the halves). The Jacobians are central differences at a few
    evenly spaced particles of each half, evaluated in calls of ``n`` rows (the moves'
    compiled shape). Returns the preconditioner and the likelihood calls it took."""
    N, D = z.shape
    h = N // 2
    k = _jacobian_particles(N, n, D)
    picks = [np.linspace(h, N - 1, k).round().astype(int),   # half 1's, for half 0
             np.linspace(0, h - 1, k).round().astype(int)]   # half 0's, for half 1
    rows = np.concatenate([jacobian_rows(z[p]).reshape(-1, D) for p in picks])
    calls = jacobian_calls(N, n, D)
    padded = np.concatenate([rows, np.repeat(z[:1], calls * n - rows.shape[0], axis=0)])
    sharding = NamedSharding(mesh, P("paths"))
    values = np.concatenate([np.asarray(evaluate(inputs, windows, jax.device_put(
        padded[c * n:(c + 1) * n], sharding))[1], np.float64) for c in range(calls)],
        axis=1)[:, :rows.shape[0]].reshape(-1, 2, k, 2 * D)
    fits = [gaussian_from_fisher(fisher_information(values[:, i], weights), beta,
                                 z[h:] if i == 0 else z[:h]) for i in (0, 1)]
    return Preconditioner(*(np.stack(parts) for parts in zip(*fits, strict=True))), calls


def mixing_correlation(z0: np.ndarray, z: np.ndarray, ll0: np.ndarray,
                       ll: np.ndarray) -> float:
    """How much the particles still remember where a step's moves started: the larger of
    the correlation over particles of the log-likelihood before (``ll0`` [N]) and after
    (``ll``), and the mean over latent coordinates of the same correlation of ``z0`` and
    ``z`` [N, D]. 1: nothing moved; ~0 (+- 1/sqrt(N)): the moves forgot the start. Host
    float64, in a fixed order, so it does not depend on the devices.

    The log-likelihood sees the few directions the facts pin, the mean of the
    coordinates the ~all others (where a pCN move's autocorrelation is the same in each:
    sqrt(1 - rho^2) per accepted move), so the larger of the two is the slower."""
    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=0)
        b = b - b.mean(axis=0)
        den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b).sum(axis=0) / den, np.nan)

    ok = np.isfinite(ll0) & np.isfinite(ll)
    latent = corr(z0, z)
    values = [float(corr(ll0[ok], ll[ok])) if ok.sum() > 2 else math.nan,
              float(np.nanmean(latent)) if np.isfinite(latent).any() else math.nan]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else 1.0


@functools.lru_cache(maxsize=16)
def _move_call(evaluate: Callable, n: int, D: int, devices: tuple,
               move: str = "pcn") -> Callable:
    """One move of all particles: ``(inputs, windows, z, ll, pred, key, rho, beta, half,
    preconditioner) -> (z, ll, pred, accepted)`` (``half`` [n] bool and the
    preconditioner are unused by ``"pcn"``).

    ``"pcn"``: ``z' = sqrt(1 - rho^2) z + rho xi`` leaves the prior N(0, I) invariant, so
    it is accepted with probability ``min(1, exp(beta (loglik' - loglik)))``.

    ``"preconditioned"``: the particle's half's Gaussian N(m, S) (:class:`Preconditioner`,
    S = L L^T with L = I + V diag(sqrt(lam) - 1) V^T) and ``z' = m + sqrt(1 - rho^2)
    (z - m) + rho L xi``, which is reversible with respect to N(m, S), not the prior. Its
    Metropolis-Hastings ratio for the tempered target prior(z) lik(z)^beta is then

        beta (loglik' - loglik) + log N(z'; 0, I) - log N(z; 0, I)
                                + log N(z; m, S) - log N(z'; m, S),

    the proposal ratio q(z' -> z) / q(z -> z') being N(z; m, S) / N(z'; m, S) by
    reversibility. So the move is exact for any (m, S) that does not depend on the
    particle it moves: each is fitted on the other half and fixed before the step's moves.
    Where S is the identity and m = 0 the two extra terms cancel and it is pCN.
    """

    @jax.jit
    def step(inputs, windows, z, ll, pred, key, rho, beta, half, pre):
        kx, ku = jax.random.split(key)
        xi = jax.random.normal(kx, (n, D), jnp.float64)
        a = jnp.sqrt(1.0 - rho * rho)
        if move == "pcn":
            proposal = a * z + rho * xi
            correction = jnp.zeros((n,), jnp.float64)
        else:
            mean, vectors, lam = pre
            K = lam.shape[1]
            # both halves' directions side by side [D, 2K]; a row uses its own half's
            # columns (the other half's are masked to 0), so three products of n x D x 2K
            # serve every row: its projections of z - m and of xi, and L xi
            W = jnp.concatenate([vectors[0], vectors[1]], axis=1)
            lam_all = jnp.concatenate([lam[0], lam[1]])
            mine = jnp.where(half[:, None], jnp.arange(2 * K) >= K, jnp.arange(2 * K) < K)
            m = jnp.where(half[:, None], mean[1], mean[0])
            d = z - m
            p = jnp.where(mine, d @ W, 0.0)
            q = jnp.where(mine, xi @ W, 0.0)
            l_xi = xi + (q * (jnp.sqrt(lam_all) - 1.0)) @ W.T
            d_new = a * d + rho * l_xi
            proposal = m + d_new
            # V^T d_new = a V^T d + rho sqrt(lam) V^T xi (V's columns orthonormal; unused
            # ones are 0 with lam 1, where every term is 0)
            p_new = a * p + rho * jnp.sqrt(lam_all) * q

            def reference(d, p):
                # log N(m + d; m, S) up to its constant: -|L^-1 d|^2 / 2, with
                # |L^-1 d|^2 = |d|^2 + sum_k (1 / lam_k - 1) (v_k . d)^2
                return -0.5 * (jnp.sum(d * d, axis=1)
                               + jnp.sum((1.0 / lam_all - 1.0) * p * p, axis=1))

            correction = reference(d, p) - reference(d_new, p_new) + 0.5 * (
                jnp.sum(z * z, axis=1) - jnp.sum(proposal * proposal, axis=1))
        ll_new, pred_new = evaluate(inputs, windows, proposal)
        log_u = jnp.log(jax.random.uniform(ku, (n,), jnp.float64))
        diff = jnp.where(jnp.isfinite(ll_new),
                         jnp.where(jnp.isfinite(ll), ll_new - ll, jnp.inf), -jnp.inf)
        accept = log_u < beta * diff + correction
        return (jnp.where(accept[:, None], proposal, z), jnp.where(accept, ll_new, ll),
                jnp.where(accept[None, :], pred_new, pred), jnp.mean(accept))

    return step


#: SMCStep's fields as the columns of a checkpoint's ``steps`` array (all float64: the
#: integer ones, distinct particles and moves, are exact in float64). A checkpoint of an
#: older version has the first six: the others take their defaults.
STEP_FIELDS = ("temperature", "ess", "distinct_after_resampling", "acceptance", "rho",
                "log_evidence_increment", "moves", "mixing")


class SMCCheckpoint:
    """Where one process keeps its SMC runs' states in a checkpoint directory
    (``process-I-of-N.smc-run-R.npz``), and when it saves them (every ``interval``
    seconds, and at the end of each run)."""

    FORMAT = "mcsim.smc/1"

    def __init__(self, directory: str | Path, config: Config, settings: SMCSettings,
                 dtype: str, devices: tuple, interval: float = 60.0,
                 resume: bool = False) -> None:
        from .._version import __version__

        self.directory, self.interval, self.resume = Path(directory), interval, resume
        self.process = (jax.process_index(), jax.process_count())
        self.identity = {
            "format": self.FORMAT,
            "config_sha256": hashlib.sha256(config.source_text.encode()).hexdigest(),
            "particles": settings.particles, "ess_fraction": settings.ess_fraction,
            "moves": settings.moves, "runs": settings.runs, "seed": settings.seed,
            "move": settings.move, "mixing_threshold": settings.mixing_threshold,
            "dtype": dtype, "devices": len(devices),
            "device_kind": f"{devices[0].platform}:{devices[0].device_kind}",
            "mcsim_version": __version__}
        self._last = time.perf_counter()

    @property
    def lock_file(self) -> Path:
        return locks.checkpoint_lock_file(self.directory, *self.process)

    def file(self, run: int) -> Path:
        i, n = self.process
        return self.directory / f"process-{i}-of-{n}.smc-run-{run}.npz"

    def load(self, run: int) -> dict | None:
        """Run ``run``'s saved state (None: none saved, or not resuming); refused with a
        ConfigError naming the file when unreadable or written by another run."""
        f = self.file(run)
        if not self.resume or not f.exists():
            return None
        data = ckpt.read_arrays(f, {**self.identity, "run": run},
                                what="an SMC checkpoint of this same run")
        missing = {"z", "ll", "pred", "prior_z", "prior_pred", "steps", "scalars"} \
            - set(data)
        if missing:
            raise ConfigError("resume", str(f), "a readable mcsim checkpoint, but it lacks "
                              f"{', '.join(sorted(missing))}; delete it to start from the "
                              "beginning")
        return data

    def due(self) -> bool:
        return time.perf_counter() - self._last >= self.interval

    def save(self, run: int, arrays: dict[str, np.ndarray]) -> None:
        # uncompressed: normals do not compress, and a step's save should cost little
        ckpt.Checkpointer(self.file(run), {**self.identity, "run": run}).write(
            arrays, compress=False)
        self._last = time.perf_counter()


def step_from_row(row) -> SMCStep:
    """An :class:`SMCStep` from its row of a checkpoint's ``steps`` array (float64 in
    :data:`STEP_FIELDS` order; older versions' shorter rows take the defaults)."""
    st = SMCStep(*(float(v) for v in row))
    st.distinct_after_resampling = int(st.distinct_after_resampling)
    st.moves = int(st.moves)
    return st


def _distinct(z: np.ndarray) -> int:
    return int(np.unique(z[:, : min(z.shape[1], 4)], axis=0).shape[0])


def smc_run(config: Config, run: int, settings: SMCSettings, dtype: str = "float32",
            devices: tuple | None = None, progress: Callable[[str], None] | None = None,
            checkpoint: SMCCheckpoint | None = None) -> SMCRun:
    """One adaptive tempered SMC run with pCN moves (the module's steps 1-4); with a
    ``checkpoint``, its state is saved as it goes and, when resuming, continued from the
    saved one (bit-identical to a run never stopped)."""
    enable_x64()
    devices = tuple(devices or jax.local_devices())
    layout = latent_layout(config)
    grid = observed_grid(config)
    spec = KernelSpec.for_config(config, dtype, grid=grid, observed=True)._replace(
        antithetic=False)
    evaluate = likelihood_call(spec, layout, len(config.observations), devices)
    inputs = kernel_inputs(config, grid)
    windows = observation_windows(config)
    N, D = settings.particles, layout.dimension
    n = -(-N // len(devices)) * len(devices)  # padded to the devices (extra: never kept)
    key = _run_key(settings.seed, run)
    t0 = time.perf_counter()
    saved = checkpoint.load(run) if checkpoint is not None else None
    if saved is not None:  # the state after its last saved step (the loop goes on there)
        z, ll, pred = (jnp.asarray(saved[k]) for k in ("z", "ll", "pred"))
        prior_z, prior_pred = saved["prior_z"], saved["prior_pred"]
        steps = [step_from_row(row) for row in saved["steps"]]
        beta, rho, elapsed = (float(v) for v in saved["scalars"])
        evaluations = 1 + sum(st.moves or settings.moves for st in steps)
        if settings.move != "pcn":
            evaluations += len(steps) * jacobian_calls(N, n, D)
        t0 -= elapsed
        if z.shape != (n, D):
            raise ConfigError("resume", str(checkpoint.file(run)), f"an SMC checkpoint of "
                              f"{n} x {D} particles' normals (it holds {z.shape})")
    else:
        z = jax.random.normal(jax.random.fold_in(key, 0), (n, D), jnp.float64)
        ll, pred = evaluate(inputs, windows, z)
        evaluations = 1
        prior_z, prior_pred = np.asarray(z)[:N], np.asarray(pred)[:, :N]
        beta, rho, steps = 0.0, INITIAL_RHO, []
    ll_host = np.asarray(ll)[:N]
    if not np.isfinite(ll_host).any():
        raise ConfigError("observations", [o.name for o in config.observations],
                          "values that some simulated path can explain: every particle's "
                          "likelihood of them is 0 in float64 (an sd far too small for the "
                          "spread of the paths, or a value in the wrong units?)")
    move = _move_call(evaluate, n, D, devices, settings.move)
    mesh = _mesh(devices)
    # which preconditioner each row uses (padding rows: half 1's; they are never kept)
    half = jax.device_put(np.arange(n) >= N // 2, NamedSharding(mesh, P("paths")))
    weights = observation_weights(config)
    identity = Preconditioner(np.zeros((2, D)), np.zeros((2, D, MAX_DIRECTIONS)),
                              np.ones((2, MAX_DIRECTIONS)))

    def state() -> dict[str, np.ndarray]:
        rows = [[getattr(st, f) for f in STEP_FIELDS] for st in steps]
        return {"z": np.asarray(z), "ll": np.asarray(ll), "pred": np.asarray(pred),
                "prior_z": prior_z, "prior_pred": prior_pred,
                "steps": np.array(rows, np.float64).reshape(len(steps), len(STEP_FIELDS)),
                "scalars": np.array([beta, rho, time.perf_counter() - t0], np.float64)}

    stepped = False
    while beta < 1.0:
        stepped = True
        if len(steps) >= MAX_STEPS:
            raise ConfigError("observations", [o.name for o in config.observations],
                              f"observations the prior can reach: SMC needed more than "
                              f"{MAX_STEPS} tempering steps (temperature {beta:.3g})")
        step_key = jax.random.fold_in(key, len(steps) + 1)
        new_beta = next_temperature(ll_host, beta, settings.ess_fraction * N)
        a = (new_beta - beta) * ll_host
        finite = np.isfinite(a)
        top = a[finite].max()
        w = np.where(finite, np.exp(np.where(finite, a, 0.0) - top), 0.0)
        ess = float(w.sum() ** 2 / (w * w).sum())
        log_z = float(top + np.log(w.sum() / N))
        u0 = float(jax.random.uniform(jax.random.fold_in(step_key, 0), (), jnp.float64))
        idx = systematic_resample(w, u0)
        idx = np.concatenate([idx, np.arange(N, n)])  # padding rows stay where they are
        # the particles laid out over the devices as the moves leave them, so that the
        # compiled move sees one input layout (each new one was another ~10 s compile)
        z, ll, pred = (jax.device_put(a, NamedSharding(mesh, spec)) for a, spec in
                       ((z[idx], P("paths")), (ll[idx], P("paths")),
                        (pred[:, idx], P(None, "paths"))))
        distinct_resampled = int(np.unique(idx[:N]).shape[0])
        # where the step's moves start, for the mixing diagnostic and the preconditioner
        z0_host, ll0_host = np.asarray(z)[:N], np.asarray(ll)[:N]
        pre = identity
        if settings.move != "pcn":
            pre, calls = fit_preconditioner(evaluate, inputs, windows, z0_host, new_beta,
                                            weights, n, mesh)
            evaluations += calls
        pre = Preconditioner(*(jnp.asarray(a) for a in pre))
        accepted, mixing = [], math.nan
        for m in range(settings.moves):
            z, ll, pred, acc = move(inputs, windows, z, ll, pred,
                                    jax.random.fold_in(step_key, m + 1), jnp.float64(rho),
                                    jnp.float64(new_beta), half, pre)
            acc = float(acc)  # over the padded rows too: they move like the others
            accepted.append(acc)
            rho = float(np.clip(rho * math.exp(RHO_GAIN * (acc - TARGET_ACCEPTANCE)),
                                1e-3, 1.0))
            if settings.mixing_threshold > 0 or m == settings.moves - 1:
                mixing = mixing_correlation(z0_host, np.asarray(z)[:N], ll0_host,
                                            np.asarray(ll)[:N])
                if mixing < settings.mixing_threshold:
                    break
        evaluations += len(accepted)
        ll_host = np.asarray(ll)[:N]
        steps.append(SMCStep(new_beta, ess, distinct_resampled, float(np.mean(accepted)),
                             rho, log_z, len(accepted), mixing))
        beta = new_beta
        if progress is not None:
            progress(f"run {run + 1}/{settings.runs} step {len(steps)}: temperature "
                     f"{beta:.4g}, ESS {ess:,.0f}, {len(accepted)} moves, mixing "
                     f"{mixing:.2f}, acceptance {steps[-1].acceptance:.2f}")
        if checkpoint is not None and (beta >= 1.0 or checkpoint.due()):
            checkpoint.save(run, state())  # the last step's: a finished run is not redone
    # a run read back finished took the time it took then (its provenance's seconds)
    seconds = elapsed if saved is not None and not stepped else time.perf_counter() - t0
    z_host = np.asarray(z)[:N]
    return SMCRun(run, steps, z_host, ll_host, np.asarray(pred)[:, :N], prior_z, prior_pred,
                  _distinct(z_host), seconds, evaluations)


def smc_posterior(config: Config, dtype: str = "float32", devices: tuple | None = None,
                  progress: Callable[[str], None] | None = None,
                  checkpoint: str | Path | None = None, resume: bool = False,
                  checkpoint_interval: float = 60.0) -> SMCPosterior:
    """The config's ``runs`` independent SMC runs. With a ``checkpoint`` directory each
    run's state is saved there every ``checkpoint_interval`` seconds and at its end
    (:class:`SMCCheckpoint`, the directory locked for this process while it runs);
    ``resume`` continues from the saved states (finished runs are read back)."""
    if not config.observations:
        raise ConfigError("observations", {}, "at least one observation to condition on")
    enable_x64()
    settings = SMCSettings.for_config(config)
    out = SMCPosterior(settings, latent_layout(config), dtype=dtype)
    if checkpoint is None:
        for r in range(settings.runs):
            out.runs.append(smc_run(config, r, settings, dtype, devices, progress))
        return out
    devices = tuple(devices or jax.local_devices())
    saver = SMCCheckpoint(checkpoint, config, settings, dtype, devices, checkpoint_interval,
                          resume)
    with locks.hold(saver.lock_file, key="checkpoint", value=str(checkpoint),
                    what="checkpoint directory"):
        for r in range(settings.runs):
            out.runs.append(smc_run(config, r, settings, dtype, devices, progress, saver))
    return out


class PosteriorSource:
    """The forecast's per-path inputs of one SMC run: path i is final particle i (its
    parameters' uniforms, its shocks up to month K) with fresh shocks after K from the
    stream of (conditioning seed, run)."""

    def __init__(self, posterior: SMCPosterior, run: int, dtype: str) -> None:
        lay = posterior.layout
        z = posterior.runs[run].z
        self.num_steps = lay.num_steps
        self._uniforms = np.asarray(jax.device_get(uniforms_from_normals(
            jnp.asarray(z[:, :lay.num_parameters]))))
        self._shocks = z[:, lay.shock_columns].reshape(z.shape[0], lay.num_steps, 5) \
            .astype(DTYPES[dtype])
        self.shock_key = jnp.asarray(
            stream_key(posterior.settings.seed, STREAM_FORECAST + run), jnp.uint32)

    def _rows(self, a: np.ndarray, start: int, n: int, fill: float) -> np.ndarray:
        out = np.full((n,) + a.shape[1:], fill, a.dtype)
        part = a[start:start + n]
        out[:part.shape[0]] = part
        return out

    def points(self, start: int, n: int) -> np.ndarray:
        """The uniforms [n, m] of paths start..start+n (medians past the particles)."""
        return self._rows(self._uniforms, start, n, 0.5)

    def shocks(self, start: int, n: int) -> np.ndarray:
        """The replayed shock normals [n, K, 5] of paths start..start+n."""
        return self._rows(self._shocks, start, n, 0.0)
