"""Sweeps: a grid of overrides, one run per point, one comparison table and plot.

Points that change only traced numbers (deal terms, distribution fields, constants,
observation values) run together: one batched kernel call per chunk of paths computes all
of them (:func:`mcsim.engine.run_batch`), with the same paths and shocks. Points that change
a shape (the horizon, a distribution's kind, the seed or the number of paths) run in
separate groups, one compiled kernel each. ``batch=False`` runs the points one after the
other instead (each then bit-identical to its own ``mcsim run``; batched, a point agrees
with it to float32 rounding, about 1e-9 relative in means: the fused code differs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .api import simulate, with_overrides
from .config import Config, ConfigError


def split_values(text: str) -> list[str]:
    """``"0.1,0.2,{ dist = \\"normal\\", mean = 0, sd = 1 }"`` -> its top-level items: commas
    inside brackets, braces or quotes do not split."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return [item for item in items if item]


def parse_sweep(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["deal.revenue_share=0.1,0.2", ...]`` -> {key: [values]} (TOML literals)."""
    from .api import parse_override

    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not split_values(values):
            raise ConfigError("--set", spec, "TABLE.KEY=V1,V2,... (TOML values)")
        grid[key.strip()] = [parse_override(f"{key}={v}")[1] for v in split_values(values)]
    return grid


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product, first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def run_sweep(config: Config, grid: Mapping[str, list[Any]], *, batch: bool = True,
              dtype: str = "float32", progress: bool | None = None, **simulate_options):
    """Validate every point first (a bad value fails before any run), then run them:
    batched where shapes allow (see the module docstring), else one by one.

    Returns [(point, Results)] in grid order.
    """
    from .api import condition_results
    from .engine import batch_key, max_batch, run_batch

    points = grid_points(grid)
    configs = [with_overrides(config, point) for point in points]
    if not batch or simulate_options.get("target_se"):
        return [(p, simulate(c, dtype=dtype, progress=progress, **simulate_options))
                for p, c in zip(points, configs, strict=True)]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(batch_key(c), []).append(i)
    results: list = [None] * len(points)
    # groups too big for the device's memory run as several batches
    size = max_batch(config.grid, weighted=bool(config.observations))
    batches = [m[k:k + size] for m in groups.values() for k in range(0, len(m), size)]
    for members in batches:
        group = [configs[i] for i in members]
        runs = run_batch(group, dtype=dtype, progress=progress, **simulate_options)
        if group[0].observations:
            conditioned = run_batch(group, dtype=dtype, progress=progress, weighted=True,
                                    **simulate_options)
            runs = [condition_results(r, conditioned=c) for r, c in
                    zip(runs, conditioned, strict=True)]
        for i, r in zip(members, runs, strict=True):
            results[i] = r
    return list(zip(points, results, strict=True))


def sweep_table(runs) -> list[dict[str, Any]]:
    """One row per point: its values, then headline numbers with standard errors."""
    rows = []
    for point, res in runs:
        end = res.grid.label(res.grid.num_months - 1)
        cum = res.quantiles("cumulative_azure_spend", (50,))
        mean, se = res.mean("cumulative_azure_spend")
        rep = res.repayment
        median = rep.quantiles[50]
        row = {k: _text(v) for k, v in point.items()}
        row.update({
            f"median_cumulative_azure_spend_{end}": cum.value[-1, 0],
            "median_ci_low": cum.ci_low[-1, 0], "median_ci_high": cum.ci_high[-1, 0],
            f"mean_cumulative_azure_spend_{end}": mean[-1], "mean_se": se[-1],
            "median_repayment_month": res.month_label(median[0]) or f"after {end}",
            f"p_not_repaid_by_{end}": rep.censored, "p_not_repaid_se": rep.censored_se,
        })
        rows.append(row)
    return rows


def _text(v: Any) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return str(v)


def write_sweep(runs, out: Path, plots: bool = True, force: bool = False) -> Path:
    """sweep.csv, sweep.png and every point's report (point-NN/) under ``out``, atomically."""
    import csv

    from .outdir import output_directory
    from .report import write_report

    out = Path(out)
    with output_directory(out, force=force) as tmp:
        rows = sweep_table(runs)
        with open(tmp / "sweep.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for i, (_, res) in enumerate(runs):
            write_report(res, tmp / f"point-{i:02d}", plots=plots)
        if plots:
            plot_sweep(runs, tmp / "sweep.png")
    return out


def plot_sweep(runs, path: Path) -> Path:
    """P(not repaid by the horizon) and median cumulative Azure spend per point, with
    their 95% intervals."""
    import numpy as np
    from matplotlib.figure import Figure

    # numbers in %g (13e9, not 13000000000.0): the labels must fit under their points
    labels = ["\n".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, float)
                        else f"{k.split('.')[-1]}={_text(v)}" for k, v in point.items())
              for point, _ in runs]
    x = np.arange(len(runs))
    p = np.array([r.repayment.censored for _, r in runs])
    p_se = np.array([r.repayment.censored_se for _, r in runs])
    q = [r.quantiles("cumulative_azure_spend", (50,)) for _, r in runs]
    med = np.array([t.value[-1, 0] for t in q]) / 1e9
    # an open interval end (too few paths, or beyond the histogram) is not drawn
    lo = np.array([t.ci_low[-1, 0] for t in q]) / 1e9
    hi = np.array([t.ci_high[-1, 0] for t in q]) / 1e9
    lo, hi = np.where(np.isfinite(lo), lo, med), np.where(np.isfinite(hi), hi, med)
    fig = Figure(figsize=(max(8, 1.3 * len(runs) + 4), 4.5), layout="constrained")
    ax_p, ax_s = fig.subplots(1, 2)
    ax_p.errorbar(x, p, yerr=1.96 * p_se, fmt="o", capsize=4)
    ax_p.set(ylabel="P(not repaid by the horizon)", title="Microsoft not repaid",
             ylim=(-0.02, 1.02))
    ax_s.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o", capsize=4, color="tab:orange")
    ax_s.set(ylabel="median cumulative Azure spend ($B)", title="Azure spend by the horizon")
    for ax in (ax_p, ax_s):
        ax.set_xticks(x, labels, fontsize=7)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path
