"""Paired differences of two configs on common random numbers.

Two configs that share a seed draw the same parameter uniforms and the same monthly shocks
for the same path index (:mod:`mcsim.rng`: streams keyed by (seed, path)). Running both on
the SAME path indices and differencing path by path removes the noise they share: the
error of the mean difference is ``sd(diff_i) / sqrt(n)`` (paired), usually far below the
independent-runs error ``sqrt(se_a^2 + se_b^2)`` (unpaired), and exactly 0 when the two
configs are the same.

:func:`paired_difference` runs both configs' kernels (:func:`mcsim.engine.build_kernel`)
on chunks of path indices ``0 .. paths-1`` in one jitted call per chunk and accumulates,
for each headline statistic (:data:`STATISTICS`), the count, mean and sum of squared
deviations of config A's value, config B's value and their per-path difference.

Precision: every accumulation is float64 in a fixed order, whatever the kernel's dtype.
Within a chunk, the device computes the chunk's mean and then the sum of squared
deviations from it (two passes, float64 reductions of one compiled program: the same
order on every call); the host merges the chunks in path order with the pairwise
(Chan et al.) update of count, mean and M2. The results are therefore a pure function of
the configs, ``paths`` and ``chunk``, and a difference that is 0 on every path gives a mean
and a standard error of exactly 0.

A path whose statistics are not finite under either config is left out of both (counted
in ``nonfinite_paths``). Configs with ``[observations]`` are compared on their prior
paths: a conditioned comparison compares report directories (``mcsim compare``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .config import Config, ConfigError
from .layout import HORIZON_TOTALS, StatLayout

#: The statistics compared, in order: cumulative Azure spend at the horizon ($), each
#: horizon total ($), the repayment month (months from the start; the month count T where
#: not repaid by the horizon: censored at T) and the indicator of repaid by the horizon.
STATISTICS = ("cumulative_azure_spend", *HORIZON_TOTALS, "repayment_month",
              "repaid_by_horizon")
UNITS = {**{s: "$" for s in ("cumulative_azure_spend", *HORIZON_TOTALS)},
         "repayment_month": "months", "repaid_by_horizon": "probability"}


@dataclass(frozen=True)
class PairedDifference:
    """B minus A on common paths: per statistic (:data:`STATISTICS`), each config's mean and
    standard error, the mean difference, its paired standard error ``sd(diff)/sqrt(n)`` and
    the unpaired ``sqrt(se_a^2 + se_b^2)`` that independent runs would have."""

    statistics: tuple[str, ...]
    mean_a: np.ndarray
    se_a: np.ndarray
    mean_b: np.ndarray
    se_b: np.ndarray
    difference: np.ndarray
    se_paired: np.ndarray
    paths: int               # paths used (finite under both configs)
    nonfinite_paths: int     # left out: not finite under one config or both
    horizon: str             # the grid's last month

    @property
    def se_unpaired(self) -> np.ndarray:
        return np.hypot(self.se_a, self.se_b)

    def to_frame(self):
        """A pandas DataFrame, index ``statistic``; columns mean_a, se_a, mean_b, se_b,
        difference, se_paired, se_unpaired."""
        import pandas as pd

        frame = pd.DataFrame({"mean_a": self.mean_a, "se_a": self.se_a,
                              "mean_b": self.mean_b, "se_b": self.se_b,
                              "difference": self.difference, "se_paired": self.se_paired,
                              "se_unpaired": self.se_unpaired},
                             index=pd.Index(list(self.statistics), name="statistic"))
        frame.attrs.update(paths=self.paths, nonfinite_paths=self.nonfinite_paths,
                           horizon=self.horizon)
        return frame


def check_pairable(config_a: Config, config_b: Config, paths: int | None = None) -> int:
    """The number of paths both run (``paths``, else the configs' common
    ``simulation.paths``); ConfigError naming the first key whose values differ where the
    runs cannot share their paths: ``simulation.seed``, ``simulation.paths``,
    ``simulation.start``, ``simulation.horizon``, or ``simulation.variance_reduction`` not
    "none" (antithetic pairs and Sobol points change which path gets which draws)."""
    sa, sb = config_a.simulation, config_b.simulation
    keys = ("seed", "start", "horizon") + (("paths",) if paths is None else ())
    for key in keys:
        if getattr(sa, key) != getattr(sb, key):
            raise ConfigError(f"simulation.{key}", getattr(sb, key),
                              f"{getattr(sa, key)!r}, as in the first config: a paired "
                              "difference runs both configs on the same paths")
    for s in (sa, sb):
        if s.variance_reduction != "none":
            raise ConfigError("simulation.variance_reduction", s.variance_reduction,
                              '"none" for a paired difference (both configs on the same '
                              "independent paths)")
    n = sa.paths if paths is None else paths
    if not (isinstance(n, int | np.integer) and 1 <= n < 2**32):
        raise ConfigError("paths", n, "an integer in [1, 2^32)")
    return int(n)


@functools.lru_cache(maxsize=16)
def _chunk_function(spec_a, spec_b, chunk: int):
    """jit: (inputs_a, inputs_b, first path, valid count) -> per chunk, the number of valid
    paths finite under both kernel specs, the number of non-finite ones, and for A, B and
    B - A the [3, K] mean and M2 (sum of squared deviations) over the finite ones. Cached
    on the (hashable) specs: a new seed or deal term reuses the compiled call."""
    import jax
    import jax.numpy as jnp

    from .engine.kernel import build_kernel

    T = spec_a.grid.num_months
    layout = StatLayout(spec_a.grid)
    h = layout.rows("horizon")
    rows = np.array([T - 1, *range(h.start, h.stop)])
    kernels = [build_kernel(spec) for spec in (spec_a, spec_b)]

    def values(kernel, inputs, paths):
        out = kernel(inputs, paths)
        month = out.final.repayment_month
        return jnp.concatenate([out.stats[rows].astype(jnp.float64),
                                month.astype(jnp.float64)[None],
                                (month < T).astype(jnp.float64)[None]])  # [K, n]

    @jax.jit
    def run(inputs_a, inputs_b, start, num_valid):
        local = jnp.arange(chunk, dtype=jnp.uint32)
        paths = start + local
        a = values(kernels[0], inputs_a, paths)
        b = values(kernels[1], inputs_b, paths)
        x = jnp.stack([a, b, b - a])  # [3, K, n]
        finite = jnp.all(jnp.isfinite(a), axis=0) & jnp.all(jnp.isfinite(b), axis=0)
        valid = local < num_valid
        ok = valid & finite
        w = ok.astype(jnp.float64)
        n = w.sum()
        xs = jnp.where(ok, x, 0.0)
        mean = xs.sum(axis=-1) / jnp.maximum(n, 1.0)
        dev = jnp.where(ok, x - mean[..., None], 0.0)
        m2 = (dev * dev).sum(axis=-1)
        return n, (valid & ~finite).sum(), mean, m2

    return run


def paired_difference(config_a: Config, config_b: Config, *, paths: int | None = None,
                      chunk: int = 8192, dtype: str = "float32") -> PairedDifference:
    """B minus A for every statistic of :data:`STATISTICS`, both configs run on the same
    path indices ``0 .. paths-1`` (common random numbers: same seed, so the same parameter
    uniforms and shocks per path). ``paths`` defaults to the configs' common
    ``simulation.paths``. See the module docstring for the precision."""
    import jax
    import jax.numpy as jnp

    from .engine.kernel import KernelSpec, kernel_inputs

    n_total = check_pairable(config_a, config_b, paths)
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError("chunk", chunk, "a positive integer")
    if dtype not in ("float32", "float64"):
        raise ConfigError("dtype", dtype, '"float32" or "float64"')
    # a small run takes one chunk, of a power of two (fewer distinct compiled shapes)
    chunk = min(chunk, 1 << (n_total - 1).bit_length())
    run = _chunk_function(KernelSpec.for_config(config_a, dtype),
                          KernelSpec.for_config(config_b, dtype), chunk)
    inputs_a, inputs_b = kernel_inputs(config_a), kernel_inputs(config_b)
    K = len(STATISTICS)
    count, mean, m2, bad = 0.0, np.zeros((3, K)), np.zeros((3, K)), 0
    for start in range(0, n_total, chunk):
        n_c, bad_c, mean_c, m2_c = jax.device_get(
            run(inputs_a, inputs_b, jnp.uint32(start), jnp.uint32(min(chunk, n_total - start))))
        n_c, bad = float(n_c), bad + int(bad_c)
        if n_c == 0:
            continue
        # Chan et al.'s pairwise merge, chunks in path order (float64)
        total = count + n_c
        delta = np.asarray(mean_c, np.float64) - mean
        mean = mean + delta * (n_c / total)
        m2 = m2 + np.asarray(m2_c, np.float64) + delta * delta * (count * n_c / total)
        count = total
    if count < 2:
        raise ConfigError("paths", n_total, "at least 2 paths finite under both configs")
    se = np.sqrt(m2 / (count - 1) / count)
    return PairedDifference(STATISTICS, mean[0], se[0], mean[1], se[1], mean[2], se[2],
                            int(count), bad, config_a.grid.label(config_a.grid.num_months - 1))


def paired_text(result: PairedDifference, names: tuple[str, str] = ("A", "B")) -> str:
    """The terminal table of a paired difference, "±" labelled as 1.96 standard errors."""
    from .report.format import money_text

    Z = 1.959964

    def fmt(value: float, unit: str) -> str:
        if not math.isfinite(value):
            return "n/a"
        if unit == "$":
            return money_text(value)
        return f"{value:.2f}" if unit == "months" else f"{value:.4f}"

    a, b = names
    lines = [f"paired difference {b} - {a} on {result.paths:,} common paths (same seed: "
             f"common random numbers); horizon {result.horizon}",
             "± = 1.96 × SE, 95%; paired SE = sd of the per-path differences / sqrt(paths); "
             "unpaired SE = sqrt(SE_a² + SE_b²), as if the runs were independent"]
    if result.nonfinite_paths:
        lines.append(f"({result.nonfinite_paths:,} paths not finite under one config left "
                     "out of both)")
    for k, stat in enumerate(result.statistics):
        unit = UNITS[stat]
        label = {"repayment_month": "repayment month (months from start; not repaid = "
                                    "month count)",
                 "repaid_by_horizon": f"P(repaid by {result.horizon})",
                 "cumulative_azure_spend": f"cumulative Azure spend by {result.horizon}"
                 }.get(stat, f"mean {stat.replace('_', ' ')}")
        lines.append(label)
        lines.append(f"  {a}: {fmt(result.mean_a[k], unit)} ± "
                     f"{fmt(Z * result.se_a[k], unit)}")
        lines.append(f"  {b}: {fmt(result.mean_b[k], unit)} ± "
                     f"{fmt(Z * result.se_b[k], unit)}")
        d, sp, su = result.difference[k], result.se_paired[k], result.se_unpaired[k]
        lines.append(f"  {b} - {a}: {fmt(d, unit)} ± {fmt(Z * sp, unit)} paired "
                     f"(± {fmt(Z * su, unit)} unpaired)")
    return "\n".join(lines)
