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

   Either way the step size ``rho`` follows the acceptance rate towards the move's
   target (:data:`TARGET_ACCEPTANCES`: 0.3 for pCN, 0.5 for the preconditioned move) move
   by move (a Robbins-Monro step on log rho). Why the
   preconditioned move: pCN's one rho is set by the two directions the facts pin (posterior
   sd ~0.1), so the ~150 others barely move (latent autocorrelation ~0.93 after 10 moves at
   temperature 1 on configs/observed.toml); with those directions scaled by their own
   curvature rho settles near 0.7-1 and the same autocorrelation is ~0.3
   (benchmarks/smc_mixing.py measures the gain). Block-wise step sizes would still tie each
   block's rho to its most pinned direction, and MALA/HMC cost a gradient (2-3 likelihood
   evaluations) per move for a gain the Gaussian already gives in directions that are
   nearly linear;
4. until ``beta = 1``. Each likelihood evaluation simulates months 0..K only.

The runs move together (:func:`smc_group`): in groups of up to :data:`GROUP_PARTICLES`
particles (all 16 default runs of 1,024 in one), every run of a group tempers, resamples
and fits its Gaussians on its own, with its own random numbers, step size and
temperatures, but one likelihood call moves all of their particles, and a step's moves go
on until the group has mixed (the mean of its runs' diagnostics below the threshold, or
the cap). Why: a call's fixed cost (dispatch, the host's part of each move) was paid once
per run, and 1,024 particles are too few to fill a CPU's cores or a GPU. The runs stay
independent in everything but their number of moves per step, which any run may exceed
without harm (each move leaves its target invariant); a run that reaches temperature 1
before the others goes on moving at temperature 1 (its particles are in the group's calls
anyway, so those moves are free: ``moves_after_tempering``, counted in its likelihood
evaluations), except with a fixed number of moves (threshold 0), where it waits, unmoved,
so that a run is the same alone or in any group. Which runs share a group is a function of
``runs`` and ``particles`` alone, never of the devices.

Why not ``blackjax.adaptive_tempered_smc``: its tempering, resampling and MCMC steps fit,
but its resampling draws from a JAX key over the whole particle array and its kernels take
one particle at a time through ``vmap``, so a pCN kernel whose likelihood is a batched
month scan (sharded over devices with ``shard_map``) would be wrapped twice; and its
``ess`` solver works on the device in the kernel dtype. Written here it is ~150 lines, the
temperature search and the resampling are float64 NumPy on the host (exact and
order-fixed), and the moves stay on the device.

Determinism: every random number is a function of (conditioning seed, run, step, move)
through JAX's counter-based Threefry keys (whatever the group a run is in); the likelihood
of a particle is computed by the same per-path program whatever the device count
(particles are sharded with ``shard_map``, padded to a multiple of the devices); the
groups are a function of the settings alone; temperatures and resampling indices
are computed on the host in a fixed order. So a config and its seed give the same
posterior whatever the devices, chunk size or process count (processes replicate the SMC
and split only the forecast).

Checkpoints (:class:`SMCCheckpoint`): a group's whole state after a tempering step (each
run's particles, their log-likelihoods and predictions, temperature, step size, steps so
far and initial population) is saved every ``interval`` seconds and when the group ends.
The random numbers need no saved state: they are keyed by (seed, run, step, move), so the
number of steps done is the generator's position. A group resumed from its state after a
kill takes the same steps with the same numbers as one never stopped: bit-identical
posteriors; a finished group is read back, not run again.

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

#: The band each move's acceptance rate is steered into (its centre is the target). The
#: preconditioned move's is higher: where its Gaussian fits, a larger step accepted half the
#: time forgets more per move than a smaller one accepted 30% of the time (on
#: configs/observed.toml, 0.5 gave 10-35% more effective paths per CPU-second than 0.3 over
#: four comparisons, with no more moves; benchmarks/smc_mixing.py).
ACCEPTANCE_BANDS = {"pcn": (0.2, 0.4), "preconditioned": (0.4, 0.6)}
TARGET_ACCEPTANCES = {move: 0.5 * (lo + hi) for move, (lo, hi) in ACCEPTANCE_BANDS.items()}
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
#: a row's three products with its half's 24 directions (:func:`_propose_half`) cost ~20 ms
#: a move of 16 x 1,024 particles on a 2-core CPU, against ~90 ms for their likelihood.
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


#: How a group's particle arrays ([B, n, ...]) lie over the devices: each device holds
#: every run's rows of one slice of the particle axis.
PARTICLES = P(None, "paths")


