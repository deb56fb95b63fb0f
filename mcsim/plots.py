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


def _name_text(name: str) -> str:
    """A parameter's or observation's name for an axis: ``bias:wau`` -> ``bias of wau``."""
    return f"bias of {name[5:]}" if name.startswith("bias:") else name


def plot_parameter_shift(posterior_rows, ax=None, top: int = 15):
    """What the observations did to each parameter: the posterior mean's shift in prior
    sds (bars, with the 95% Monte Carlo error of the runs' spread) and the posterior sd
    over the prior sd (diamonds, in a narrow panel at the right; 1 = not narrowed), for
    the ``top`` parameters shifted most, largest on top. ``posterior_rows``: the rows of
    :func:`mcsim.posterior.posterior_table` (summary.json's ``posterior_parameters``).
    Returns ``ax`` (the shift panel; the sd ratio's is ``ax.sd_ratio_axis``)."""
    ax = ax if ax is not None else new_axes((8, 1.5 + 0.3 * min(top, len(posterior_rows))))
    rows = [r for r in posterior_rows if _finite(r.get("shift_in_prior_sd"))]
    rows = sorted(rows, key=lambda r: -abs(r["shift_in_prior_sd"]))[:top][::-1]
    y = np.arange(len(rows))
    shift = np.array([r["shift_in_prior_sd"] for r in rows], dtype=float)
    err = np.array([1.96 * r["posterior_mean_se"] / r["prior_sd"]
                    if _finite(r.get("posterior_mean_se")) and r.get("prior_sd") else np.nan
                    for r in rows], dtype=float)
    colors = np.where(shift >= 0, "tab:red", "tab:blue")
    ax.barh(y, shift, height=0.6, color=colors, alpha=0.75,
            xerr=np.where(np.isfinite(err), err, 0.0),
            error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2})
    ax.axvline(0.0, color="black", lw=0.7)
    ax.set_yticks(y, [_name_text(r["parameter"]) for r in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("posterior mean - prior mean, in prior sds\n(bars; whiskers: 95% Monte "
                  "Carlo error)", fontsize=9)
    lim = max(1.0, float(np.nanmax(np.abs(shift) + np.nan_to_num(err))) * 1.1) \
        if len(rows) else 1.0
    ax.set_xlim(-lim, lim)
    ax.grid(alpha=0.3, axis="x")
    ratio = np.array([r["sd_ratio"] if _finite(r.get("sd_ratio")) else np.nan for r in rows],
                     dtype=float)
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    # the sd ratio in a narrow panel of its own, beside the bars (same rows)
    side = make_axes_locatable(ax).append_axes("right", size="28%", pad=0.15, sharey=ax)
    side.plot(ratio, y, "D", color="black", ms=4)
    side.axvline(1.0, color="black", lw=0.8, ls=":")
    right = max(1.15, float(np.nanmax(ratio)) * 1.08) if np.isfinite(ratio).any() else 1.15
    side.set_xlim(0.0, right)
    # no tick at 0: its label would run into the shift panel's last one
    side.set_xticks([t for t in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0) if t <= right][:4])
    side.set_xlabel("posterior sd / prior sd\n(dotted: 1, not narrowed)", fontsize=8)
    side.tick_params(axis="y", left=False, labelleft=False)
    side.tick_params(axis="x", labelsize=8)
    side.grid(alpha=0.3, axis="x")
    ax.sd_ratio_axis = side
    ax.set_title(f"Parameters the observations moved most ({len(rows)} of "
                 f"{len(posterior_rows)}; red: up, blue: down)", fontsize=10)
    return ax


def plot_smc_diagnostics(diag, axes=None):
    """The tempering of every SMC run, one line per run: the temperature (log scale), the
    ESS of each step's incremental weights over the particles (dotted: the ESS the
    tempering keeps), and the pCN acceptance (shaded: the 0.2-0.4 band it is steered
    into), by step. ``diag``: :func:`mcsim.posterior.diagnostics` (summary.json's ``smc``).
    ``axes``: three Axes (default: a new figure's). Returns them."""
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
    ax_t, ax_e, ax_a = axes
    n = diag["particles"]
    colors = [f"C{k % 10}" for k in range(len(diag["runs_detail"]))]
    for run, color in zip(diag["runs_detail"], colors, strict=True):
        steps = np.arange(1, run["steps"] + 1)
        label = f"run {run['run'] + 1}"
        ax_t.plot(steps, _floats(run["temperature"]), "o-", color=color, ms=3, label=label)
        ax_e.plot(steps, _floats(run["ess"]) / n, "o-", color=color, ms=3, label=label)
        ax_a.plot(steps, _floats(run["acceptance"]), "o-", color=color, ms=3, label=label)
    first = [t[0] for t in (_floats(r["temperature"]) for r in diag["runs_detail"]) if t.size]
    if first and np.nanmin(first) < 0.05:  # many decades: a log axis, plain labels
        from matplotlib.ticker import FuncFormatter

        ax_t.set_yscale("log")
        # from the decade below the first temperature, so that one is labelled
        ax_t.set_ylim(10.0 ** np.floor(np.log10(np.nanmin(first))), 1.5)
        ax_t.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax_t.set_ylim(0.0, 1.05)
    ax_t.set_title("temperature (1: the posterior)", fontsize=10)
    ax_e.axhline(diag["ess_fraction"], color="black", lw=0.8, ls=":",
                 label=f"kept: {diag['ess_fraction']:g}")
    ax_e.set_ylim(0.0, 1.05)
    ax_e.set_title(f"ESS / particles ({n:,} particles)", fontsize=10)
    ax_a.axhspan(0.2, 0.4, color="tab:green", alpha=0.15, lw=0, label="target 0.2-0.4")
    ax_a.set_ylim(0.0, 1.0)
    ax_a.set_title(f"pCN acceptance ({diag['moves']} moves per step)", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tempering step")
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8, loc="lower right")  # the runs' colours, once
    kept = ax_e.get_lines()[-1]
    ax_e.legend([kept], [kept.get_label()], fontsize=8, loc="lower right")
    band = ax_a.patches[-1]
    ax_a.legend([band], [band.get_label()], fontsize=8, loc="upper right")
    return axes


def plot_predictive(observation_rows, ax=None):
    """The posterior predictive check: for each observation, the model's prior (thin) and
    posterior (thick) 5-95% interval and median and the observed value with its 95% error
    (black), all divided by the value, so observations in any unit share one log axis; an
    observation whose posterior z is 3 or more in size is named in red with its z.
    ``observation_rows``: :func:`mcsim.posterior.observation_table` (summary.json's
    ``posterior_predictive``). Returns ``ax``."""
    ax = ax if ax is not None else new_axes((8, 1.6 + 0.45 * len(observation_rows)))
    rows = list(observation_rows)[::-1]
    y = np.arange(len(rows))

    def ratio(r, key):
        v, x = r["value"], r.get(key)
        if not _finite(x) or not v:
            return np.nan
        q = x / v
        return q if q > 0 else np.nan

    for i, r in enumerate(rows):
        lo, hi = ratio(r, "prior_p5"), ratio(r, "prior_p95")
        ax.plot([lo, hi], [i + 0.12] * 2, color="tab:blue", lw=2, alpha=0.6,
                label="prior 5-95%" if i == 0 else None, solid_capstyle="butt")
        ax.plot(ratio(r, "prior_p50"), i + 0.12, "|", color="tab:blue", ms=9, mew=2)
        lo, hi = ratio(r, "posterior_p5"), ratio(r, "posterior_p95")
        ax.plot([lo, hi], [i - 0.12] * 2, color="tab:red", lw=5, alpha=0.75,
                label="posterior 5-95%" if i == 0 else None, solid_capstyle="butt")
        ax.plot(ratio(r, "posterior_p50"), i - 0.12, "|", color="darkred", ms=11, mew=2,
                label="medians" if i == 0 else None)
        rel = 1.96 * r["sd"] / abs(r["value"]) if r["value"] else np.nan
        ax.errorbar(1.0, i, xerr=[[min(rel, 0.95)], [rel]], fmt="o", color="black", ms=4,
                    elinewidth=1, capsize=3,
                    label="observed +- 1.96 sd" if i == 0 else None)
    labels = []
    for r in rows:
        z = r.get("posterior_z")
        bad = _finite(z) and abs(z) >= 3
        labels.append(_name_text(r["observation"]) + (f"  (z = {z:+.1f})" if bad else ""))
    ax.set_yticks(y, labels, fontsize=8)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        z = r.get("posterior_z")
        if _finite(z) and abs(z) >= 3:
            tick.set_color("tab:red")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.6, ls=":")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ends = [ratio(r, k) for r in rows for k in ("prior_p5", "prior_p95", "posterior_p5",
                                                 "posterior_p95")]
    ends = [e for e in ends if np.isfinite(e)] + [0.9, 1.1]
    _ratio_ticks(ax, min(ends) / 1.12, max(ends) * 1.12)
    ax.set_xlabel("model value / observed value (log scale; 1: the observed value)")
    ax.set_title("Posterior predictive check: each observation vs the model", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    # below the axis label: a legend inside would cover some observation's bars
    from matplotlib.transforms import offset_copy

    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
              frameon=False, bbox_transform=offset_copy(ax.transAxes, ax.figure, y=-34,
                                                        units="points"))
    return ax


