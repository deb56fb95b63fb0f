"""Plots of a sensitivity study (:class:`mcsim.sensitivity.SensitivityResult`): the signed
tornado chart, "what drives the top and bottom 10%" and the report's PNGs; and readable
labels, with units, for the model's parameters and the study's outputs.

Each ``plot_*`` draws on the given Axes (or a new one) and returns it; it sets a title only
when the Axes has none, and adds its own artists without touching the others.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from .parameters import PARAMETER_NAMES, UNITS
from .plots import _axes_inches, fit_text

if TYPE_CHECKING:
    from .sensitivity import SensitivityResult

#: the quantities the parameters' names are about (a name is ``STEM``, ``STEM_0``,
#: ``STEM_inf``, ``STEM_halflife``, ...)
_STEMS = {
    "gpu_price": "GPU price", "gpu_price_drift": "GPU price drift",
    "gpu_price_vol": "GPU price volatility", "utilization": "utilization",
    "utilization_mean": "utilization, long-run level",
    "utilization_speed": "utilization mean reversion",
    "utilization_vol": "utilization volatility", "tokens": "tokens served",
    "token_growth": "token growth", "token_vol": "token volatility",
    "tokens_per_gpu_hour": "tokens per GPU-hour", "efficiency_growth": "efficiency growth",
    "users": "weekly active users", "users_cap": "weekly active users, ceiling",
    "users_growth": "user growth", "users_vol": "user volatility",
    "conversion": "paid conversion", "conversion_mean": "paid conversion, long-run level",
    "conversion_speed": "conversion mean reversion",
    "conversion_vol": "conversion volatility", "subscription_arpu": "subscription ARPU",
    "api_revenue_per_mtok": "API revenue per M tokens", "api_price_drift": "API price drift",
    "api_token_share": "API share of tokens", "training_spend": "training spend",
    "training_growth": "training spend growth", "azure_share": "Azure share of compute",
    "other_opex": "other opex", "other_opex_growth": "other opex growth",
    "microsoft_ai_revenue": "Microsoft AI revenue",
    "microsoft_ai_revenue_growth": "Microsoft AI revenue growth",
    "api_markup": "API markup on cost", "api_markup_drift": "API markup drift",
    "training_intensity": "training spend / revenue",
    "training_intensity_drift": "training intensity drift",
    "other_opex_intensity": "other opex / revenue",
    "other_opex_intensity_drift": "other opex intensity drift",
    "azure_gross_margin": "Microsoft's Azure gross margin",
    "cash": "OpenAI's cash", "microsoft_equity_stake": "Microsoft's equity stake",
    "valuation_multiple": "valuation multiple at the horizon",
}
_SUFFIXES = (("_0", ", at start"), ("_inf", ", long run"), ("_halflife", ", half-life"))

#: :data:`mcsim.parameters.UNITS`' descriptions, shortened for an axis
_SHORT_UNITS = {
    "$ per H100-equivalent GPU-hour at start": "$ / H100-hour",
    "$ per million API tokens at start": "$ / M tokens",
    "$ per month at start": "$ / month",
    "$ per paying subscriber per month": "$ / subscriber / month",
    "API price over inference cost per token, at start": "ratio",
    "Azure's long-run share of compute spend": "fraction",
    "Azure's share of compute spend at start": "fraction",
    "Microsoft's gross margin on OpenAI's Azure bill": "fraction",
    "fraction of paid GPU-hours doing useful work, at start": "fraction",
    "fraction of tokens served through the API": "fraction",
    "long-run paid conversion": "subscribers / user",
    "long-run utilization": "fraction",
    "mean reversion per year (of logit)": "logit, 1 / yr",
    "other operating cost per $ of revenue, at start": "$ / $ revenue",
    "paying subscribers per weekly active user at start": "subscribers / user",
    "per sqrt(year)": "log, 1 / √yr",
    "per sqrt(year), of logit": "logit, 1 / √yr",
    "per year, in log": "log rate / yr",
    "per year, in log, at start": "log rate / yr",
    "per year, in log, long run": "log rate / yr",
    "per year, logistic rate": "logistic rate / yr",
    "tokens per GPU-hour at start": "tokens / GPU-hour",
    "tokens served per month at start (ChatGPT and API)": "tokens / month",
    "training spend per $ of revenue, at start": "$ / $ revenue",
    "weekly active users at start": "users",
    "weekly active users, logistic ceiling": "users",
    "years": "years",
    "$ available to OpenAI at the start (funding.cash_0)": "$",
    "fraction of OpenAI that Microsoft owns": "fraction",
    "OpenAI's value at the horizon per $ of its revenue over the run's last 12 months":
        "× trailing revenue",
}

#: the study's money outputs (:func:`mcsim.sensitivity.available_outputs`) in words; their
#: unit is $. An output not named here is shown by its name.
MONEY_OUTPUTS = {
    "cumulative_azure_spend": "cumulative Azure spend at the horizon",
    "cumulative_revenue": "cumulative revenue at the horizon",
    "cumulative_profit": "cumulative profit at the horizon",
    "microsoft_receipts": "Microsoft's receipts (profit and revenue share)",
    "microsoft_net": "Microsoft's receipts less its investment",
    "deepest_cumulative_loss": "OpenAI's deepest cumulative loss",
    "microsoft_economic_return": "Microsoft's economic return",
    "microsoft_economic_net": "Microsoft's economic return less its investment",
    "funding_to_find": "funding still to be found at the horizon",
    "pv_cumulative_azure_spend": "present value of cumulative Azure spend",
    "pv_cumulative_profit": "present value of cumulative profit",
    "pv_microsoft_economic_return": "present value of Microsoft's economic return",
    "pv_microsoft_economic_net": "present value of Microsoft's economic net",
    "microsoft_equity_value": "Microsoft's equity value at the horizon",
    "microsoft_whole_position": "Microsoft's whole position (return + equity)",
    "pv_microsoft_equity_value": "present value of Microsoft's equity",
    "pv_microsoft_whole_position": "present value of Microsoft's whole position",
}
#: an event's outputs in words (:mod:`mcsim.events`): (its month, "by" verb, earlier/later
#: noun)
EVENT_OUTPUTS = {"repayment": ("repayment month", "repaid", "repayment"),
                 "funding_gap": ("funding-gap month (cash runs out)", "out of cash",
                                 "funding gap"),
                 "cap_reached": ("month the revenue-share cap is reached", "at the cap",
                                 "cap"),
                 "commitment_met": ("month the Azure commitment is met", "commitment met",
                                    "commitment met"),
                 "credit_exhaustion": ("month the Azure credits run out", "out of credits",
                                       "credits run out")}


def _output_event(output: str) -> tuple[str | None, str | None]:
    """(event, "month" or "by") of an event's output, else (None, None)."""
    from .events import event_output_names
    from .events import names as event_names

    for event in event_names():
        month, by = event_output_names(event)
        if output in (month, by):
            return event, "month" if output == month else "by"
    return None, None