@functools.lru_cache(maxsize=16)
def likelihood_call(spec: KernelSpec, layout: LatentLayout, num_observations: int,
                    devices: tuple) -> Callable:
    """``(inputs, windows, z [B, n, D] float64) -> (loglik [B, n], predicted [B, O, n])``
    for a group of B runs of n particles each (n a multiple of the devices, over which the
    particle axis is sharded): each particle's log-likelihood (-inf where a path is not
    finite) and what the model says each observation measures (bias included). Each
    particle is its own path: a row's values do not depend on the others in its call."""
    kernel = build_kernel(spec)
    dtype = DTYPES[spec.dtype]
    P_, K, O = layout.num_parameters, layout.num_steps, num_observations

    def local(inputs, windows, z):
        B, n, D = z.shape
        z = z.reshape(B * n, D)
        shocks = z[:, layout.shock_columns].reshape(B * n, K, 5).transpose(1, 0, 2)
        bias_z = jnp.zeros((O, B * n), jnp.float64)
        if layout.bias_rows:
            bias_z = bias_z.at[np.array(layout.bias_rows)].set(z[:, layout.bias_columns].T)
        out = kernel(inputs, jnp.arange(B * n, dtype=jnp.uint32),
                     uniforms=uniforms_from_normals(z[:, :P_]), windows=windows,
                     latent_shocks=shocks.astype(dtype))
        ll = log_likelihood(out.observed_sums, windows, bias_z)
        ok = path_is_finite((out,)) & jnp.isfinite(ll)
        pred = predicted(out.observed_sums, windows, bias_z)
        return (jnp.where(ok, ll, -jnp.inf).reshape(B, n),
                pred.reshape(O, B, n).transpose(1, 0, 2))

    sharded = jax.shard_map(local, mesh=_mesh(devices), in_specs=(P(), P(), PARTICLES),
                            out_specs=(PARTICLES, P(None, None, "paths")), check_vma=False)
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
    #: moves made at temperature 1 after its own last tempering step, while other runs of
    #: its group still tempered (:func:`smc_group`)
    moves_after_tempering: int = 0

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
    """The Gaussians of one tempering step's preconditioned moves for each run of a group
    (leading axis B), one per half of its particles (rows ``< N // 2``: half 0, the rest:
    half 1), each fitted on the *other* half after resampling and held fixed through the
    step's moves: ``N(mean, I + V diag(lam - 1) V^T)`` in the latent space (where the prior
    is N(0, I)).

    ``mean`` [B, 2, D] float64 (in the span of V: elsewhere the Gaussian is the prior's);
    ``vectors`` [B, 2, D, K] orthonormal columns, zero where unused; ``lam`` [B, 2, K] the
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


def fisher_root(predicted_rows: np.ndarray, weights: np.ndarray,
                step: float = JACOBIAN_STEP) -> np.ndarray:
    """A factor ``A`` [k O, D] of the mean over particles of ``J^T diag(weights) J``
    (``F = A^T A``, D x D) from the model values [O, k, 2D] at :func:`jacobian_rows` (J
    [O, D] a particle's Jacobian of its predicted observations; particles with a
    non-finite value are left out; one zero row if none). F's eigen-directions are then
    the right singular vectors of the k O x D matrix A: why not F itself, LAPACK's
    eigensolver of a 162 x 162 matrix took ~0.1 s a call when the CPU was shared (its
    threads wait on each other), 32 calls a tempering step."""
    J = (predicted_rows[:, :, 0::2] - predicted_rows[:, :, 1::2]) / (2.0 * step)
    D = J.shape[2]
    ok = np.isfinite(J).all(axis=(0, 2))
    if not ok.any():
        return np.zeros((1, D))
    J = J[:, ok]
    # row (o, particle): sqrt(w_o / k) J_o, so that A^T A = sum_k J^T W J / k
    return (np.sqrt(weights / ok.sum())[:, None, None] * J).reshape(-1, D)


def gaussian_from_fisher(root: np.ndarray, beta: float, z: np.ndarray,
                         max_directions: int = MAX_DIRECTIONS, least: float = 0.1
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Gaussian ``N(mean, I + V diag(lam - 1) V^T)`` whose precision is the prior's
    plus the tempered likelihood's Fisher information ``F = root^T root``
    (:func:`fisher_root`), ``I + beta F``, along the eigen-directions where ``beta F``
    adds at least ``least`` (the largest first, up to ``max_directions``), and the prior's
    N(0, I) elsewhere; its mean is the particles' ``z`` [n, D] mean projected on those
    directions. Returns (mean [D], V [D, K], lam [K]), K = ``max_directions`` (unused:
    zero columns, lam 1).

    Why the likelihood's curvature and not the particles' covariance: after a few
    tempering steps the particles descend from a few hundred ancestors, and their sample
    covariance in the ~150 directions the observations barely see reflects that
    genealogy (variances from 0.1 to 10 where the posterior's are ~1), not the posterior.
    Any Gaussian keeps the move exact (:func:`_move_call`): this choice is about speed.
    """
    D = root.shape[1]
    V = np.zeros((D, max_directions))
    lam = np.ones(max_directions)
    # F = A^T A: its eigenvalues are A's squared singular values (largest first), its
    # eigenvectors A's right singular vectors
    _, singular, right = np.linalg.svd(root, full_matrices=False)
    f = singular * singular
    keep = np.flatnonzero(beta * f >= least)[:max_directions]
    V[:, :keep.size] = right[keep].T
    lam[:keep.size] = 1.0 / (1.0 + beta * f[keep])
    return V @ (V.T @ z.mean(axis=0)), V, lam


