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
3. ``moves`` preconditioned Crank-Nicolson moves ``z' = sqrt(1 - rho^2) z + rho xi``, which
   leave the Gaussian prior invariant, accepted with probability
   ``min(1, exp(beta' (loglik' - loglik)))``; the step size ``rho`` follows the acceptance
   rate towards :data:`TARGET_ACCEPTANCE` move by move (a Robbins-Monro step on log rho);
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

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import checkpoint as ckpt
from .. import locks
from ..config import Config, ConfigError
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
    pCN moves per step, independent runs and the seed."""

    particles: int
    ess_fraction: float
    moves: int
    runs: int
    seed: int

    @classmethod
    def for_config(cls, config: Config) -> SMCSettings:
        c = config.conditioning
        seed = config.simulation.seed if c.seed is None else c.seed
        return cls(c.particles, c.ess_fraction, c.moves, c.runs, seed)


@dataclass
class SMCStep:
    """One tempering step: its temperature, the ESS of its incremental weights (before
    resampling), the distinct particles after resampling, the mean pCN acceptance and the
    step size at its end."""

    temperature: float
    ess: float
    distinct_after_resampling: int
    acceptance: float
    rho: float
    log_evidence_increment: float


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


@functools.lru_cache(maxsize=16)
def _move_call(evaluate: Callable, n: int, D: int, devices: tuple) -> Callable:
    """One pCN move of all particles: ``(inputs, windows, z, ll, pred, key, rho, beta) ->
    (z, ll, pred, accepted)``."""

    @jax.jit
    def move(inputs, windows, z, ll, pred, key, rho, beta):
        kx, ku = jax.random.split(key)
        xi = jax.random.normal(kx, (n, D), jnp.float64)
        proposal = jnp.sqrt(1.0 - rho * rho) * z + rho * xi
        ll_new, pred_new = evaluate(inputs, windows, proposal)
        log_u = jnp.log(jax.random.uniform(ku, (n,), jnp.float64))
        diff = jnp.where(jnp.isfinite(ll_new),
                         jnp.where(jnp.isfinite(ll), ll_new - ll, jnp.inf), -jnp.inf)
        accept = log_u < beta * diff
        return (jnp.where(accept[:, None], proposal, z), jnp.where(accept, ll_new, ll),
                jnp.where(accept[None, :], pred_new, pred), jnp.mean(accept))

    return move


#: SMCStep's fields as the columns of a checkpoint's ``steps`` array (all float64: the
#: integer one, distinct particles, is exact in float64)
STEP_FIELDS = ("temperature", "ess", "distinct_after_resampling", "acceptance", "rho",
                "log_evidence_increment")


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
        steps = [SMCStep(*(float(v) for v in row)) for row in saved["steps"]]
        for st in steps:
            st.distinct_after_resampling = int(st.distinct_after_resampling)
        beta, rho, elapsed = (float(v) for v in saved["scalars"])
        evaluations = 1 + settings.moves * len(steps)
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
    move = _move_call(evaluate, n, D, devices)
    mesh = _mesh(devices)

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
        accepted = []
        for m in range(settings.moves):
            z, ll, pred, acc = move(inputs, windows, z, ll, pred,
                                    jax.random.fold_in(step_key, m + 1), jnp.float64(rho),
                                    jnp.float64(new_beta))
            acc = float(acc)  # over the padded rows too: they move like the others
            accepted.append(acc)
            rho = float(np.clip(rho * math.exp(RHO_GAIN * (acc - TARGET_ACCEPTANCE)),
                                1e-3, 1.0))
        evaluations += settings.moves
        ll_host = np.asarray(ll)[:N]
        steps.append(SMCStep(new_beta, ess, distinct_resampled, float(np.mean(accepted)),
                             rho, log_z))
        beta = new_beta
        if progress is not None:
            progress(f"run {run + 1}/{settings.runs} step {len(steps)}: temperature "
                     f"{beta:.4g}, ESS {ess:,.0f}, acceptance {steps[-1].acceptance:.2f}")
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