def output_label(output: str, by_month: str = "the month") -> tuple[str, str]:
    """(what, unit) of a study's output: ``("cumulative Azure spend at the horizon",
    "$")``, ``("funding-gap month (cash runs out)", "months")``, ``("probability of being
    repaid by 2030-12", "probability")``; an unknown name as it is, in $."""
    event, kind = _output_event(output)
    if event is not None:
        month, verb, _ = EVENT_OUTPUTS.get(event, (f"{event} month", f"{event} reached",
                                                   event))
        if kind == "month":
            return month, "months"
        return f"probability of being {verb} by {by_month}", "probability"
    return MONEY_OUTPUTS.get(output, output.replace("_", " ")), "$"


def _describe(name: str) -> str:
    if name in _STEMS:
        return _STEMS[name]
    for suffix, words in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in _STEMS:
            return _STEMS[name[: -len(suffix)]] + words
    return name


def _unit(name: str) -> str:
    unit = UNITS[name]
    return _SHORT_UNITS.get(unit, unit.split(",")[0])


#: parameter name -> readable label with its unit, for every model parameter
PARAMETER_LABELS: dict[str, str] = {n: f"{_describe(n)} ({_unit(n)})"
                                    for n in PARAMETER_NAMES}
PARAMETER_LABELS["monthly_shocks"] = "monthly shocks (all, together)"


