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

The paths run on every local device through the path runner
(:func:`mcsim.engine.runner.run_paths` with a :class:`~mcsim.engine.runner.TreeSums`
reducer). Precision: each path's values of A, B and B - A, and their squares, are summed in
float64 over the pairwise tree fixed by the path indices that the run's own means use
(:class:`mcsim.accumulators.SumTree`), whatever the kernel's dtype: the means and standard
errors are a pure function of the configs and ``paths``, the same bits for any chunk size
or device count, and a difference that is 0 on every path gives a mean and a standard error
of exactly 0. (Before, chunks were merged with Chan et al.'s update, whose rounding
depended on the chunk size.)

A path whose statistics are not finite under either config is left out of both (counted
in ``nonfinite_paths``). Configs with ``[observations]`` are compared on their prior
paths: a conditioned comparison compares report directories (``mcsim compare``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import Config, ConfigError
from .layout import HORIZON_TOTALS, StatLayout

#: The statistics compared for a version-2 layout, in order: cumulative Azure spend at the
#: horizon ($), each horizon total ($), the repayment month (months from the start; the
#: month count T where not repaid by the horizon: censored at T) and the indicator of
#: repaid by the horizon. A layout with more totals or events compares those too
#: (:func:`paired_statistics`).
STATISTICS = ("cumulative_azure_spend", *HORIZON_TOTALS, "repayment_month",
              "repaid_by_horizon")
#: Months at which the headline asks "P(the event by then)" (MODEL.md version 3, and issue
#: 23's headline): the funding gap by the ends of 2027, 2028 and 2030.
EVENT_DATES = {"funding_gap": ("2027-12", "2028-12", "2030-12")}


def _event_names(event: str) -> tuple[str, str]:
    """(its month's statistic, its by-the-horizon indicator's) for an event."""
    if event == "repayment":
        return "repayment_month", "repaid_by_horizon"
    return f"{event}_month", f"{event}_by_horizon"


def paired_statistics(layout: StatLayout) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    """The statistics a paired difference of runs with ``layout`` compares, and how each is
    read from a path: ("row", r) a statistic row; ("month", e) event e's month (censored
    at T); ("by", e, t) the indicator of event e by month index t (the horizon: T - 1)."""
    T = layout.grid.num_months
    names = ["cumulative_azure_spend"]
    reads: list[tuple] = [("row", T - 1)]
    h = layout.rows("horizon").start
    for k, name in enumerate(layout.horizon_totals):
        names.append(name)
        reads.append(("row", h + k))
    events = [e.name for e in layout.events if e.name == "repayment"] + \
        [e.name for e in layout.events if e.name != "repayment"]
    for e in events:
        index = layout.event_index(e)
        month, by = _event_names(e)
        names += [month, by]
        reads += [("month", index), ("by", index, T - 1)]
        for label in EVENT_DATES.get(e, ()):
            t = layout.grid.index(label)
            if 0 <= t < T - 1:
                names.append(f"{e}_by_{label}")
                reads.append(("by", index, t))
    return tuple(names), tuple(reads)


def unit_of(statistic: str) -> str:
    """"$", "months" or "probability"."""
    if statistic.endswith("_month"):
        return "months"
    if "_by_" in statistic or statistic.endswith("_by_horizon"):
        return "probability"
    return "$"


UNITS = {s: unit_of(s) for s in STATISTICS}


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
    from .model import features

    va, vb = features(config_a).v3, features(config_b).v3
    for mechanism, key in (("funding", "funding"), ("discount", "simulation.discount_rate"),
                           ("equity", "parameters.microsoft_equity_stake")):
        if (mechanism in va) != (mechanism in vb):
            raise ConfigError(key, "given" if mechanism in vb else "absent",
                              f"{'given' if mechanism in va else 'absent'}, as in the first "
                              "config: a paired difference compares the same statistics "
                              "(give it in both, e.g. a stake of 0 for none)")
    n = sa.paths if paths is None else paths
    if not (isinstance(n, int | np.integer) and 1 <= n < 2**32):
        raise ConfigError("paths", n, "an integer in [1, 2^32)")
    return int(n)


@dataclass(frozen=True)
class _PairedValues:
    """[3K, n] float64 per path: A's statistics, B's, and B - A (the device part of the
    paired reduction: static and hashable, so the compiled call is cached on it)."""

    reads: tuple[tuple, ...]  # how each statistic is read (paired_statistics)
    num_months: int

    def one(self, out):
        import jax.numpy as jnp

        values = []
        for read in self.reads:
            if read[0] == "row":
                values.append(out.stats[read[1]].astype(jnp.float64))
            elif read[0] == "month":
                values.append(out.event_months[read[1]].astype(jnp.float64))
            else:  # reached by month index read[2]
                values.append((out.event_months[read[1]] <= read[2]).astype(jnp.float64))
        return jnp.stack(values)

    def __call__(self, outs):
        import jax.numpy as jnp

        a, b = self.one(outs[0]), self.one(outs[1])
        return jnp.concatenate([a, b, b - a])


def paired_difference(config_a: Config, config_b: Config, *, paths: int | None = None,
                      chunk: int | None = None, dtype: str = "float32",
                      progress: bool | None = None) -> PairedDifference:
    """B minus A for every statistic of :data:`STATISTICS`, both configs run on the same
    path indices ``0 .. paths-1`` (common random numbers: same seed, so the same parameter
    uniforms and shocks per path), on every local device. ``paths`` defaults to the
    configs' common ``simulation.paths``; ``chunk``: paths per device per call (the
    results do not depend on it); ``progress`` (default: on a terminal): a line and a
    bar of paths. See the module docstring for the precision."""
    from .engine.kernel import KernelSpec, kernel_inputs
    from .engine.runner import TreeSums, run_paths

    n_total = check_pairable(config_a, config_b, paths)
    if chunk is not None and not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError("chunk", chunk, "a positive integer")
    if dtype not in ("float32", "float64"):
        raise ConfigError("dtype", dtype, '"float32" or "float64"')
    grid = config_a.grid
    layout = StatLayout.of(config_a)
    statistics, reads = paired_statistics(layout)
    values = _PairedValues(reads, grid.num_months)
    K = len(statistics)
    from .engine.progress import say

    # said first: the first call compiles both configs' kernels (seconds, before a bar)
    say(progress, f"paired: A and B on the same {n_total:,} paths (common random numbers)")
    state = run_paths([KernelSpec.for_config(c, dtype) for c in (config_a, config_b)],
                      [kernel_inputs(c) for c in (config_a, config_b)],
                      TreeSums(values, 3 * K), n_total, chunk_size=chunk, progress=progress)
    count, s1, s2 = state["tree"].total()
    if count < 2:
        raise ConfigError("paths", n_total, "at least 2 paths finite under both configs")
    mean = (s1 / count).reshape(3, K)
    # the sum tree's m2 = s2 - s1 mean (as the run's means): exactly 0 for a difference
    # that is 0 on every path
    m2 = np.maximum(s2 - s1 * (s1 / count), 0.0).reshape(3, K)
    se = np.sqrt(m2 / (count - 1) / count)
    return PairedDifference(statistics, mean[0], se[0], mean[1], se[1], mean[2], se[2],
                            int(count), state["bad"], grid.label(grid.num_months - 1))


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
        unit = unit_of(stat)
        label = {"repayment_month": "repayment month (months from start; not repaid = "
                                    "month count)",
                 "repaid_by_horizon": f"P(repaid by {result.horizon})",
                 "cumulative_azure_spend": f"cumulative Azure spend by {result.horizon}"
                 }.get(stat)
        if label is None and stat.endswith("_month"):
            label = f"{stat.replace('_', ' ')} (months from start; never = month count)"
        elif label is None and unit == "probability":
            event, _, when = stat.rpartition("_by_")
            label = f"P({event.replace('_', ' ')} by " \
                f"{result.horizon if when == 'horizon' else when})"
        elif label is None:
            label = f"mean {stat.replace('_', ' ')}"
        lines.append(label)
        lines.append(f"  {a}: {fmt(result.mean_a[k], unit)} ± "
                     f"{fmt(Z * result.se_a[k], unit)}")
        lines.append(f"  {b}: {fmt(result.mean_b[k], unit)} ± "
                     f"{fmt(Z * result.se_b[k], unit)}")
        d, sp, su = result.difference[k], result.se_paired[k], result.se_unpaired[k]
        lines.append(f"  {b} - {a}: {fmt(d, unit)} ± {fmt(Z * sp, unit)} paired "
                     f"(± {fmt(Z * su, unit)} unpaired)")
    return "\n".join(lines)


def write_paired(result: PairedDifference, text: str, out_dir, *, force: bool = False):
    """paired.txt (``text``, the terminal's table) and paired.csv (one row per statistic:
    both means and errors, the difference, its paired and unpaired errors), written
    atomically into ``out_dir`` (:mod:`mcsim.report.outdir`); returns it."""
    from pathlib import Path

    from .report.outdir import output_directory
    from .report.tables import write_frame

    out_dir = Path(out_dir)
    with output_directory(out_dir, force=force) as tmp:
        (tmp / "paired.txt").write_text(text + "\n")
        frame = result.to_frame()
        frame.insert(0, "unit", [unit_of(s) for s in frame.index])
        write_frame(frame, tmp / "paired.csv")
    return out_dir
