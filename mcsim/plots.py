"""All plotting lives here (the only module that imports matplotlib).

Functions draw on a given ``Axes`` (for notebooks) or write PNG files (for reports).
Money axes are in billions of dollars.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .results import Results

B = 1e9
FLOW_TITLES = {"azure_spend": "Azure spend", "azure_inference_spend": "Azure inference spend",
               "revenue": "revenue", "revenue_share": "revenue share paid"}


def paths_text(results: Results) -> str:
    """"200,000 paths", or for conditioned results "200,000 paths, ESS 41,000"."""
    ess = getattr(results, "ess", None)
    text = f"{results.num_paths:,} paths"
    return text if ess is None else f"{text}, ESS {ess:,.0f}"


def _month_axis(results: Results) -> np.ndarray:
    g = results.grid
    return (g.start + np.arange(g.num_months)) / 12.0


def _year_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fan_chart(results: Results, ax, bands=((5, 95), (25, 75)), color="tab:blue") -> None:
    """Cumulative Azure spend: shaded percentile bands, median and mean (with 95% CI)."""
    pcts = sorted({p for band in bands for p in band} | {50})
    q = results.quantiles("cumulative_azure_spend", pcts)
    x = _month_axis(results)
    for k, (lo, hi) in enumerate(sorted(bands, key=lambda b: b[0])):
        ax.fill_between(x, q.value[:, pcts.index(lo)] / B, q.value[:, pcts.index(hi)] / B,
                        color=color, alpha=0.18 + 0.17 * k, lw=0,
                        label=f"{lo:g}-{hi:g}% band")
    med = pcts.index(50)
    ax.plot(x, q.value[:, med] / B, color=color, lw=2, label="median")
    mean, se = results.mean("cumulative_azure_spend")
    ax.plot(x, mean / B, color="black", lw=1.2, ls="--", label="mean")
    ax.fill_between(x, (mean - 1.96 * se) / B, (mean + 1.96 * se) / B, color="black",
                    alpha=0.15, lw=0)
    # heavy right tails: the mean may sit above the widest band; keep the bands readable
    top = np.nanmax(q.value[:, -1] / B)
    if np.isfinite(top) and top > 0:
        ax.set_ylim(0, 1.08 * top)
    _year_ticks(ax)
    ax.set_xlabel("year")
    ax.set_ylabel("cumulative Azure spend ($B, nominal)")
    ax.set_title(f"Cumulative Azure spend since {results.grid.label(0)} "
                 f"({paths_text(results)})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def annual_chart(results: Results, ax, flow: str = "azure_spend", color="tab:orange") -> None:
    """One calendar-year flow: median, 25-75% and 5-95% ranges, and the mean."""
    q = results.quantiles(flow, (5, 25, 50, 75, 95))
    mean, _ = results.mean(flow)
    labels = results.grid.year_labels()
    x = np.arange(len(labels))
    ax.vlines(x, q.value[:, 0] / B, q.value[:, 4] / B, color=color, lw=1.5, alpha=0.6,
              label="5-95%")
    ax.vlines(x, q.value[:, 1] / B, q.value[:, 3] / B, color=color, lw=6, alpha=0.8,
              label="25-75%")
    ax.plot(x, q.value[:, 2] / B, "o", color="black", ms=4, label="median")
    ax.plot(x, mean / B, "x", color="tab:red", ms=5, label="mean")
    ax.set_xticks(x, [lab.replace(" (", "\n(") for lab in labels], fontsize=7, rotation=90)
    title = FLOW_TITLES.get(flow, flow.replace("_", " "))
    ax.set_ylabel(f"{title} ($B per year, nominal)")
    ax.set_yscale("log")
    ax.set_title(f"{title[0].upper() + title[1:]} per calendar year "
                 "(partial years are partial sums)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


#: first-passage months: Results attribute, line label, title
EVENT_PLOTS = {
    "repayment": ("repayment", "repaid by month",
                  "Microsoft repaid (recouped sum reaches the investment)"),
    "credit": ("credit_exhaustion", "credits exhausted by month", "Azure credits exhausted"),
    "cap_reached": ("cap_reached", "cap reached by month", "Revenue-share cap reached"),
    "commitment_met": ("commitment_met", "commitment met by month",
                       "Azure commitment met by spend"),
}


def event_cdf(results: Results, ax, which: str = "repayment", color="tab:green") -> None:
    """P(event by month) with its 95% band, and the mass not reached by the horizon
    (``which``: a key of :data:`EVENT_PLOTS`)."""
    attr, label, title = EVENT_PLOTS[which]
    dist = getattr(results, attr)
    x = _month_axis(results)
    _probability_step(ax, x, dist.cdf, dist.cdf_se, color, alpha=0.25, label=label)
    top = dist.cdf[-1] if len(dist.cdf) else 0.0
    end = x[-1] + 1 / 12
    ax.bar(end + 0.4, dist.censored, bottom=top, width=0.6, color="tab:gray",
           label=f"not by the horizon: {dist.censored:.1%}")
    _probability_axes(ax, f"{title}: P(by month), {results.num_paths:,} paths", "upper left")


def survival_curve(results: Results, ax, which: str = "repayment", color="tab:purple",
                   label: str | None = None) -> None:
    """P(event not yet by month): 1 - CDF, with its 95% band (repayment by default)."""
    dist = results.repayment if which == "repayment" else results.credit_exhaustion
    _probability_step(ax, _month_axis(results), 1.0 - dist.cdf, dist.cdf_se, color, alpha=0.2,
                      label=label or
                      f"P(not {'repaid' if which == 'repayment' else 'exhausted'} yet)",
                      band_label="95% band")
    title = "Microsoft not yet repaid" if which == "repayment" else "Credits not yet exhausted"
    _probability_axes(ax, f"{title}, {paths_text(results)}", "upper right")


def prior_vs_conditioned_fan(prior: Results, conditioned: Results, ax,
                              band=(5, 95)) -> None:
    """Cumulative Azure spend: the prior's and the conditioned band and median, overlaid."""
    x = _month_axis(prior)
    lo, hi = band
    top = 0.0
    for res, color, name in ((prior, "tab:blue", "prior"),
                             (conditioned, "tab:red", "conditioned")):
        q = res.quantiles("cumulative_azure_spend", (lo, 50, hi))
        ax.fill_between(x, q.value[:, 0] / B, q.value[:, 2] / B, color=color, alpha=0.18,
                        lw=0, label=f"{name}: {lo:g}-{hi:g}% band")
        ax.plot(x, q.value[:, 1] / B, color=color, lw=2, label=f"{name}: median")
        top = max(top, float(np.nanmax(q.value[:, 2] / B)))
    if np.isfinite(top) and top > 0:
        ax.set_ylim(0, 1.08 * top)
    _year_ticks(ax)
    ax.set_xlabel("year")
    ax.set_ylabel("cumulative Azure spend ($B, nominal)")
    ax.set_title(f"Prior vs conditioned on the observations ({paths_text(conditioned)})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def prior_vs_conditioned_survival(prior: Results, conditioned: Results, ax) -> None:
    """P(Microsoft not yet repaid by month), prior and conditioned, with 95% bands."""
    survival_curve(prior, ax, color="tab:blue", label="prior")
    survival_curve(conditioned, ax, color="tab:red", label="conditioned")
    ax.set_title(f"Microsoft not yet repaid: prior vs conditioned ({paths_text(conditioned)})")


def tornado(result, ax, output: str = "repayment_month", top: int = 12) -> None:
    """Sobol indices of one output as horizontal bars, largest total index on top: total
    (pale) and first order (dark), each with its bootstrap interval."""
    idx = result.indices[output]
    order = np.argsort(-np.nan_to_num(idx.total, nan=-np.inf))[:top][::-1]
    y = np.arange(len(order))
    ax.barh(y, idx.total[order], height=0.8, color="tab:blue", alpha=0.35,
            label="total order")
    ax.barh(y, idx.first[order], height=0.45, color="tab:blue", label="first order")
    for lo, hi, val, dy in ((idx.total_low, idx.total_high, idx.total, 0.0),
                            (idx.first_low, idx.first_high, idx.first, 0.0)):
        ax.errorbar(val[order], y + dy, xerr=np.abs(np.stack([val[order] - lo[order],
                                                              hi[order] - val[order]])),
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_yticks(y, [idx.names[i] for i in order], fontsize=8)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_xlabel(f"Sobol index ({idx.confidence:.0%} bootstrap intervals)")
    title = {"repayment_month": "repayment month",
             "cumulative_azure_spend": "cumulative Azure spend at the horizon",
             "repaid_by": f"event \"repaid by {result.by_month}\""}.get(output, output)
    ax.set_title(f"What drives the {title} (N = {result.num_base:,})")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize=8)


def write_tornado(result, path: Path) -> Path:
    """Three tornado panels, one per sensitivity output, in one PNG."""
    outputs = list(result.indices)
    fig = Figure(figsize=(8, 4.2 * len(outputs)), layout="constrained")
    for k, output in enumerate(outputs):
        tornado(result, fig.add_subplot(len(outputs), 1, k + 1), output)
    fig.savefig(path, dpi=110)
    return path


def _probability_step(ax, x, p, se, color, *, alpha: float, label: str,
                      band_label: str | None = None) -> None:
    """A probability by month as a step line with its 95% band, clipped to [0, 1]."""
    ax.step(x, p, where="post", color=color, lw=2, label=label)
    ax.fill_between(x, np.clip(p - 1.96 * se, 0, 1), np.clip(p + 1.96 * se, 0, 1),
                    step="post", color=color, alpha=alpha, lw=0, label=band_label)


def _probability_axes(ax, title: str, legend_loc: str) -> None:
    ax.set_ylim(0, 1.02)
    _year_ticks(ax)
    ax.set_xlabel("year")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)