def parameter_label(name: str) -> str:
    """A readable label with units: ``gpu_price_drift_inf`` -> ``GPU price drift, long run
    (log rate / yr)``; an unknown name is returned as it is."""
    return PARAMETER_LABELS.get(name, name)


def _new_axes(figsize):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


#: output -> (a higher output in words, a lower one)
_DIRECTION_WORDS = {
    "cumulative_azure_spend": ("more Azure spend", "less Azure spend"),
    "funding_to_find": ("more funding to find", "less funding to find"),
    **{name: ("a larger position for Microsoft", "a smaller position for Microsoft")
       for name in ("microsoft_whole_position", "pv_microsoft_whole_position")}}


def _direction_words(output: str, by_month: str) -> tuple[str, str]:
    """(a higher ``output`` in words, a lower one)."""
    if output in _DIRECTION_WORDS:
        return _DIRECTION_WORDS[output]
    event, kind = _output_event(output)
    if event is not None:
        _, verb, noun = EVENT_OUTPUTS.get(event, (None, f"{event} reached", event))
        if kind == "month":
            return f"later {noun}", f"earlier {noun}"
        return f"likelier {verb} by {by_month}", f"less likely {verb} by {by_month}"
    what, _ = output_label(output)
    return f"higher {what}", f"lower {what}"


def _tail_words(output: str) -> tuple[str, str]:
    """(its highest values in words, its lowest), with ``{pct}`` for the percentage."""
    event, kind = _output_event(output)
    if event is not None and kind == "month":
        month, verb, _ = EVENT_OUTPUTS.get(event, (f"{event} month", f"{event} reached",
                                                   event))
        months = month.split(" (")[0] + "s"
        return (f"latest {{pct}}% of {months} (censored: not {verb} by the horizon)",
                f"earliest {{pct}}% of {months}")
    what, _ = output_label(output)
    return f"highest {{pct}}% of the {what}", f"lowest {{pct}}% of the {what}"


def _legend_on_top(ax, num_rows: int, ncol: int, headroom: float | None = None) -> None:
    """A legend above the rows, inside the Axes, in ``headroom`` rows added for it
    (default: as many as its entries' lines take at the Axes' height, so it covers no
    row on a short Axes either)."""
    lo, hi = ax.get_ylim()
    if headroom is None:
        _, texts = ax.get_legend_handles_labels()
        lines = sum(t.count("\n") + 1 for t in texts) / ncol
        # points: lines at 1.25 em of 7 pt, 0.5 em between entries, the frame's padding
        legend = lines * 7 * 1.25 + len(texts) / ncol * 3.5 + 10
        height = _axes_inches(ax)[1] * 72 * 0.85  # a layout engine takes some
        headroom = legend * num_rows / max(height - legend, 0.3 * height)
    ax.set_ylim(min(lo, -0.6), max(hi, num_rows - 0.4 + headroom))
    # framed in white: a zero line crossing the band would run through its words
    ax.legend(loc="upper center", ncol=ncol, fontsize=7, framealpha=1.0, edgecolor="none")


def _legend_columns(ax) -> int:
    """Two legend columns on a wide Axes, one on a narrow one."""
    return 2 if ax.figure.get_size_inches()[0] * ax.get_position().width > 5.5 else 1


def _output_what(result: SensitivityResult, output: str) -> tuple[str, str]:
    return output_label(output, result.by_month)


def _money_scale(values: np.ndarray) -> tuple[float, str]:
    peak = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 0.0
    for scale, name in ((1e12, "$T"), (1e9, "$B"), (1e6, "$M")):
        if peak >= scale:
            return scale, name
    return 1.0, "$"