#: ratio-axis ticks, finest first: the first level with at most 9 ticks in range is used
RATIO_TICKS = ((0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0),
               (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
               (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0,
                100.0),
               (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4))


def _ratio_ticks(ax, lo: float, hi: float) -> None:
    """A log x axis from ``lo`` to ``hi`` labelled in plain numbers (0.5, 1, 2)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xlim(lo, hi)
    for level in RATIO_TICKS:
        ticks = [t for t in level if lo <= t <= hi]
        if len(ticks) <= 9:
            break
    if len(ticks) >= 2:  # else matplotlib's own log ticks (a span beyond 1e4)
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def _floats(values) -> np.ndarray:
    """A list that may hold nulls (JSON) as floats with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def new_axes(figsize=(8, 4.5)):
    """A fresh Axes for the Results.plot_* methods when none is given (pyplot's current
    backend: inline in a notebook)."""
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def write_plots(results: Results, out: Path, summary: dict | None = None) -> list[Path]:
    """The report's PNGs: fan chart, annual Azure spend, repayment and credit CDFs (and the
    cap and commitment CDFs where the deal has them); with conditioned results, prior vs
    conditioned fan and survival; with an SMC posterior, the parameters' shifts, the SMC
    diagnostics and the posterior predictive check (drawn from ``summary``'s
    ``conditioned`` block when given, else from the results' own tables)."""
    files = []
    deal = results.config.deal
    extra = []
    if any(c is not None for c in deal.term_values("revenue_share_cap")):
        extra.append(("cap_reached_cdf.png",
                      lambda ax: event_cdf(results, ax, "cap_reached", "tab:brown")))
    if deal.azure_commitment is not None:
        extra.append(("commitment_met_cdf.png",
                      lambda ax: event_cdf(results, ax, "commitment_met", "tab:olive")))
    meta = png_metadata(results)

    def save(name: str, draw, figsize=(8, 4.5), panels: int = 1) -> None:
        # a bare Figure (no pyplot): the report's files never touch the user's backend
        fig = Figure(figsize=figsize, layout="constrained")
        draw(fig.add_subplot() if panels == 1 else fig.subplots(1, panels))
        fig.savefig(out / name, dpi=110, metadata=meta)
        files.append(out / name)

    for name, draw in (("fan_chart.png", lambda ax: fan_chart(results, ax)),
                       ("annual_azure_spend.png", lambda ax: annual_chart(results, ax)),
                       ("repayment_cdf.png", lambda ax: event_cdf(results, ax)),
                       ("credit_exhaustion_cdf.png",
                        lambda ax: event_cdf(results, ax, "credit", "tab:purple")),
                       *extra):
        save(name, draw)
    cond = results.conditioned
    if cond is None:
        return files
    save("fan_chart_conditioned.png", lambda ax: prior_vs_conditioned_fan(results, cond, ax))
    save("repayment_survival_conditioned.png",
         lambda ax: prior_vs_conditioned_survival(results, cond, ax))
    if getattr(cond, "posterior", None) is None:
        return files
    block = (summary or {}).get("conditioned") or {}
    if "smc" not in block:  # no summary: the results' own tables
        block = {"smc": cond.smc_diagnostics(),
                 "posterior_parameters": cond.posterior_frame().reset_index()
                 .to_dict("records"),
                 "posterior_predictive": cond.observation_frame().reset_index()
                 .to_dict("records")}
    shown = min(15, len(block["posterior_parameters"]))
    save("parameter_shift.png", lambda ax: plot_parameter_shift(block["posterior_parameters"],
                                                                ax, top=15),
         figsize=(8, 1.8 + 0.3 * shown))
    save("smc_diagnostics.png", lambda axes: plot_smc_diagnostics(block["smc"], axes),
         figsize=(12, 3.8), panels=3)
    save("posterior_predictive.png",
         lambda ax: plot_predictive(block["posterior_predictive"], ax),
         figsize=(8, 1.8 + 0.45 * len(block["posterior_predictive"])))
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
