"""Sweeps: a grid of overrides, one run per point, one comparison table and plot.

Every point changes only traced numbers (deal terms, distribution fields, constants, the
seed), so all runs share one compiled kernel: the first compiles, the others only run.
Points that change a shape (the horizon, a distribution's kind) compile once each. Runs go
one after the other; batching several points into one device call is left for later.
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


def run_sweep(config: Config, grid: Mapping[str, list[Any]], **simulate_options):
    """Validate every point first (a bad value fails before any run), then run each.

    Returns [(point, Results)].
    """
    points = grid_points(grid)
    for point in points:
        with_overrides(config, point)
    return [(point, simulate(config, overrides=point, **simulate_options)) for point in points]


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


def write_sweep(runs, out: Path, plots: bool = True) -> Path:
    """sweep.csv, sweep.png and every point's report (point-NN/) under ``out``, atomically."""
    import csv

    from .report import atomic_directory, write_report

    out = Path(out)
    with atomic_directory(out) as tmp:
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

    labels = ["\n".join(f"{k.split('.')[-1]}={_text(v)}" for k, v in point.items())
              for point, _ in runs]
    x = np.arange(len(runs))
    p = np.array([r.repayment.censored for _, r in runs])
    p_se = np.array([r.repayment.censored_se for _, r in runs])
    q = [r.quantiles("cumulative_azure_spend", (50,)) for _, r in runs]
    med = np.array([t.value[-1, 0] for t in q]) / 1e9
    lo = np.array([t.ci_low[-1, 0] for t in q]) / 1e9
    hi = np.array([t.ci_high[-1, 0] for t in q]) / 1e9
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