def plot_tornado(result: SensitivityResult, ax=None, output: str | None = None,
                 top: int = 12, by: str = "sobol", *, color_up: str = "tab:red",
                 color_down: str = "tab:blue", direction_ax=None):
    """Tornado chart of ``output`` (default: the study's lead output) in two labelled
    panels sharing the rows; returns ``ax``.

    The ``top`` factors, largest first. The left panel (``ax``) draws the measure the rows
    are sorted by: ``by="sobol"``, the total Sobol index ST with its 95% interval and the
    first-order index S1 inside it (darker); ``by="correlation"``, the rank correlation ρ
    (sorted by its size). The right panel (``ax.direction_axis``) draws the direction: the
    change in the output (in its unit: months, $ or probability) from the parameter's
    bottom decile to its top decile, with its 95% error bar, right (``color_up``) when a
    higher value of the parameter raises the output, left (``color_down``) when it lowers
    it. The monthly shocks, which have no direction, get no bar there. (One panel sorted
    by ST but drawing the decile change read as if the bars were the ranking.) The right
    panel is ``direction_ax`` when given (its y axis shared with ``ax``), else one made
    beside ``ax``.
    """
    if by not in ("sobol", "correlation"):
        raise ValueError(f"by={by!r}: expected 'sobol' or 'correlation'")
    output = result._check_output(output)
    idx = result.indices[output]
    direction = result.direction_frame(output)
    names = list(idx.names)
    total = np.asarray(idx.total, dtype=float)
    k = len(names)
    diff, se, rho = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    if direction is not None:
        for i, name in enumerate(names):
            if name in direction.index:
                row = direction.loc[name]
                diff[i] = row["top_minus_bottom_decile"]
                se[i] = row["top_minus_bottom_decile_se"]
                rho[i] = row["rank_correlation"]
    key = total if by == "sobol" else np.abs(rho)
    order = np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")[:top][::-1]
    what, unit = _output_what(result, output)
    scale, unit_text = (_money_scale(diff[order]) if unit == "$" else (1.0, unit))
    ax = ax if ax is not None else _new_axes((10, 1.6 + 0.36 * len(order)))
    side = direction_ax if direction_ax is not None else _split(ax)
    ax.direction_axis = side
    y = np.arange(len(order))
    labels_w = _row_labels(ax, [parameter_label(names[i]) for i in order])
    # each panel's width, for its wrapped texts: a layout engine gives the row labels
    # their room and keeps the panels' 1 : 1.1
    avail = max(_axes_inches(ax)[0] + _axes_inches(side)[0] - labels_w, 2.0)
    left_w, right_w = avail / 2.1, avail * 1.1 / 2.1

    # left: the sorting measure
    if by == "sobol":
        lo = np.asarray(idx.total_low, float)[order]
        hi = np.asarray(idx.total_high, float)[order]
        st = total[order]
        ax.barh(y, st, height=0.7, color="0.7", label="total index ST")
        ax.barh(y, np.asarray(idx.first, float)[order], height=0.35, color="0.3",
                label="first-order index S1")
        ok = np.isfinite(st) & np.isfinite(lo) & np.isfinite(hi)
        ax.errorbar(st[ok], y[ok], xerr=[np.maximum(st - lo, 0)[ok],
                                         np.maximum(hi - st, 0)[ok]],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        right = max(float(np.nanmax(np.where(np.isfinite(hi), hi, st), initial=0.0)), 0.05)
        ax.set_xlim(0.0, right * 1.05)
        ax.set_xlabel(fit_text(ax, f"Sobol index of the {what}\n(sorted by ST; 95% "
                               "intervals)", fontsize=8, inches=left_w), fontsize=8)
    else:
        r = rho[order]
        ax.barh(y, r, height=0.7, color=np.where(np.nan_to_num(r) >= 0, color_up,
                                                  color_down), alpha=0.6,
                label="rank correlation ρ")
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlim(-1.0, 1.0)
        ax.set_xlabel(fit_text(ax, f"rank correlation ρ with the {what}\n(sorted by |ρ|)",
                               fontsize=8, inches=left_w), fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    ax.tick_params(axis="x", labelsize=8)

    # right: the direction, in the output's unit
    d, e = diff[order] / scale, 1.96 * se[order] / scale
    up = np.nan_to_num(d) >= 0
    more, less = _direction_words(output, result.by_month)
    side.barh(y[up & np.isfinite(d)], d[up & np.isfinite(d)], height=0.7, color=color_up,
              alpha=0.8, label=f"higher parameter → {more}")
    side.barh(y[~up], d[~up], height=0.7, color=color_down, alpha=0.8,
              label=f"higher parameter → {less}")
    ok = np.isfinite(d) & np.isfinite(e)
    side.errorbar(d[ok], y[ok], xerr=e[ok], fmt="none", ecolor="black", elinewidth=0.8,
                  capsize=2)
    side.axvline(0.0, color="black", lw=0.8)
    for yi in y[~np.isfinite(d)]:  # the monthly shocks: no direction
        side.annotate("no direction", (0.0, yi), xytext=(4, 0), textcoords="offset points",
                      va="center", fontsize=7, color="0.35")
    reach = np.nan_to_num(np.abs(d) + np.nan_to_num(e)).max(initial=0.0)
    side.set_xlim(-1.1 * max(reach, 1e-12), 1.1 * max(reach, 1e-12))
    side.set_xlabel(fit_text(side, f"{what}: parameter's top decile − bottom decile\n("
                             f"{unit_text}; 95% error bars)", fontsize=8, inches=right_w),
                    fontsize=8)
    side.tick_params(axis="y", left=False, labelleft=False)
    side.tick_params(axis="x", labelsize=8)
    side.grid(alpha=0.3, axis="x")
    if not ax.get_title():
        order_text = "total Sobol index ST" if by == "sobol" else "|rank correlation ρ|"
        width = left_w + right_w  # over both panels
        text = (f"What drives the {what} (N = {result.num_base:,} base rows)\nleft: the "
                f"{order_text}, by which the rows are sorted; right: the direction")
        ax.set_title("\n".join(textwrap.fill(t, max(20, int(width * 72 / 5.5)))
                               for t in text.split("\n")), fontsize=10, loc="left")
    # each panel's legend in a band above its rows (the bars fill every row)
    for panel, width in ((ax, left_w), (side, right_w)):  # entries wrapped to the panel
        for handle, text in zip(*panel.get_legend_handles_labels(), strict=True):
            handle.set_label(fit_text(panel, text, fontsize=7, inches=width))
        _legend_on_top(panel, len(order), 1)
    return ax


def _row_labels(ax, labels: list[str], legend_rows: float = 1.5) -> float:
    """The rows' parameter labels as y ticks, as large as the rows allow: two lines (the
    unit on the second) at 8 pt where a row has room for them, else one line, at 8 pt or
    smaller (down to 5 pt), so labels of neighbouring rows never overlap on a small
    figure. ``legend_rows``: the rows' worth of height the legend band takes."""
    height = _axes_inches(ax)[1] * 72 * 0.85  # points; a layout engine takes some
    row = height / (len(labels) + legend_rows)
    if row >= 2 * 8 * 1.3:
        texts, size = [_wrapped(t) for t in labels], 8.0
    else:
        texts, size = labels, max(5.0, min(8.0, row / 1.3))
    ax.set_yticks(np.arange(len(labels)), texts, fontsize=size)
    # their width in inches (0.55 em a character), for what is left of the panel
    return max(len(line) for t in texts for line in t.split("\n")) * 0.5 * size / 72 + 0.1


def _split(ax):
    """A right panel beside ``ax``, sharing its rows: ``ax``'s place in its grid split in
    two (so a layout engine places both, labels included), or, for an Axes not in a grid,
    a panel appended to it."""
    spec = ax.get_subplotspec()
    if spec is None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        return make_axes_locatable(ax).append_axes("right", size="110%", pad=0.15,
                                                   sharey=ax)
    grid = spec.subgridspec(1, 2, width_ratios=(1.0, 1.1), wspace=0.05)
    ax.set_subplotspec(grid[0])
    return ax.figure.add_subplot(grid[1], sharey=ax)


def _wrapped(label: str, width: int = 34) -> str:
    """A long parameter label on two lines, its unit on the second ("paid conversion,
    long-run level (subscribers / user)" was cut at the figure's left edge)."""
    if len(label) <= width or " (" not in label:
        return label
    name, _, unit = label.rpartition(" (")
    return f"{name}\n({unit}"


def plot_drivers(result: SensitivityResult, ax=None, output: str | None = None,
                 fraction: float = 0.1, top: int = 12, *, color_top: str = "tab:red",
                 color_bottom: str = "tab:blue"):
    """What drives the highest and the lowest ``fraction`` of ``output`` (default: the
    study's lead output): for the ``top``
    parameters that move most, each one's mean percentile on those rows (0-100, its rank in
    its prior; 50 = no information) as a bar from 50, with its 95% error bar. Returns the
    Axes (a new one when ``ax`` is None)."""
    output = result._check_output(output)
    frame = result.drivers_frame(output, fraction)
    what, _ = _output_what(result, output)
    t, b = frame.loc["top"], frame.loc["bottom"]
    strength = np.maximum(np.abs(t["mean_percentile"] - 50),
                          np.abs(b["mean_percentile"].reindex(t.index) - 50))
    names = list(strength.sort_values(ascending=False, kind="stable").index[:top])[::-1]
    ax = ax if ax is not None else _new_axes((9, 1.4 + 0.42 * len(names)))
    y = np.arange(len(names))
    pct = fraction * 100
    share = {g: frame.loc[g]["share"].iloc[0] for g in ("top", "bottom")}
    for g, dy, color in (("top", 0.2, color_top), ("bottom", -0.2, color_bottom)):
        f = frame.loc[g].reindex(names)
        m = f["mean_percentile"].to_numpy()
        e = 1.96 * f["mean_percentile_se"].to_numpy()
        words = _tail_words(output)
        text = words[0 if g == "top" else 1].format(pct=f"{pct:.0f}")
        extra = f"; with ties {share[g]:.0%} of rows" if share[g] > fraction * 1.05 else ""
        ax.barh(y + dy, m - 50, left=50, height=0.38, color=color, alpha=0.8,
                label=f"{text}{extra}")
        ax.errorbar(m, y + dy, xerr=e, fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=2)
    ax.axvline(50, color="black", lw=0.8)
    labels_w = _row_labels(ax, [parameter_label(n) for n in names], legend_rows=2.5)
    width = max(_axes_inches(ax)[0] - labels_w, 1.0)  # the panel, less its row labels
    ax.set_xlabel(fit_text(ax, "mean percentile of the parameter in its prior on those "
                               "rows\n(50 = no information; 95% error bars)", fontsize=8,
                           inches=width), fontsize=8)
    if not ax.get_title():
        ax.set_title(fit_text(ax, f"What drives the highest and lowest {pct:.0f}% of the "
                              f"{what}\n(N = {result.num_base:,} base rows)", fontsize=10,
                              inches=width), fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    # the legend's two long entries wrapped to the panel, above the rows
    handles, texts = ax.get_legend_handles_labels()
    for handle, text in zip(handles, texts, strict=True):
        handle.set_label(fit_text(ax, text, fontsize=7, inches=width))
    _legend_on_top(ax, len(names), 1)
    return ax


def write_tornado(result: SensitivityResult, path: Path) -> Path:
    """Signed tornado panels, one per output, in one PNG."""
    outputs = list(result.indices)
    fig = Figure(figsize=(11, 5.5 * len(outputs)), layout="constrained")
    axes = fig.subplots(len(outputs), 2, squeeze=False, sharey="row",
                        gridspec_kw={"width_ratios": (1.0, 1.1)})
    for (left, right), output in zip(axes, outputs, strict=True):
        plot_tornado(result, left, output, direction_ax=right)
    fig.savefig(path, dpi=110)
    return path


def write_drivers(result: SensitivityResult, path: Path,
                  output: str | None = None) -> Path:
    """The drivers of the top and bottom 10% of ``output`` (default: the lead output), as
    a PNG."""
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    plot_drivers(result, fig.add_subplot(), output)
    fig.savefig(path, dpi=110)
    return path
