"""Raw sampled paths for audit: the parameters and every monthly flow of the first K paths.

The paths are the run's own: parameters from the device recipe and shocks from the same
counters and transform as the kernel, advanced by the same model functions
(:func:`mcsim.model.simulate_flows`), in the run's dtype, with the run's variance
reduction (antithetic mirrors, Sobol points). Written as two CSV files that
pandas reads: ``sample_parameters.csv`` (one row per path: index, every parameter, the
repayment and credit-exhaustion months) and ``sample_paths.csv`` (one row per path and
month: every flow, $ per month, and cumulative Azure spend).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import model
from .config import Config
from .device_draws import DeviceSampler
from .engine import DTYPES, month_shocks, pair_streams, shock_cholesky
from .qmc import sobol_points_for
from .rng import STREAM_SHOCKS, stream_key


def sample_paths(config: Config, k: int, dtype: str = "float32"):
    """(parameters DataFrame, flows DataFrame) of paths 0 .. k-1."""
    import pandas as pd

    grid, jd = config.grid, DTYPES[dtype]
    T = grid.num_months
    antithetic = config.simulation.variance_reduction == "antithetic"
    sampler = DeviceSampler(config)
    paths = jnp.arange(k, dtype=jnp.uint32)
    source = sobol_points_for(config)
    uniforms = None if source is None else jnp.asarray(source.points(0, k))
    theta = jax.device_get(jax.jit(
        lambda a, p, u: sampler.draw(a, p, jd, uniforms=u, antithetic=antithetic))(
        jax.tree.map(jnp.asarray, sampler.arguments()), paths, uniforms))
    key = jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS), jnp.uint32)
    shock_paths, mirrored = pair_streams(paths, antithetic)
    normals = jnp.stack([jnp.zeros((k, 5), jd)] + [
        jnp.stack(month_shocks(key, shock_paths, jnp.uint32(t), jd, mirrored), axis=1)
        for t in range(1, T)])  # row t drives the step into month t, as in the kernel
    chol = shock_cholesky(config)
    fn = jax.jit(lambda th, d, z: model.simulate_flows(th, d, z, chol, T))
    final, flows = fn({n: jnp.asarray(v) for n, v in theta.items()},
                      model.deal_terms(config.deal, grid), normals)
    flows = jax.device_get(flows)
    def never(m):
        return (None if m >= T else grid.label(int(m)))
    params = pd.DataFrame({"path": np.arange(k), **{n: theta[n] for n in sorted(theta)
                                                         if not n.startswith("_")},
                           "repayment_month": [never(m) for m in
                                               np.asarray(final.repayment_month)],
                           "credit_exhaustion_month": [never(m) for m in
                                                       np.asarray(final.credit_month)]})
    columns = {f: np.asarray(getattr(flows, f), np.float64) for f in model.Flows._fields}
    long = pd.DataFrame({
        "path": np.tile(np.arange(k), T),
        "month": np.repeat(np.array(grid.labels), k),
        **{f: v.reshape(-1) for f, v in columns.items()},
        "cumulative_azure_spend": np.cumsum(columns["azure_spend"], axis=0).reshape(-1),
    }).sort_values(["path", "month"], kind="stable").reset_index(drop=True)
    return params, long


def write_sample_paths(config: Config, k: int, out: Path, dtype: str = "float32") -> list[Path]:
    params, long = sample_paths(config, k, dtype)
    files = [Path(out) / "sample_parameters.csv", Path(out) / "sample_paths.csv"]
    params.to_csv(files[0], index=False)
    long.to_csv(files[1], index=False)
    return files
