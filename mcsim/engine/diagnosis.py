"""Paths with a NaN or inf: the run's check, and which parameter they come from."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..accumulators import Accumulator
from ..config import Config, ConfigError
from ..qmc import sobol_points_for
from .kernel import KernelSpec, build_kernel, kernel_inputs, path_is_finite


def check_nonfinite(config: Config, acc: Accumulator, dtype: str) -> None:
    """Fail when more paths than ``simulation.max_nonfinite_fraction`` had a NaN or inf.

    Raises ConfigError naming how many paths, the first month and the likely parameter.
    """
    bad, limit = acc.nonfinite_paths, config.simulation.max_nonfinite_fraction
    if bad <= limit * max(acc.paths, 1):
        return
    months = np.flatnonzero(acc.nonfinite_months[:-1])
    first = config.grid.label(int(months[0])) if len(months) else "an unlocated month"
    likely = diagnose_nonfinite(config, dtype)
    raise ConfigError(
        "simulation.max_nonfinite_fraction", limit,
        f"at most that fraction of paths with a NaN or inf, but {bad:,} of {acc.paths:,} "
        f"({bad / max(acc.paths, 1):.3%}) had one, first in {first}"
        + (f"; likely parameter: {likely}" if likely else "")
        + " (narrow that parameter's range, or raise the limit to report on the others)")


def diagnose_nonfinite(config: Config, dtype: str, chunk: int = 8192,
                       max_chunks: int = 8) -> str | None:
    """The uncertain parameter whose values best tell the paths with a NaN or inf apart.

    Runs the first chunks again, keeping each path's parameters and finiteness; for every
    parameter, the mean percentile (rank among the chunk's paths) of the bad paths; the one
    farthest from the 50th is named. None when nothing is uncertain or no bad path is found.
    In float32, the same paths are also run in float64: where most of the bad ones are
    finite there, float32's range (3.4e38) is the cause, and ``--dtype float64`` is
    suggested whatever parameter is named.
    """
    spec = KernelSpec.for_config(config, dtype)
    names = spec.structure.uncertain
    if not names:
        return None
    finite, values = _finiteness(config, spec, chunk, max_chunks, stop_at_bad=50)
    if finite.all():
        return None
    n, bad = len(finite), int((~finite).sum())
    wider = _float64_note(config, finite, chunk) if dtype == "float32" else ""
    if bad == n:
        return "none: every path has a NaN or inf, so no parameter tells them apart" + wider
    from scipy.stats import rankdata

    pct = 100.0 * (rankdata(values, axis=0) - 0.5) / n
    mean_bad = pct[~finite].mean(axis=0)
    k = int(np.argmax(np.abs(mean_bad - 50.0)))
    # the mean percentile of `bad` paths drawn at random, without replacement, has
    # sd 100/sqrt(12) * sqrt((n - bad) / (n bad)): name a parameter only beyond 4 of them
    noise = 100.0 / np.sqrt(12.0) * np.sqrt((n - bad) / (n * bad))
    if abs(mean_bad[k] - 50.0) <= 4.0 * noise:
        return "none stands out: the paths with a NaN or inf are spread over every " \
            "parameter's range" + wider
    return (f"{names[k]} (the paths with a NaN or inf sit at its "
            f"{mean_bad[k]:.0f}th percentile on average){wider}")


def _finiteness(config: Config, spec: KernelSpec, chunk: int, chunks: int,
                stop_at_bad: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each of the run's first paths (up to ``chunks`` chunks; fewer once ``stop_at_bad``
    of them are bad): whether every statistic is finite, and its drawn parameters."""
    names = spec.structure.uncertain
    kernel, sampler = build_kernel(spec), spec.sampler
    sobol = sobol_points_for(config)

    @jax.jit
    def per_path(inputs, paths, u):
        # the run's own paths: its mirrors or Sobol points
        out = kernel(inputs, paths, uniforms=u)
        theta = sampler.draw(inputs.args, paths, jnp.float64, uniforms=u,
                             antithetic=spec.antithetic)
        return path_is_finite((out,)), jnp.stack([theta[n] for n in names], 1)

    inputs = kernel_inputs(config)
    finite, values = [], []
    for c in range(chunks):
        if c * chunk >= config.simulation.paths:
            break
        u = None if sobol is None else jnp.asarray(sobol.points(c * chunk, chunk))
        ok, theta = jax.device_get(per_path(inputs, jnp.uint32(c * chunk)
                                            + jnp.arange(chunk, dtype=jnp.uint32), u))
        finite.append(ok)
        values.append(theta)
        if stop_at_bad is not None and sum(int((~f).sum()) for f in finite) >= stop_at_bad:
            break
    return np.concatenate(finite), np.concatenate(values)


def _float64_note(config: Config, finite32: np.ndarray, chunk: int) -> str:
    """"; money beyond float32's range ... --dtype float64 ..." where most of the paths that are
    not finite in float32 are finite in float64; else "". float32 overflow is the likely
    cause then, whatever parameter drives those paths (a fast growth rate, say), and a
    float64 run would report them."""
    spec64 = KernelSpec.for_config(config, "float64")
    finite64, _ = _finiteness(config, spec64, chunk, len(finite32) // chunk)
    bad = ~finite32
    rescued = int((finite64[:len(finite32)] & bad).sum())
    if 2 * rescued < int(bad.sum()):
        return ""
    return (f"; money beyond float32's range (3.4e38) is the likely cause: {rescued:,} of "
            f"{int(bad.sum()):,} such paths are finite in float64, so run with --dtype "
            "float64 (it reaches 1e308)")
