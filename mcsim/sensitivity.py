"""Which assumption drives repayment: Sobol indices of every uncertain parameter.

The factors are the independent uniforms of the uncertain parameters (before the Gaussian
copula: with correlated parameters, a parameter's index then covers what its own innovation
adds, the copula's shared part going to the parameters it is correlated with, in the
order of :data:`mcsim.parameters.PARAMETER_NAMES`) plus one group factor, ``monthly_shocks``:
all the random month-to-month shocks of a path together. Rows of A use the shock streams
of paths 0..N-1, rows of B those of paths N..2N-1; AB_i takes A's shocks, and the shock
factor's own radial matrix is A's parameters with B's shocks. So every index has its
textbook meaning, and the shocks' indices say how much of the spread is irreducible
month-to-month noise rather than parameter uncertainty.

The design's rows enter the engine's own kernel
(:func:`mcsim.engine.kernel.build_kernel`) with their uniforms in place of the paths'
counter-based ones: the same copula, inverse CDFs, model and kernel dtype as ordinary runs.

Outputs, per design row:

* ``repayment_month``: months from the start until Microsoft is repaid; a path not repaid
  by the horizon counts as the month after the horizon (censored: indices of a censored
  output describe the censored variable);
* ``cumulative_azure_spend``: cumulative Azure spend at the horizon, $;
* ``repaid_by``: 1 if repaid by the given month, else 0 (its variance is p (1 - p)).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import sobol
from .config import Config, ConfigError
from .engine.kernel import KernelSpec, build_kernel, kernel_inputs
from .x64 import enable_x64

SHOCK_FACTOR = "monthly_shocks"
OUTPUTS = ("repayment_month", "cumulative_azure_spend", "repaid_by")
#: rows per compiled call (a power of two; the last call is padded)
ROWS_PER_CALL = 8192


@dataclass(frozen=True)
class SensitivityResult:
    """Sobol indices of each output, with what produced them."""

    indices: dict[str, sobol.SobolIndices]  # output name -> indices over the factors
    by_month: str                           # the month of ``repaid_by``
    num_base: int
    num_rows: int                           # model evaluations, N (k + 3)
    seed: int
    output_means: dict[str, float]          # over the rows of A and B
    seconds: float

    def frame(self):
        """One long table: (output, factor) -> first, total and their intervals."""
        import pandas as pd

        return pd.concat({k: v.to_frame() for k, v in self.indices.items()},
                         names=["output", "factor"])

    def plot_tornado(self, ax=None, output: str = "repayment_month", top: int = 12):
        """Tornado chart of one output's indices on ``ax`` (or a new one); returns it."""
        from . import plots

        ax = ax if ax is not None else plots.new_axes((8, 5))
        plots.tornado(self, ax, output, top)
        return ax

    def top(self, output: str = "repayment_month", k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` factors with the largest total index for ``output``."""
        idx = self.indices[output]
        order = np.argsort(-np.nan_to_num(idx.total, nan=-np.inf))[:k]
        return [(idx.names[i], float(idx.total[i])) for i in order]


def evaluate_rows(config: Config, uniforms: np.ndarray, shock_paths: np.ndarray,
                  dtype: str = "float32") -> dict[str, np.ndarray]:
    """Run the model on design rows: parameter uniforms [n, m] and shock path indices [n].

    Returns ``repayment_month`` (int, T when not repaid), ``cumulative_azure_spend``
    ($, at the horizon) and ``finite`` (bool) per row.
    """
    T = config.grid.num_months
    # the design's rows are not the run's paths: no antithetic mirrors
    kernel = build_kernel(KernelSpec.for_config(config, dtype)._replace(antithetic=False))

    @jax.jit
    def rows(inputs, u, shocks):
        out = kernel(inputs, jnp.arange(u.shape[0], dtype=jnp.uint32), uniforms=u,
                     shock_paths=shocks)
        return (out.final.repayment_month, out.stats[T - 1],
                jnp.all(jnp.isfinite(out.stats), axis=0))

    inputs = kernel_inputs(config)
    n = len(uniforms)
    call = min(ROWS_PER_CALL, 1 << max(0, (n - 1).bit_length()))
    month, spend, finite = [], [], []
    for s in range(0, n, call):
        u = np.full((call, uniforms.shape[1]), 0.5)
        sp = np.zeros(call, np.uint32)
        u[: min(call, n - s)] = uniforms[s:s + call]
        sp[: min(call, n - s)] = shock_paths[s:s + call]
        m, c, f = jax.device_get(rows(inputs, jnp.asarray(u), jnp.asarray(sp)))
        month.append(m)
        spend.append(c)
        finite.append(f)
    return {"repayment_month": np.concatenate(month)[:n],
            "cumulative_azure_spend": np.concatenate(spend)[:n],
            "finite": np.concatenate(finite)[:n]}


def default_by_month(config: Config) -> str:
    """December 2030 when inside the horizon (the amendment's revenue share ends then),
    else the horizon."""
    grid = config.grid
    return "2030-12" if "2030-12" in grid.labels else grid.labels[-1]


def sensitivity(config: Config, *, num_base: int = 4096, by_month: str | None = None,
                num_bootstrap: int = 1000, confidence: float = 0.95,
                dtype: str = "float32") -> SensitivityResult:
    """Sobol first- and total-order indices of every uncertain parameter and of the
    monthly shocks, for each of :data:`OUTPUTS`, with bootstrap intervals.

    ``num_base`` (N, a power of two) rows in each base matrix: N (k + 3) model runs for k
    parameters. The design and bootstrap are seeded by ``simulation.seed``.
    """
    import time

    enable_x64()
    t0 = time.perf_counter()
    names = list(config.uncertain_parameters())
    if not names:
        raise ConfigError("parameters", "(all fixed)", "at least one parameter with a "
                          "distribution, to measure sensitivity to")
    grid = config.grid
    by_month = by_month or default_by_month(config)
    if by_month not in grid.labels:
        raise ConfigError("by_month", by_month, f"a month from {grid.labels[0]} to "
                          f"{grid.labels[-1]}")
    if num_base < 2 or num_base & (num_base - 1):
        raise ConfigError("num_base", num_base, "a power of two >= 2")
    seed = config.simulation.seed
    k, N = len(names), num_base
    A, B = sobol.design(N, k, seed)
    AB = sobol.radial_matrices(A, B)  # [k, N, k]
    base_a = np.arange(N, dtype=np.uint32)
    base_b = base_a + np.uint32(N)
    # blocks: A, B, AB_0..AB_{k-1}, then A's parameters with B's shocks
    uniforms = np.concatenate([A, B, AB.reshape(k * N, k), A])
    shocks = np.concatenate([base_a, base_b, np.tile(base_a, k), base_b])
    out = evaluate_rows(config, uniforms, shocks, dtype)
    if not out["finite"].all():
        bad = int((~out["finite"]).sum())
        raise ConfigError("parameters", f"{bad} of {len(uniforms)} design rows",
                          "finite flows on every row (narrow the ranges that give NaN or "
                          "inf; `mcsim run` names the likely parameter)")
    by = grid.index(by_month)
    values = {"repayment_month": out["repayment_month"].astype(np.float64),
              "cumulative_azure_spend": out["cumulative_azure_spend"],
              "repaid_by": (out["repayment_month"] <= by).astype(np.float64)}
    factors = tuple(names) + (SHOCK_FACTOR,)
    indices, means = {}, {}
    for j, (name, f) in enumerate(values.items()):
        blocks = f.reshape(k + 3, N)
        f_A, f_B, f_AB = blocks[0], blocks[1], blocks[2:]
        indices[name] = sobol.estimate(f_A, f_B, f_AB, factors, num_bootstrap=num_bootstrap,
                                       confidence=confidence, seed=seed + j)
        means[name] = float(np.concatenate([f_A, f_B]).mean())
    return SensitivityResult(indices, by_month, N, len(uniforms), seed, means,
                             time.perf_counter() - t0)
