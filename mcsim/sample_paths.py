"""Raw sampled paths for audit: the parameters and every monthly flow of the first K paths.

The paths are the run's own: the engine's kernel (:func:`mcsim.engine.kernel.build_kernel`,
with ``record_flows``) on paths 0 .. K-1, in the run's dtype, with the run's variance
reduction (antithetic mirrors, Sobol points), so every number is the one the run reduced.
Written as two CSV files that pandas reads: ``sample_parameters.csv`` (one row per path:
index, every parameter, the repayment and credit-exhaustion months) and
``sample_paths.csv`` (one row per path and month: every flow, $ per month; every stock:
users, subscribers, tokens per month, GPU price, Azure share; and cumulative Azure spend).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import model
from .config import Config
from .engine.kernel import DTYPES, KernelSpec, build_kernel, kernel_inputs
from .qmc import sobol_points_for


def sample_paths(config: Config, k: int, dtype: str = "float32"):
    """(parameters DataFrame, flows DataFrame) of paths 0 .. k-1."""
    import pandas as pd

    grid = config.grid
    T = grid.num_months
    spec = KernelSpec.for_config(config, dtype, record_flows=True)
    kernel, sampler = build_kernel(spec), spec.sampler
    source = sobol_points_for(config)
    uniforms = None if source is None else jnp.asarray(source.points(0, k))

    @jax.jit
    def paths_and_parameters(inputs, paths, u):
        theta = sampler.draw(inputs.args, paths, DTYPES[dtype], uniforms=u,
                             antithetic=spec.antithetic)
        return theta, kernel(inputs, paths, uniforms=u)

    theta, out = jax.device_get(paths_and_parameters(
        kernel_inputs(config), jnp.arange(k, dtype=jnp.uint32), uniforms))

    def never(m):
        return (None if m >= T else grid.label(int(m)))
    params = pd.DataFrame({"path": np.arange(k), **{n: theta[n] for n in sorted(theta)
                                                         if not n.startswith("_")},
                           "repayment_month": [never(m) for m in
                                               np.asarray(out.final.repayment_month)],
                           "credit_exhaustion_month": [never(m) for m in
                                                       np.asarray(out.final.credit_month)]})
    columns = {f: np.asarray(getattr(out.flows, f), np.float64) for f in model.Flows._fields}
    columns |= {s: np.asarray(getattr(out.stocks, s), np.float64) for s in model.Stocks._fields}
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
