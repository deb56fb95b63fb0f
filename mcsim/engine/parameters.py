"""The parameter table: every drawn parameter's p5 / p50 / p95 and mean, as drawn and, for a
conditioned run, weighted by the paths' likelihood of the observations.

Computed from the run's own first paths (at most :data:`TABLE_PATHS`: the same streams,
antithetic mirrors and Sobol points as the run), not from the histograms: parameters live
far from the money bins' range (a conversion of 0.05, a half-life of 3 years). The values
are drawn on the host by the NumPy sampler (:class:`mcsim.draws.ParameterSampler`, equal
to the device's draws to float64 rounding), so the table is the same whatever the devices;
the conditioned weights come from the engine's kernel. Each mean carries its standard
error; the quantiles are sample quantiles of those paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..draws import ParameterSampler
from ..months import MonthGrid
from ..qmc import sobol_points_for
from ..rng import parameter_uniforms
from .conditioning import PathLogLikelihood, observation_windows
from .kernel import KernelSpec, kernel_inputs
from .runner import PathRows, run_paths

#: Paths the table is computed from (its quantiles' sampling error is then ~0.5% of the
#: spread at the median).
TABLE_PATHS = 65536
#: Paths per compiled call.
CALL_PATHS = 8192


def parameter_table(config: Config, dtype: str = "float32", *,
                    conditioned: bool = False) -> dict:
    """``{"paths": n, "prior": {name: row}, "conditioned": {name: row}}`` (conditioned only
    when asked and the config has observations), each row ``{"p5", "p50", "p95", "mean",
    "mean_se"}`` in the parameter's unit. Empty when nothing is drawn."""
    names = KernelSpec.for_config(config, dtype).structure.uncertain
    if not names:
        return {}
    n = min(config.simulation.paths, TABLE_PATHS)
    weighted = conditioned and bool(config.observations)
    grid = config.grid
    if weighted:  # the likelihood needs the months up to the last observed one only
        last = max(grid.index(o.end) for o in config.observations)
        grid = MonthGrid(grid.start, max(last + 1, 1))
    source = sobol_points_for(config)
    host = ParameterSampler(config)
    antithetic = config.simulation.variance_reduction == "antithetic"
    values = []
    step = min(CALL_PATHS, n + n % 2)
    for start in range(0, n, step):
        points = None if source is None else source.points(start, step)
        u = parameter_uniforms(config.simulation.seed, start, step, host.indices) \
            if points is None else points
        if antithetic:  # path 2k+1 mirrors path 2k, before the copula (as on the device)
            u = u.copy()
            u[1::2] = 1.0 - u[0::2]
        theta = host.from_uniforms(host.correlated(u))
        values.append(np.stack([theta[name] for name in names], axis=1))
    x = np.concatenate(values)[:n]
    out = {"paths": n, "prior": _rows(names, x, np.ones(n))}
    if weighted:
        # each path's log-likelihood, on every local device (-inf for a non-finite path)
        rows = run_paths([KernelSpec.for_config(config, dtype, grid=grid, observed=True)],
                         [kernel_inputs(config, grid)],
                         PathRows(_LogLikelihoodRow(), n, full=True), n,
                         chunk_size=CALL_PATHS, uniforms=source,
                         windows=observation_windows(config), progress=False)
        ll = np.where(rows["finite"], rows["loglik"], -np.inf)
        finite = np.isfinite(ll)
        w = np.zeros(n)
        if finite.any():
            w[finite] = np.exp(ll[finite] - ll[finite].max())
        out["conditioned"] = _rows(names, x, w)
    return out


@dataclass(frozen=True)
class _LogLikelihoodRow:
    def __call__(self, outs, paths, windows):
        return {"loglik": PathLogLikelihood()(outs, paths, windows)}


def _rows(names, x: np.ndarray, w: np.ndarray) -> dict[str, dict[str, float]]:
    """Weighted sample quantiles (the smallest value whose cumulative weight reaches p) and
    means with their (delta-method) standard errors."""
    total = w.sum()
    out = {}
    for k, name in enumerate(names):
        v = x[:, k]
        order = np.argsort(v, kind="stable")
        cum = np.cumsum(w[order]) / total
        row = {f"p{p:g}": float(v[order][min(np.searchsorted(cum, p / 100.0), len(v) - 1)])
               for p in (5, 50, 95)}
        mean = float((w * v).sum() / total)
        row["mean"] = mean
        row["mean_se"] = float(np.sqrt(((w * (v - mean)) ** 2).sum()) / total)
        out[name] = row
    return out