#: At most this many particles of each half give the likelihood's Jacobian to the other.
MAX_JACOBIAN_PARTICLES = 16


def _jacobian_particles(N: int, D: int) -> int:
    """Particles per half whose Jacobians make the other half's Gaussian: as many as the
    run's own ``N`` rows hold (each takes 2D rows, two halves), 1 to
    :data:`MAX_JACOBIAN_PARTICLES` (a function of the settings, not of the devices)."""
    return int(min(MAX_JACOBIAN_PARTICLES, max(1, N // (4 * D)), max(N // 2, 1)))


def jacobian_calls(N: int, D: int) -> int:
    """The likelihood evaluations (in units of the run's ``N`` particles) a step's
    preconditioner costs a run: a function of the sizes alone, so a resumed run counts its
    evaluations as a run never stopped."""
    return -(-(4 * D * _jacobian_particles(N, D)) // N)


def fit_preconditioners(evaluate: Callable, inputs, windows, z: np.ndarray,
                        beta: np.ndarray, weights: np.ndarray, n: int, sharding
                        ) -> Preconditioner:
    """Each run's two Gaussians (:class:`Preconditioner`, leading axis: the B runs of a
    group) at temperatures ``beta`` [B] from the resampled particles ``z`` [B, N, D] (host
    float64): half 0 (rows < N // 2) gets the one made of half 1's particles (their
    Jacobians and mean, :func:`gaussian_from_fisher`) and the other way round, so that no
    particle's move depends on its own state (systematic resampling keeps the copies of
    one ancestor in adjacent rows, so at most one ancestor straddles the halves). The
    Jacobians are central differences at a few evenly spaced particles of each half, every
    run's in the same calls of the group's compiled shape [B, n, D]."""
    B, N, D = z.shape
    h = N // 2
    k = _jacobian_particles(N, D)
    picks = [np.linspace(h, N - 1, k).round().astype(int),   # half 1's, for half 0
             np.linspace(0, h - 1, k).round().astype(int)]   # half 0's, for half 1
    rows = np.stack([np.concatenate([jacobian_rows(z[b, p]).reshape(-1, D) for p in picks])
                     for b in range(B)])                          # [B, 4Dk, D]
    R = rows.shape[1]
    calls = -(-R // n)
    filler = np.repeat(z[:, :1], calls * n - R, axis=1)
    padded = np.concatenate([rows, filler], axis=1)
    values = np.concatenate([np.asarray(evaluate(inputs, windows, jax.device_put(
        padded[:, c * n:(c + 1) * n], sharding))[1], np.float64) for c in range(calls)],
        axis=2)[:, :, :R].reshape(B, -1, 2, k, 2 * D)               # [B, O, half, k, 2D]
    fits = [[gaussian_from_fisher(fisher_root(values[b, :, i], weights), beta[b],
                                  z[b, h:] if i == 0 else z[b, :h]) for i in (0, 1)]
            for b in range(B)]
    # fits[b][half] = (mean, V, lam): each part stacked to [B, 2, ...]
    return Preconditioner(*(np.stack([np.stack([fit[part] for fit in run]) for run in fits])
                            for part in range(3)))


def mixing_correlation(z0: np.ndarray, z: np.ndarray, ll0: np.ndarray,
                       ll: np.ndarray) -> float:
    """How much the particles still remember where a step's moves started: the larger of
    the correlation over particles of the log-likelihood before (``ll0`` [N]) and after
    (``ll``), and the mean over latent coordinates of the same correlation of ``z0`` and
    ``z`` [N, D]. 1: nothing moved; ~0 (+- 1/sqrt(N)): the moves forgot the start. Host
    float64, in a fixed order, so it does not depend on the devices.

    The log-likelihood sees the few directions the facts pin, the mean of the
    coordinates the ~all others (where a pCN move's autocorrelation is the same in each:
    sqrt(1 - rho^2) per accepted move), so the larger of the two is the slower.
    :class:`MixingReference` computes the same for a group's runs, move after move."""
    return float(MixingReference(z0[None], ll0[None]).mixing(z[None], ll[None])[0])


class MixingReference:
    """Where a step's moves started for each run of a group (``z0`` [B, N, D], ``ll0``
    [B, N], host float64), kept centred with its norms so that each move's
    :meth:`mixing` costs three passes over the particles (it is computed after every
    move, on the host so that it does not depend on the devices)."""

    def __init__(self, z0: np.ndarray, ll0: np.ndarray) -> None:
        self.z0c = z0 - z0.mean(axis=1, keepdims=True)
        self.z0_norm2 = np.einsum("bnd,bnd->bd", self.z0c, self.z0c)
        self.ll0 = ll0

    def mixing(self, z: np.ndarray, ll: np.ndarray) -> np.ndarray:
        """Each run's mixing diagnostic [B] (:func:`mixing_correlation`) at ``z`` [B, N, D]
        and ``ll`` [B, N]."""
        N = z.shape[1]
        cross = np.einsum("bnd,bnd->bd", self.z0c, z)   # z0 centred: no mean of z needed
        total = z.sum(axis=1)
        norm2 = np.einsum("bnd,bnd->bd", z, z) - total * total / N
        den = np.sqrt(self.z0_norm2 * np.maximum(norm2, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            latent = np.where(den > 0, cross / den, np.nan)
        out = np.ones(z.shape[0])
        for b in range(z.shape[0]):
            values = []
            ok = np.isfinite(self.ll0[b]) & np.isfinite(ll[b])
            if ok.sum() > 2:
                a, c = self.ll0[b, ok], ll[b, ok]
                a, c = a - a.mean(), c - c.mean()
                d = math.sqrt(float((a * a).sum() * (c * c).sum()))
                if d > 0:
                    values.append(float((a * c).sum() / d))
            if np.isfinite(latent[b]).any():
                values.append(float(np.nanmean(latent[b])))
            if values:
                out[b] = max(values)
        return out


def _propose(move: str, z, xi, rho, pre, split: int):
    """One run's proposal from ``z`` [n, D] and its normals ``xi`` [n, D], and the log
    density correction of its acceptance (:func:`_move_call`); rows ``< split`` use half
    0's Gaussian of ``pre``, the others (padding included) half 1's."""
    a = jnp.sqrt(1.0 - rho * rho)
    if move == "pcn":
        return a * z + rho * xi, jnp.zeros(z.shape[:1], jnp.float64)
    mean, vectors, lam = pre
    n, D = z.shape
    if n == 2 * split:  # two equal halves (no padding): one batched product, no copies
        proposal, correction = jax.vmap(_propose_half, in_axes=(0, 0, None, None, 0, 0, 0))(
            z.reshape(2, split, D), xi.reshape(2, split, D), a, rho, mean, vectors, lam)
        return proposal.reshape(n, D), correction.reshape(n)
    halves = [_propose_half(z[rows], xi[rows], a, rho, mean[i], vectors[i], lam[i])
              for i, rows in enumerate((slice(0, split), slice(split, None)))]
    return (jnp.concatenate([h[0] for h in halves]),
            jnp.concatenate([h[1] for h in halves]))


def _propose_half(z, xi, a, rho, m, V, lam):
    """The preconditioned proposal of rows ``z`` [r, D] around N(m, I + V diag(lam - 1)
    V^T) (``m`` [D] in the span of ``V`` [D, K]'s orthonormal columns, zero columns with
    lam 1 where unused) and its log density correction.

    Everything but the proposal itself is in the K projected coordinates, so a row costs
    three products with V (its projections of z and xi, and L xi's part along V):
    z' = m + a (z - m) + rho L xi with L xi = xi + V ((sqrt(lam) - 1) V^T xi), and, with
    d = z - m, p = V^T d, mu = V^T m and c = 1 / lam - 1, the correction

        log N(z; m, S) - log N(z'; m, S) + log N(z'; 0, I) - log N(z; 0, I)
          = m . (d - d') - (1/2) sum_k c_k (p_k^2 - p'_k^2)
          = mu . (p - p') - (1/2) sum_k c_k (p_k^2 - p'_k^2),

    the squared norms |d|^2 of the two Gaussians cancelling (m . d = mu . p as m is in the
    span of V), and p' = V^T d' = a p + rho sqrt(lam) V^T xi."""
    mu = V.T @ m
    root = jnp.sqrt(lam)
    p = z @ V - mu
    q = xi @ V
    proposal = a * z + rho * xi + (1.0 - a) * m + (rho * (root - 1.0) * q) @ V.T
    p_new = a * p + rho * root * q
    c = 1.0 / lam - 1.0
    correction = (p - p_new) @ mu - 0.5 * ((p * p - p_new * p_new) @ c)
    return proposal, correction


@functools.lru_cache(maxsize=16)
def _move_call(evaluate: Callable, B: int, n: int, N: int, D: int, move: str = "pcn"
               ) -> Callable:
    """One move of every particle of a group of B runs: ``(inputs, windows, z, ll, pred,
    run_keys, step, move_index, rho, beta, moving, preconditioner) -> (z, ll, pred,
    acceptance)`` with z [B, n, D], ll [B, n], pred [B, O, n], per run its key, step size,
    temperature and whether it moves (a finished run's particles stay as they are), the
    step and move indices shared by the moving runs, and the acceptance rate [B] of each
    run's ``N`` particles (the padding rows past N move too but are never kept or counted).

    Run b's random numbers are those of ``fold_in(fold_in(key_b, step + 1), move + 1)``,
    whatever the group it is in. The preconditioner (unused by ``"pcn"``) has a leading
    run axis.

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
    # host constants (a cached device array would stay alive as long as the cache)
    real = np.arange(n) < N

    @jax.jit
    def step(inputs, windows, z, ll, pred, run_keys, step_index, move_index, rho, beta,
             moving, pre):
        def draws(key):
            key = jax.random.fold_in(jax.random.fold_in(key, step_index + 1), move_index + 1)
            kx, ku = jax.random.split(key)
            # float32 normals, widened: half the cost of float64 ones (after the likelihood
            # the largest part of a move), and their rounding (2^-24 relative) is far below
            # anything the acceptance ratio, computed in float64 on the widened values,
            # can see
            return (jax.random.normal(kx, (n, D), jnp.float32).astype(jnp.float64),
                    jnp.log(jax.random.uniform(ku, (n,), jnp.float64)))

        xi, log_u = jax.vmap(draws)(run_keys)
        proposal, correction = jax.vmap(
            lambda z, xi, rho, pre: _propose(move, z, xi, rho, pre, N // 2))(z, xi, rho, pre)
        ll_new, pred_new = evaluate(inputs, windows, proposal)
        diff = jnp.where(jnp.isfinite(ll_new),
                         jnp.where(jnp.isfinite(ll), ll_new - ll, jnp.inf), -jnp.inf)
        accept = (log_u < beta[:, None] * diff + correction) & moving[:, None]
        acceptance = jnp.sum(accept & real, axis=1) / N  # exact: a count over a count
        return (jnp.where(accept[:, :, None], proposal, z), jnp.where(accept, ll_new, ll),
                jnp.where(accept[:, None, :], pred_new, pred), acceptance)

    return step


@functools.lru_cache(maxsize=16)
def _prior_normals(n: int, D: int, sharding) -> Callable:
    """``run_keys [B] -> z [B, n, D]``: each run's initial particles, N(0, I) from
    ``fold_in(key, 0)`` (one compiled function per shape: a jit made anew in every call
    would be compiled anew, ~0.9 s a posterior on a CPU)."""
    return jax.jit(jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (n, D),
                                                        jnp.float64)),
                   out_shardings=sharding)


#: SMCStep's fields as the columns of a checkpoint's ``steps`` array (all float64: the
#: integer ones, distinct particles and moves, are exact in float64). A checkpoint of an
#: older version has the first six: the others take their defaults.
STEP_FIELDS = ("temperature", "ess", "distinct_after_resampling", "acceptance", "rho",
               "log_evidence_increment", "moves", "mixing")

#: The runs of one config move together, in groups of at most this many particles (every
#: run in one group when they fit: one likelihood call per move for all of them, the
#: largest cost of small runs being each call's fixed part). A function of the settings
#: alone, never of the devices, since a group's runs share their number of moves per step.
GROUP_PARTICLES = 65536


def run_groups(runs: int, particles: int) -> list[range]:
    """The groups of runs (:data:`GROUP_PARTICLES`) in order: ``range``s of run indices."""
    size = max(1, min(runs, GROUP_PARTICLES // particles))
    return [range(s, min(s + size, runs)) for s in range(0, runs, size)]


class SMCCheckpoint:
    """Where one process keeps its SMC groups' states in a checkpoint directory
    (``process-I-of-N.smc-group-G.npz``, one file per group of runs that move together,
    :func:`run_groups`), and when it saves them (every ``interval`` seconds, and at the
    end of each group)."""

    FORMAT = "mcsim.smc/2"

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

    def file(self, group: int) -> Path:
        i, n = self.process
        return self.directory / f"process-{i}-of-{n}.smc-group-{group}.npz"

    def load(self, group: int) -> dict | None:
        """Group ``group``'s saved state (None: none saved, or not resuming); refused with
        a ConfigError naming the file when unreadable or written by another run."""
        f = self.file(group)
        if not self.resume or not f.exists():
            return None
        data = ckpt.read_arrays(f, {**self.identity, "group": group},
                                what="an SMC checkpoint of this same run")
        missing = {"z", "ll", "pred", "prior_z", "prior_pred", "steps", "step_counts",
                   "beta", "rho", "elapsed"} - set(data)
        if missing:
            raise ConfigError("resume", str(f), "a readable mcsim checkpoint, but it lacks "
                              f"{', '.join(sorted(missing))}; delete it to start from the "
                              "beginning")
        return data

    def due(self) -> bool:
        return time.perf_counter() - self._last >= self.interval

    def save(self, group: int, arrays: dict[str, np.ndarray]) -> None:
        # uncompressed: normals do not compress, and a step's save should cost little
        ckpt.Checkpointer(self.file(group), {**self.identity, "group": group}).write(
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


def _range_text(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else \
        f"{format(lo, fmt)} to {format(hi, fmt)}"


def smc_group(config: Config, runs: range, settings: SMCSettings, dtype: str = "float32",
              devices: tuple | None = None, progress: Callable[[str], None] | None = None,
              checkpoint: SMCCheckpoint | None = None, group: int = 0) -> list[SMCRun]:
    """The adaptive tempered SMC runs ``runs`` (the module's steps 1-4), moved together:
    each run tempers, resamples and fits its preconditioner on its own, but one call moves
    all of them, and a tempering step's moves go on until the runs still tempering have
    mixed, by the mean of their mixing diagnostics (or the cap); a run that reached
    temperature 1 goes on moving at temperature 1 while the others temper (with a mixing
    threshold; without one it waits, unmoved).
    With a ``checkpoint``, the group's state is saved as it goes and, when resuming,
    continued from the saved one (bit-identical to a group never stopped)."""
    enable_x64()
    devices = tuple(devices or jax.local_devices())
    layout = latent_layout(config)
    grid = observed_grid(config)
    spec = KernelSpec.for_config(config, dtype, grid=grid, observed=True)._replace(
        antithetic=False)
    evaluate = likelihood_call(spec, layout, len(config.observations), devices)
    inputs = kernel_inputs(config, grid)
    windows = observation_windows(config)
    B, N, D = len(runs), settings.particles, layout.dimension
    n = -(-N // len(devices)) * len(devices)  # padded to the devices (extra: never kept)
    mesh = _mesh(devices)
    sharding = NamedSharding(mesh, PARTICLES)
    pred_sharding = NamedSharding(mesh, P(None, None, "paths"))
    keys = [_run_key(settings.seed, r) for r in runs]
    run_keys = jnp.stack(keys)
    t0 = time.perf_counter()
    saved = checkpoint.load(group) if checkpoint is not None else None
    if saved is not None:  # the state after its last saved step (the loop goes on there)
        z, ll, pred = (np.array(saved[k]) for k in ("z", "ll", "pred"))
        if z.shape != (B, n, D):
            raise ConfigError("resume", str(checkpoint.file(group)), f"an SMC checkpoint of "
                              f"{B} runs of {n} x {D} particles' normals (it holds "
                              f"{z.shape})")
        prior_z, prior_pred = saved["prior_z"], saved["prior_pred"]
        steps = [[step_from_row(row) for row in saved["steps"][b, :int(c)]]
                 for b, c in enumerate(saved["step_counts"])]
        beta, rho = np.array(saved["beta"], np.float64), np.array(saved["rho"], np.float64)
        elapsed = float(saved["elapsed"])
        t0 -= elapsed
    else:
        z = _prior_normals(n, D, sharding)(run_keys)
        ll, pred = evaluate(inputs, windows, z)
        z, ll, pred = np.array(z), np.array(ll), np.array(pred)  # host copies, written
        prior_z, prior_pred = z[:, :N].copy(), pred[:, :, :N].copy()
        beta, rho = np.zeros(B), np.full(B, INITIAL_RHO)
        steps = [[] for _ in range(B)]
    if not np.isfinite(ll[:, :N]).any(axis=1).all():
        raise ConfigError("observations", [o.name for o in config.observations],
                          "values that some simulated path can explain: every particle's "
                          "likelihood of them is 0 in float64 (an sd far too small for the "
                          "spread of the paths, or a value in the wrong units?)")
    move = _move_call(evaluate, B, n, N, D, settings.move)
    target = TARGET_ACCEPTANCES[settings.move]
    weights = observation_weights(config)
    identity = Preconditioner(np.zeros((B, 2, D)), np.zeros((B, 2, D, MAX_DIRECTIONS)),
                              np.ones((B, 2, MAX_DIRECTIONS)))
    label = f"run {runs[0] + 1}" if B == 1 else f"runs {runs[0] + 1}-{runs[-1] + 1}"

    def state() -> dict[str, np.ndarray]:
        S = max(len(st) for st in steps)
        rows = np.full((B, S, len(STEP_FIELDS)), np.nan)
        for b, run_steps in enumerate(steps):
            for s, st in enumerate(run_steps):
                rows[b, s] = [getattr(st, f) for f in STEP_FIELDS]
        return {"z": z, "ll": ll, "pred": pred, "prior_z": prior_z, "prior_pred": prior_pred,
                "steps": rows, "step_counts": np.array([len(st) for st in steps], np.int64),
                "beta": beta, "rho": rho,
                "elapsed": np.float64(time.perf_counter() - t0)}

    # With a mixing threshold, a run that reached temperature 1 goes on moving while the
    # others temper: its particles are in the group's calls anyway (only the acceptance
    # masked them), so these moves, which leave its posterior invariant, cost nothing, and
    # they take its last step's mixing further. With a fixed number of moves (threshold 0)
    # it waits, unmoved, so that each run is the same alone or in any group.
    free_moves = settings.mixing_threshold > 0
    stepped = False
    while (beta < 1.0).any():
        stepped = True
        moving = beta < 1.0
        active = np.ones(B, bool) if free_moves else moving
        index = len(steps[int(np.argmax(moving))])  # every moving run has taken as many
        if index >= MAX_STEPS:
            raise ConfigError("observations", [o.name for o in config.observations],
                              f"observations the prior can reach: SMC needed more than "
                              f"{MAX_STEPS} tempering steps (temperature "
                              f"{beta[moving].min():.3g})")
        new_beta, records = beta.copy(), {}
        for b in np.flatnonzero(moving):
            lb = ll[b, :N]
            new_beta[b] = next_temperature(lb, beta[b], settings.ess_fraction * N)
            a = (new_beta[b] - beta[b]) * lb
            finite = np.isfinite(a)
            top = a[finite].max()
            w = np.where(finite, np.exp(np.where(finite, a, 0.0) - top), 0.0)
            u0 = float(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(
                keys[b], index + 1), 0), (), jnp.float64))
            idx = systematic_resample(w, u0)
            z[b, :N], ll[b, :N], pred[b, :, :N] = z[b, idx], ll[b, idx], pred[b][:, idx]
            records[b] = (float(w.sum() ** 2 / (w * w).sum()), int(np.unique(idx).shape[0]),
                          float(top + np.log(w.sum() / N)))
        # where the step's moves start, for the mixing diagnostic and the preconditioner
        reference = MixingReference(z[moving, :N], ll[moving, :N])
        pre = identity
        if settings.move != "pcn":
            pre = fit_preconditioners(evaluate, inputs, windows, z[:, :N], new_beta, weights,
                                      n, sharding)
        pre = Preconditioner(*(jnp.asarray(a) for a in pre))
        zd, lld = jax.device_put(z, sharding), jax.device_put(ll, sharding)
        predd = jax.device_put(pred, pred_sharding)
        accepted, mixing = [], np.full(B, math.nan)
        moving_d, beta_d = jnp.asarray(active), jnp.asarray(new_beta)
        for m in range(settings.moves):
            zd, lld, predd, acc = move(inputs, windows, zd, lld, predd, run_keys,
                                       jnp.int32(index), jnp.int32(m), jnp.asarray(rho),
                                       beta_d, moving_d, pre)
            acc = np.asarray(acc)
            accepted.append(acc)
            rho = np.where(active, np.clip(rho * np.exp(RHO_GAIN * (acc - target)), 1e-3,
                                           1.0), rho)
            if settings.mixing_threshold > 0 or m == settings.moves - 1:
                z_now, ll_now = np.asarray(zd), np.asarray(lld)
                if not moving.all():
                    z_now, ll_now = z_now[moving], ll_now[moving]
                mixing[moving] = reference.mixing(z_now[:, :N], ll_now[:, :N])
                # the group's runs are exchangeable: their mean is the group's mixing, with
                # less noise than any one run's (or the slowest's, the largest of R noisy
                # values)
                if float(np.mean(mixing[moving])) < settings.mixing_threshold:
                    break
        z, ll, pred = np.array(zd), np.array(lld), np.array(predd)
        made = len(accepted)
        acceptance = np.mean(accepted, axis=0)
        for b, (ess, distinct, log_z) in records.items():
            steps[b].append(SMCStep(float(new_beta[b]), ess, distinct, float(acceptance[b]),
                                    float(rho[b]), log_z, made, float(mixing[b])))
        beta = new_beta
        if progress is not None:
            live = sorted(records)
            progress(
                f"{label} of {settings.runs} step {index + 1}: temperature "
                f"{_range_text([beta[b] for b in live], '.4g')}"
                + (f" ({len(live)} of {B} runs still tempering"
                   + ("; the others move at temperature 1" if free_moves else "") + ")"
                   if len(live) < B else "")
                + f", ESS {_range_text([records[b][0] for b in live], ',.0f')}, {made} moves,"
                f" mixing {np.mean([mixing[b] for b in live]):.2f}, acceptance "
                f"{_range_text([acceptance[b] for b in live], '.2f')}")
        if checkpoint is not None and ((beta >= 1.0).all() or checkpoint.due()):
            checkpoint.save(group, state())  # the last step's: a finished group is not redone
    # a group read back finished took the time it took then (its provenance's seconds),
    # and its runs share it equally
    seconds = (elapsed if saved is not None and not stepped else time.perf_counter() - t0) / B
    # likelihood evaluations in units of N: the prior's, then each step's moves and (for
    # the preconditioned move) its Jacobians: a function of the step records alone
    per_step = 0 if settings.move == "pcn" else jacobian_calls(N, D)
    # a finished run moved (with free moves) in every later step of its group, which the
    # run that tempered longest recorded
    longest = max(steps, key=len)
    after = [longest[len(run_steps):] if free_moves else [] for run_steps in steps]
    evaluations = [1 + sum(st.moves + per_step for st in run_steps + later)
                   for run_steps, later in zip(steps, after, strict=True)]
    return [SMCRun(r, steps[b], z[b, :N].copy(), ll[b, :N].copy(), pred[b, :, :N].copy(),
                   prior_z[b], prior_pred[b], _distinct(z[b, :N]), seconds,
                   evaluations[b], sum(st.moves for st in after[b]))
            for b, r in enumerate(runs)]


def smc_posterior(config: Config, dtype: str = "float32", devices: tuple | None = None,
                  progress: Callable[[str], None] | None = None,
                  checkpoint: str | Path | None = None, resume: bool = False,
                  checkpoint_interval: float = 60.0) -> SMCPosterior:
    """The config's ``runs`` independent SMC runs, moved in groups (:func:`run_groups`,
    :func:`smc_group`). With a ``checkpoint`` directory each group's state is saved there
    every ``checkpoint_interval`` seconds and at its end (:class:`SMCCheckpoint`, the
    directory locked for this process while it runs); ``resume`` continues from the saved
    states (finished groups are read back)."""
    if not config.observations:
        raise ConfigError("observations", {}, "at least one observation to condition on")
    enable_x64()
    settings = SMCSettings.for_config(config)
    out = SMCPosterior(settings, latent_layout(config), dtype=dtype)
    groups = run_groups(settings.runs, settings.particles)
    if checkpoint is None:
        for g, runs in enumerate(groups):
            out.runs.extend(smc_group(config, runs, settings, dtype, devices, progress,
                                      group=g))
        return out
    devices = tuple(devices or jax.local_devices())
    saver = SMCCheckpoint(checkpoint, config, settings, dtype, devices, checkpoint_interval,
                          resume)
    with locks.hold(saver.lock_file, key="checkpoint", value=str(checkpoint),
                    what="checkpoint directory"):
        for g, runs in enumerate(groups):
            out.runs.extend(smc_group(config, runs, settings, dtype, devices, progress, saver,
                                      g))
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
