"""A sweep's files (:func:`write_sweep`): sweep.csv (:func:`sweep_table`, one row per point),
sweep.png (:func:`plot_sweep`) and every point's report (``point-NN/``). The points are run
by :func:`mcsim.sweep.run_sweep`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_report
from .outdir import output_directory

if TYPE_CHECKING:
    from ..results import Results

#: what :func:`mcsim.sweep.run_sweep` returns: (point, Results) in grid order
Runs = Sequence[tuple[Mapping[str, Any], "Results"]]


def sweep_table(runs: Runs) -> list[dict[str, Any]]:
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


def write_sweep(runs: Runs, out: str | Path, plots: bool = True, force: bool = False) -> Path:
    """sweep.csv, sweep.png and every point's report (point-NN/) under ``out``, atomically."""
    import csv

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


def plot_sweep(runs: Runs, path: Path) -> Path:
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