def new_axes(figsize=(8, 4.5)):
    """A fresh Axes for the Results.plot_* methods when none is given (pyplot's current
    backend: inline in a notebook)."""
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def write_plots(results: Results, out: Path) -> list[Path]:
    """The report's PNGs: fan chart, annual Azure spend, repayment and credit CDFs."""
    files = []
    deal = results.config.deal
    extra = []
    if any(c is not None for c in deal.term_values("revenue_share_cap")):
        extra.append(("cap_reached_cdf.png",
                      lambda ax: event_cdf(results, ax, "cap_reached", "tab:brown")))
    if deal.azure_commitment is not None:
        extra.append(("commitment_met_cdf.png",
                      lambda ax: event_cdf(results, ax, "commitment_met", "tab:olive")))
    for name, draw in (("fan_chart.png", lambda ax: fan_chart(results, ax)),
                       ("annual_azure_spend.png", lambda ax: annual_chart(results, ax)),
                       ("repayment_cdf.png", lambda ax: event_cdf(results, ax)),
                       ("credit_exhaustion_cdf.png",
                        lambda ax: event_cdf(results, ax, "credit", "tab:purple")),
                       *extra):
        # a bare Figure (no pyplot): the report's files never touch the user's backend
        fig = Figure(figsize=(8, 4.5), layout="constrained")
        draw(fig.add_subplot())
        fig.savefig(out / name, dpi=110, metadata=png_metadata(results))
        files.append(out / name)
    if results.conditioned is not None:
        cond = results.conditioned
        for name, draw in (("fan_chart_conditioned.png",
                            lambda ax: prior_vs_conditioned_fan(results, cond, ax)),
                           ("repayment_survival_conditioned.png",
                            lambda ax: prior_vs_conditioned_survival(results, cond, ax))):
            fig = Figure(figsize=(8, 4.5), layout="constrained")
            draw(fig.add_subplot())
            fig.savefig(out / name, dpi=110, metadata=png_metadata(results))
            files.append(out / name)
    return files


def png_metadata(results: Results) -> dict[str, str]:
    """Provenance in every PNG's text chunks: enough to find the run that drew it."""
    import hashlib

    from ._version import __version__

    info = results.info
    return {"Software": f"mcsim {__version__} (JAX {info.jax_version})",
            "Description": f"{results.config.source_path} sha256 "
                           f"{hashlib.sha256(results.config.source_text.encode()).hexdigest()}"
                           f" seed {info.seed} paths {info.paths} dtype {info.dtype} "
                           f"device {info.device}"}
