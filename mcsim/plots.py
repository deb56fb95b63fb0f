"""All plotting lives here (the only module that imports matplotlib).

Functions draw on a given ``Axes`` (for notebooks) or write PNG files (for reports).
Money axes are in billions of dollars.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

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


# --- composable plots: draw on a given Axes, return it ------------------------------------
#
# Conventions (every plot_* below): the Axes' title is never touched; limits grow by
# autoscaling over what was added (never shrunk to the last series); legend entries only
# for what was added, prefixed by the series label; means are dashed lines in the series
# colour; x is in dates (matplotlib.dates: month starts), so ``ax.axvline(pd.Timestamp(...))``
# lines up; money is in $B (nominal).
#
# Repayment (and every first-passage event) is drawn as a SURVIVAL curve, one convention
# for the CLI, the report and the notebooks:
#     S(m) = P(not yet repaid by month m) = 1 - P(repaid in month m or before),
# a step function over the simulated months that ends, at the horizon, at the probability
# of "not by the horizon" (the censored paths); its median month (S = 1/2) is marked.



def _event(results: Results, which: str):
    """The row of first-passage event ``which`` in the run's event table
    (:mod:`mcsim.events`, read from the results: plots import nothing of mcsim)."""
    events = results.layout.events
    _check_choice("event (which)", which, tuple(e.name for e in events))
    return next(e for e in events if e.name == which)

#: a band whose widest point is under this fraction of its series' span gets no legend
#: entry (too thin to see)
THIN_BAND = 0.02


def month_dates(results: Results, extra: int = 0) -> np.ndarray:
    """The simulated months as ``datetime64[D]`` month starts (``"2024-01"`` ->
    2024-01-01), plus ``extra`` months after the horizon."""
    g = results.grid
    first = np.datetime64(g.label(0), "M")
    return (first + np.arange(g.num_months + extra)).astype("datetime64[D]")


def _run_name(results: Results) -> str | None:
    """A default series name: the config file's stem (``configs/base.toml`` -> ``base``)."""
    path = getattr(results.config, "source_path", "") or ""
    return Path(path).stem or None


def _prefix(label: str | None, results: Results) -> str:
    name = label if label is not None else _run_name(results)
    return f"{name}: " if name else ""


def _check_choice(kind: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, choices))}")


def _band_visible(lo, hi, span: float) -> bool:
    width = np.nanmax(np.asarray(hi, float) - np.asarray(lo, float)) if len(lo) else 0.0
    return bool(np.isfinite(width) and span > 0 and width >= THIN_BAND * span)


#: the least room a date or year label takes on an axis, in inches ("2030" at 10 pt is
#: 0.35 in): ticks are never denser than this, so labels never run together
DATE_LABEL_INCHES = 0.55
YEAR_LABEL_INCHES = 0.42  # "2030" at 8 pt


def _axis_inches(axis) -> float:
    """The length of an Axis on the page, in inches (as laid out at draw time)."""
    ax = axis.axes
    box = ax.get_window_extent() if ax.figure is not None else None
    size = box.width if axis.axis_name == "x" else box.height
    return size / ax.figure.dpi


def _date_locator():
    """matplotlib's AutoDateLocator, with at most one tick per DATE_LABEL_INCHES of the
    axis (by default it picks 4-10 ticks from the date range alone, and on a small figure
    "2024", "2026", ... ran together). A class made here: matplotlib is imported lazily."""
    import matplotlib.dates as mdates

    class WidthDateLocator(mdates.AutoDateLocator):
        def get_locator(self, dmin, dmax):
            if self.axis is not None and self.axis.axes is not None:
                most = max(2, int(_axis_inches(self.axis) / DATE_LABEL_INCHES))
                self.maxticks = dict.fromkeys(self.maxticks, min(10, most))
                self.minticks = min(4, most)
            with warnings.catch_warnings():  # few ticks on a narrow axis: its fallback
                warnings.simplefilter("ignore", UserWarning)
                return super().get_locator(dmin, dmax)

    return WidthDateLocator(minticks=4, maxticks=10)


def _date_x_axis(ax, xlabel: str = "month") -> None:
    """A date x axis (matplotlib.dates; the converter was set by the datetime64 data)."""
    import matplotlib.dates as mdates

    if type(ax.xaxis.get_major_locator()).__name__ != "WidthDateLocator":
        ax.xaxis.set_major_locator(_date_locator())
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    if not ax.get_xlabel():
        ax.set_xlabel(xlabel)


def _sticky_x(artist, x0, x1) -> None:
    """No autoscale margin beyond the simulated months (matplotlib's sticky edges)."""
    import matplotlib.dates as mdates

    artist.sticky_edges.x[:] = [mdates.date2num(x0), mdates.date2num(x1)]


def _legend(ax, outside: bool = False) -> None:
    """Refresh the legend over every labelled artist: where it covers least data, or
    (``outside``) to the right of the Axes, covering none."""
    handles, labels = ax.get_legend_handles_labels()
    if handles and outside:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  borderaxespad=0.0)
    elif handles:
        ax.legend(handles, labels, loc="best", fontsize=8)


#: the hatching of the 2nd, 3rd, ... run's band where runs are overlaid: two runs' identical
#: bands blended into one colour, hiding that both are there
HATCHES = ("////", "\\\\\\\\", "xxx", "...")


def _fan(results: Results, ax, bands, *, prefix: str, color, mean: bool,
         band_alpha=None, band_label=None, edges: bool = False, hatch: str | None = None):
    """Bands, median and (optionally) the mean of cumulative Azure spend; returns the colour.
    ``hatch``: the bands hatched in the colour, unfilled (an overlaid run's)."""
    bands = sorted((tuple(map(float, b)) for b in bands), key=lambda b: b[0])
    pcts = sorted({p for band in bands for p in band} | {50.0})
    q = results.quantiles("cumulative_azure_spend", pcts).value / B
    x = month_dates(results)
    (line,) = ax.plot(x, q[:, pcts.index(50.0)], color=color, lw=2, label=f"{prefix}median",
                      zorder=3)
    color = line.get_color()
    _sticky_x(line, x[0], x[-1])
    span = float(np.nanmax(q)) - float(np.nanmin(q)) if np.isfinite(q).any() else 0.0
    for k, (lo, hi) in enumerate(bands):
        ylo, yhi = q[:, pcts.index(lo)], q[:, pcts.index(hi)]
        text = band_label or f"{lo:g}-{hi:g}%"
        look = ({"facecolor": "none", "edgecolor": color, "hatch": hatch, "alpha": 0.6}
                if hatch else {"color": color, "alpha": band_alpha or 0.15 + 0.15 * k})
        fill = ax.fill_between(x, ylo, yhi, lw=0, **look,
                               label=f"{prefix}{text}" if _band_visible(ylo, yhi, span)
                               else "_nolegend_")
        _sticky_x(fill, x[0], x[-1])
        if np.nanmin(q) >= 0:  # money from $0: no margin below it
            fill.sticky_edges.y[:] = [0.0]
        if edges:  # overlaid runs: each band's outline in its colour
            for y in (ylo, yhi):
                ax.plot(x, y, color=color, lw=0.8, alpha=0.8, label="_nolegend_")
    _commitment_note(results, ax, color)
    if mean:  # dashed, with its 95% Monte Carlo interval (unlabelled, thin)
        m, se = results.mean("cumulative_azure_spend")
        ax.plot(x, m / B, color=color, lw=1.3, ls="--", label=f"{prefix}mean", zorder=3)
        ci = ax.fill_between(x, (m - 1.96 * se) / B, (m + 1.96 * se) / B, color=color,
                             alpha=0.3, lw=0, label="_nolegend_")
        _sticky_x(ci, x[0], x[-1])
    return color


def _commitment_note(results: Results, ax, color) -> None:
    """The step in cumulative spend at the Azure commitment's last month, said: a shortfall
    of spend against the commitment is paid in that month (model.md), so every path below
    it jumps there. A dotted line and a note at the top right of it (above the bands, which
    widen only later), once per month on an Axes."""
    deal = results.config.deal
    month = deal.azure_commitment_by if deal.azure_commitment is not None else None
    g = results.grid
    labels = [g.label(t) for t in range(g.num_months)]
    if not month or month not in labels[:-1]:
        return
    if any(t.get_gid() == f"commitment-note {month}" for t in ax.texts):
        return
    from matplotlib.transforms import blended_transform_factory

    x = month_dates(results)[labels.index(month)]
    ax.axvline(x, color="0.35", lw=0.9, ls=":", zorder=2, label="_nolegend_")
    ax.text(x, 0.97, f" {month}: shortfall of the\n Azure commitment paid", fontsize=7.5,
            color="0.25", ha="left", va="top", gid=f"commitment-note {month}",
            transform=blended_transform_factory(ax.transData, ax.transAxes))


def plot_fan(results: Results, ax=None, *, bands=((5, 95), (25, 75)), label=None,
             color=None, scale: str = "linear", mean: bool = True):
    """Cumulative Azure spend by month ($B, nominal): shaded percentile ``bands``, the median
    (solid) and the mean (dashed; its 95% Monte Carlo interval shaded thin, no legend
    entry), all in one colour (``color``; default: the Axes' next
    property-cycle colour). Legend entries are prefixed by ``label`` (default: the config
    file's stem); a band too thin to see gets none. ``scale``: ``"linear"`` or ``"log"``
    (the y axis). x: month starts as dates. Draws on ``ax`` (a new one if None) without
    touching its title or shrinking its limits; returns it."""
    _check_choice("scale", scale, ("linear", "log"))
    ax = ax if ax is not None else new_axes()
    _fan(results, ax, bands, prefix=_prefix(label, results), color=color, mean=mean)
    ax.set_yscale(scale)
    return _finish_fan_axes(ax)


def _finish_fan_axes(ax):
    """The fan charts' common finish: the money label, date ticks, grid, limits grown to
    everything drawn, the legend. Returns ``ax``."""
    ax.set_ylabel(fit_text(ax, "cumulative Azure spend ($B, nominal)", "y"))
    _date_x_axis(ax)
    ax.grid(alpha=0.3)
    ax.autoscale_view()
    _legend(ax)
    return ax


def _year_positions(results: Results) -> np.ndarray:
    """Each calendar year's bar at the middle of its simulated months (datetime64[D])."""
    x = month_dates(results, extra=1).astype("datetime64[D]").astype(np.int64)
    year = results.grid.year_of_month()
    mids = [(x[np.flatnonzero(year == y)[0]] + x[np.flatnonzero(year == y)[-1] + 1]) / 2
            for y in range(int(year.max()) + 1)]
    return np.array(np.round(mids), dtype="datetime64[D]")


def plot_annual(results: Results, ax=None, *, flow: str = "azure_spend", label=None,
                color=None, scale: str = "log"):
    """One annual flow per calendar year ($B per year, nominal): 5-95% (thin) and 25-75%
    (thick) ranges, the median (open circle) and the mean (dash), in one colour; partial
    first/last years are partial sums (said in the x label); the legend sits outside, at
    the right (the bars fill every year). ``flow``: an annual flow
    (:data:`mcsim.layout.ANNUAL_FLOWS`; an unknown name raises ValueError naming them).
    ``scale``: ``"log"`` (default) or ``"linear"``; on a log axis a year whose median or
    mean is $0 or less cannot be drawn: it is marked by a triangle on the bottom edge
    (legend: "median or mean <= 0 (below the log axis)"), never silently dropped.
    x: each year's middle as a date, one tick per year. Returns ``ax``."""
    from matplotlib.transforms import blended_transform_factory

    if flow in ("cumulative_azure_spend", "horizon"):  # not per year (others: rows() says)
        raise ValueError(f"flow = {flow!r} is not an annual flow; valid: "
                         f"{', '.join(FLOW_TITLES)} or another of mcsim.layout.ANNUAL_FLOWS")
    _check_choice("scale", scale, ("linear", "log"))
    ax = ax if ax is not None else new_axes()
    prefix = _prefix(label, results)
    q = results.quantiles(flow, (5, 25, 50, 75, 95)).value / B
    mean, _ = results.mean(flow)
    mean = mean / B
    x = _year_positions(results)
    (med,) = ax.plot(x, q[:, 2], "o", color=color, mfc="white", ms=5, mew=1.5, zorder=3,
                     label=f"{prefix}median")
    color = med.get_color()
    ax.vlines(x, q[:, 0], q[:, 4], color=color, lw=1.5, alpha=0.6, label=f"{prefix}5-95%")
    ax.vlines(x, q[:, 1], q[:, 3], color=color, lw=6, alpha=0.8, label=f"{prefix}25-75%")
    ax.plot(x, mean, "_", color=color, ms=12, mew=2, zorder=3, label=f"{prefix}mean")
    ax.set_yscale(scale)
    if scale == "log":
        low = (q[:, 2] <= 0) | (mean <= 0)
        if low.any():
            ax.plot(x[low], np.full(low.sum(), 0.02), "v", color=color, ms=7, clip_on=False,
                    transform=blended_transform_factory(ax.transData, ax.transAxes),
                    label=f"{prefix}median or mean <= 0 (below the log axis)")
    title = FLOW_TITLES.get(flow, flow.replace("_", " "))
    ax.set_ylabel(fit_text(ax, f"{title} (per year, nominal"
                           f"{', log scale' if scale == 'log' else ''})", "y"))
    partial = any(results.grid.year_is_partial())
    _date_x_axis(ax, "calendar year" + (" (partial years: partial sums)" if partial else ""))
    _year_ticks(ax, x)
    ax.grid(alpha=0.3, which="both" if scale == "log" else "major")
    ax.autoscale_view()
    _money_y_axis(ax, scale)
    # the bars fill every year, so no corner is free: the legend in a band above them
    # (outside the Axes it was cut off on a figure without a layout engine)
    legend_on_top(ax, *ax.get_ylim(), log=scale == "log")
    return ax


def _year_ticks(ax, positions: np.ndarray) -> None:
    """A tick under each year's bar, labelled with the year; every 2nd, 5th or 10th year
    where the Axes is too narrow for all (the labels ran together on a default figure)."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import Locator

    ticks = mdates.date2num(np.asarray(positions, dtype="datetime64[D]"))

    class YearTicks(Locator):
        def __call__(self):
            room = _axis_inches(self.axis) / YEAR_LABEL_INCHES
            step = next((n for n in (1, 2, 5, 10) if len(ticks) / n <= room), 20)
            return ticks[::step]

    ax.xaxis.set_major_locator(YearTicks())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.tick_params(axis="x", labelsize=8)


def _money_text_b(value: float) -> str:
    """A tick in $B as money: 0.5 -> "$500M", 20 -> "$20B", 1500 -> "$1.5T"."""
    a = abs(value)
    sign = "-" if value < 0 else ""
    if a >= 1000:
        return f"{sign}${a / 1000:g}T"
    if a >= 1 or a == 0:
        return f"{sign}${a:g}B"
    return f"{sign}${a * 1000:g}M"


def _money_y_axis(ax, scale: str) -> None:
    """Money ticks in $ ("$20B"); on a log axis at 1, 2 and 5 per decade (matplotlib labels
    only the powers of ten, and a range of 5-200 showed just 10^1 and 10^2), or at 1 and 3
    over more than three decades, or at the powers of ten over more than six."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _money_text_b(v)))
    if scale != "log":
        return
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0, 3.0) if decades <= 6 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    ax.yaxis.set_minor_formatter(NullFormatter())


#: event -> the last month it can happen in, from the deal (``None``: any month); after
#: it the survival curve is flat by construction, so the chart stops there
EVENT_WINDOW_END = {"commitment_met": lambda deal: deal.azure_commitment_by}
#: a curve that stops changing is drawn this many months past its last change (at least;
#: an eighth of the grid on long grids) and its flat rest is said in its note
FLAT_TAIL_MONTHS = 12


def _window_end(results: Results, which: str) -> int | None:
    """The month index of the last month event ``which`` can happen in (its window's end,
    e.g. the commitment's ``azure_commitment_by``), when that is before the horizon."""
    get = EVENT_WINDOW_END.get(which)
    month = get(results.config.deal) if get is not None else None
    if not month:
        return None
    g = results.grid
    labels = [g.label(t) for t in range(g.num_months)]
    return labels.index(month) if month in labels[:-1] else None


def _survival_extent(results: Results, which: str, dist) -> tuple[int, str]:
    """How far to draw a survival curve: (the index into the month edges where it stops,
    its note's words after "P%"). The whole grid, unless the curve is flat before the
    horizon: at its event's window end, or a year (or an eighth of the grid) after its
    last change, so the months where something happens fill the axis (a repayment curve
    that reaches 0 in 2028 no longer leaves 2029-2040, 80% of the width, empty)."""
    g = results.grid
    T = g.num_months
    horizon = g.label(T - 1)
    window = _window_end(results, which)
    if window is not None:
        return window + 1, f"not by {g.label(window)}, when its window closes"
    changed = np.flatnonzero(np.asarray(dist.counts[:T]) > 0)
    last = int(changed[-1]) if len(changed) else 0
    stop = last + 1 + max(FLAT_TAIL_MONTHS, T // 8)
    if stop >= T:
        return T, f"not by {horizon}"
    return stop, f"not by {horizon} (the horizon)"


def plot_survival(results: Results, ax=None, *, which: str = "repayment", label=None,
                  color=None, band_legend: bool = True):
    """The survival curve S(m) = P(not yet repaid by month m) of a first-passage event
    (``which``: repayment, credit_exhaustion, cap_reached, commitment_met; for the others
    "repaid" reads "credits exhausted", "cap reached", "commitment met"): a step line with
    its 95% band (shaded), the median month marked (a dot at S = 1/2, on the right edge
    when more than half the paths are censored), and the probability of "not by the
    horizon" (censored paths) as a marker at the curve's end.

    The x axis is scaled to the data: a curve that is flat before the horizon stops at its
    event's window end (the commitment's last month: "35.3% not by 2033-10, when its
    window closes") or a year after its last change (its note then names the horizon).
    One curve: its median month and its note are written beside the dot and the end.
    Several curves on one Axes (overlays): each one's median month and note go into its
    legend entry instead, as curves that cross would run their labels together. Returns
    ``ax``."""
    import matplotlib.dates as mdates

    not_yet = _event(results, which).not_yet
    ax = ax if ax is not None else new_axes()
    dist = results.event(which)
    stop, words = _survival_extent(results, which, dist)
    x = month_dates(results, extra=1)[:stop + 1]  # month edges: the last step ends there
    s = np.append(1.0 - dist.cdf, 1.0 - dist.cdf[-1])[:stop + 1]
    se = np.append(dist.cdf_se, dist.cdf_se[-1])[:stop + 1]
    name = label if label is not None else (_run_name(results) or not_yet)
    (line,) = ax.step(x, s, where="post", color=color, lw=2, label=name, zorder=3)
    color = line.get_color()
    lo, hi = np.clip(s - 1.96 * se, 0, 1), np.clip(s + 1.96 * se, 0, 1)
    band = ax.fill_between(x, lo, hi, step="post", color=color, alpha=0.2, lw=0,
                           label=f"{name}: 95% band" if band_legend
                           and _band_visible(lo, hi, 1.0) else "_nolegend_")
    for artist in (line, band):
        _sticky_x(artist, x[0], x[-1])
    # probabilities: always 0..1 in the data limits, whatever else the Axes holds
    ax.update_datalim([(mdates.date2num(x[0]), 0.0), (mdates.date2num(x[0]), 1.0)])
    med = dist.quantiles.get(50.0, (None,))[0]
    end = x[-1]
    at = x[med] if med is not None else end  # not by the horizon: on the right edge
    ax.plot([at], [0.5], "o", color=color, mec="white", ms=7, zorder=4,
            clip_on=med is not None, gid="median-marker", label="_nolegend_")
    ax.plot([end], [dist.censored], ">", color=color, ms=7, clip_on=False, zorder=4,
            gid="censored-marker", label="_nolegend_")
    # what the curve's labels say, kept on it: _survival_labels places them
    line.mcsim_survival = {
        "name": name, "color": color, "median_at": at, "inside": med is not None,
        "end": (end, dist.censored),
        "median": (f"median {results.grid.label(med)}" if med is not None
                   else "median: not by the horizon"),
        "note": f"{dist.censored:.1%} {words}"}
    _survival_labels(ax)
    ax.set_ylabel(fit_text(ax, f"S(m) = P({not_yet} by month m)", "y"))
    _date_x_axis(ax)
    ax.grid(alpha=0.3)
    ax.autoscale_view()
    # the legend in a band above S = 1, where no curve goes: placed "best" it could sit on
    # a note (which "best" does not see), and overlays' entries are long
    legend_on_top(ax, floor=-0.05, top=1.02)
    ax.yaxis.set_major_locator(FixedLocator([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]))
    return ax


def _count_survival(ax) -> int:
    return sum(hasattr(line, "mcsim_survival") for line in ax.get_lines())


def _axes_inches(ax) -> tuple[float, float]:
    """The Axes' width and height on the page in inches (before a layout engine shrinks
    it for labels: an upper bound)."""
    w, h = ax.figure.get_size_inches()
    box = ax.get_position()
    return box.width * w, box.height * h


def fit_text(ax, text: str, along: str = "x", fontsize: float | str | None = None,
             inches: float | None = None) -> str:
    """``text`` wrapped to the length of ``ax``'s side (``along`` "x": its width, for a
    title or x label; "y": its height, for a y label; or ``inches``), at ``fontsize``
    (default the axis label's): on a small figure a long title or label ran past the
    figure's edge or into its neighbour. Existing line breaks are kept."""
    import textwrap

    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    size = FontProperties(size=fontsize if fontsize is not None
                          else rcParams["axes.labelsize"]).get_size_in_points()
    width, height = _axes_inches(ax)
    length = inches if inches is not None else width if along == "x" else height
    # 0.9: a layout engine shrinks the Axes for its labels; 0.52 em a character
    per_line = max(12, int(0.9 * length * 72 / (0.52 * size)))

    def balanced(part: str) -> str:  # lines of even length: no word left alone
        lines = len(textwrap.wrap(part, per_line)) or 1
        return textwrap.fill(part, max(12, min(per_line, -(-len(part) // lines) + 6)))

    return "\n".join(balanced(part) for part in text.split("\n"))


def _title(ax, text: str) -> None:
    """A report chart's title, wrapped to the Axes' width."""
    from matplotlib import rcParams

    ax.set_title(fit_text(ax, text, fontsize=rcParams["axes.titlesize"]))


def legend_on_top(ax, floor: float, top: float, fontsize: int = 8,
                   log: bool = False) -> None:
    """The legend in a band added above the data (``floor`` .. ``top``: the y range the
    data needs), so it covers none of it on any figure, with or without a layout engine
    (outside the Axes it was cut off by a figure without one). Entries in as many columns
    as fit the Axes' width."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    width, height = _axes_inches(ax)
    # an entry's width: its longest line at ~0.55 em per character, plus its handle
    chars = max(len(line) for text in labels for line in text.split("\n"))
    entry = (0.55 * chars * fontsize + 3.5 * fontsize) / 72
    ncol = max(1, min(len(handles), int(width / entry)))
    rows = -(-len(handles) // ncol)
    lines = max(text.count("\n") + 1 for text in labels)
    # its height: rows of lines at 1.25 em plus 0.5 em between rows and 1 em of frame;
    # a layout engine shrinks the Axes for its labels, so 15% more
    legend = (rows * lines * 1.25 + rows * 0.5 + 1.0) * fontsize / 72 * 1.15
    share = min(0.6, legend / max(height, 0.5))
    if log:  # the band in decades
        floor, top = np.log10(floor), np.log10(top)
    top += (top - floor) * share / (1.0 - share)
    ax.set_ylim(*((10.0 ** floor, 10.0 ** top) if log else (floor, top)))
    ax.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=fontsize,
              frameon=False)


def _survival_labels(ax) -> None:
    """The median and "not by" labels of every survival curve on ``ax``, placed anew
    each time a curve is added: beside the dot and the end for one curve, in the legend
    entries for several (see :func:`plot_survival`)."""
    for text in [t for t in ax.texts if t.get_gid() in ("median-label", "censored-label")]:
        text.remove()
    curves = [line for line in ax.get_lines() if hasattr(line, "mcsim_survival")]
    if len(curves) > 1:
        narrow = _axes_inches(ax)[0] < 6.0  # an entry on two lines, so it fits
        for line in curves:
            info = line.mcsim_survival
            line.set_label(f"{info['name']}:{chr(10) if narrow else ' '}{info['median']}; "
                           f"{info['note']}")
        return
    for line in curves:
        info = line.mcsim_survival
        line.set_label(info["name"])
        inside = info["inside"]
        # the curve falls to the right: above-right of its dot is free (on the right
        # edge, above-left)
        ax.annotate(info["median"], (info["median_at"], 0.5),
                    xytext=(5, 4) if inside else (-5, 4), textcoords="offset points",
                    ha="left" if inside else "right", fontsize=8, color=info["color"],
                    gid="median-label")
        x, p = info["end"]
        low = p < 0.1  # the note below the curve's end, unless the end is at the bottom
        ax.annotate(info["note"], (x, p), xytext=(-8, 5 if low else -6),
                    textcoords="offset points", ha="right", va="bottom" if low else "top",
                    fontsize=8, color=info["color"], gid="censored-label")


def _conditioned(results: Results) -> Results:
    cond = getattr(results, "conditioned", None)
    if cond is None:
        raise ValueError("no conditioned results: the config has no [observations] "
                         "(or the run was made with condition=False)")
    return cond


def plot_conditioned_fan(results: Results, ax=None, *, band=(5, 95)):
    """Cumulative Azure spend, prior (``results``) and conditioned (``results.conditioned``)
    overlaid: each one's ``band`` and median. Returns ``ax``."""
    cond = _conditioned(results)
    ax = ax if ax is not None else new_axes()
    for res, name in ((results, "prior"), (cond, "conditioned")):
        _fan(res, ax, (band,), prefix=f"{name}: ", color=None, mean=False, band_alpha=0.15,
             edges=True)
    return _finish_fan_axes(ax)


def plot_conditioned_survival(results: Results, ax=None, *, which: str = "repayment"):
    """S(m) = P(not yet repaid by month m) (or the ``which`` event), prior and conditioned
    overlaid (see :func:`plot_survival`). Returns ``ax``."""
    cond = _conditioned(results)
    ax = ax if ax is not None else new_axes()
    plot_survival(results, ax, which=which, label="prior")
    plot_survival(cond, ax, which=which, label="conditioned")
    return ax


def plot_compare(runs, ax=None, *, what: str = "fan", which: str = "repayment",
                 band=(5, 95)):
    """Several runs on one Axes, one property-cycle colour each, legend by name.

    ``runs``: a mapping ``{name: Results}``; a run with conditioned results is drawn
    from them (legend: "name (conditioned)"). ``what="fan"``: cumulative Azure spend, each
    run's median (line) and ``band`` (shaded); ``what="survival"``: each run's
    S(m) = P(not yet repaid by month m) (or the ``which`` event, see
    :func:`plot_survival`). Returns ``ax``."""
    _check_choice("what", what, ("fan", "survival"))
    if what == "survival":
        for res in dict(runs).values():
            _event(res, which)
    ax = ax if ax is not None else new_axes()
    for name, res in dict(runs).items():
        cond = getattr(res, "conditioned", None)
        shown, text = (cond, f"{name} (conditioned)") if cond is not None else (res, str(name))
        if what == "fan":
            before = len(ax.get_lines())
            k = sum(1 for line in ax.get_lines() if line.get_gid() == "compare-median")
            _fan(shown, ax, (band,), prefix="", color=None, mean=False, band_alpha=0.15,
                 band_label="_", edges=True,
                 hatch=HATCHES[(k - 1) % len(HATCHES)] if k else None)
            ax.get_lines()[before].set_gid("compare-median")
            # one legend entry per run: its median line, named; the bands are unnamed
            ax.get_lines()[before].set_label(text)
        else:
            plot_survival(shown, ax, which=which, label=text, band_legend=False)
    if what == "fan":
        ax.set_ylabel(fit_text(ax, "cumulative Azure spend ($B, nominal)", "y"))
        _date_x_axis(ax)
        ax.grid(alpha=0.3)
        ax.autoscale_view()
        handles, labels = ax.get_legend_handles_labels()
        lo, hi = band
        ax.legend(handles, labels, loc="best", fontsize=8,
                  title=f"line: median; shaded: {lo:g}-{hi:g}%", title_fontsize=8)
    return ax


# --- the report's charts (titled, on a fresh Axes), over the composable plots above --------
def fan_chart(results: Results, ax, bands=((5, 95), (25, 75)), color="tab:blue",
              label: str = "") -> None:
    """The report's fan chart: :func:`plot_fan` with a title."""
    plot_fan(results, ax, bands=bands, color=color, label=label)
    _title(ax, f"Cumulative Azure spend since {results.grid.label(0)} "
                 f"({paths_text(results)})")


def annual_chart(results: Results, ax, flow: str = "azure_spend", color="tab:orange",
                 label: str = "") -> None:
    """The report's annual chart: :func:`plot_annual` with a title."""
    plot_annual(results, ax, flow=flow, color=color, label=label)
    title = FLOW_TITLES.get(flow, flow.replace("_", " "))
    _title(ax, f"{title[0].upper() + title[1:]} per calendar year ({paths_text(results)})")


def event_cdf(results: Results, ax, which: str = "repayment", color=None) -> None:
    """The report's first-passage chart, drawn (despite the historical name) as the one
    convention for events: the survival curve S(m) = P(not yet by month m) of
    :func:`plot_survival`, with a title. ``which``: an event of the run
    (:attr:`Results.events`); ``color``: default the event's own."""
    event = _event(results, which)
    plot_survival(results, ax, which=which, color=color or event.color,
                  label=event.not_yet)
    _title(ax, f"{event.survival_title}: survival by month ({paths_text(results)})")


def survival_curve(results: Results, ax, which: str = "repayment", color=None,
                   label: str | None = None) -> None:
    """S(m) = P(not yet repaid by month m) (or credits, ...): :func:`plot_survival` with
    a title. ``which``: an event of the run (:attr:`Results.events`)."""
    event = _event(results, which)
    plot_survival(results, ax, which=which, color=color or event.color,
                  label=label or event.not_yet)
    _title(ax, f"{event.survival_title}, {paths_text(results)}")


def prior_vs_conditioned_fan(prior: Results, conditioned: Results, ax,
                              band=(5, 95)) -> None:
    """Cumulative Azure spend: the prior's and the conditioned band and median, overlaid."""
    for res, color, name in ((prior, "tab:blue", "prior"),
                             (conditioned, "tab:red", "conditioned")):
        _fan(res, ax, (band,), prefix=f"{name}: ", color=color, mean=False, band_alpha=0.15,
             edges=True)
    _finish_fan_axes(ax)
    _title(ax, f"Prior vs conditioned on the observations ({paths_text(conditioned)})")


def prior_vs_conditioned_survival(prior: Results, conditioned: Results, ax) -> None:
    """S(m) = P(Microsoft not yet repaid by month m), prior and conditioned, with 95% bands."""
    plot_survival(prior, ax, color="tab:blue", label="prior")
    plot_survival(conditioned, ax, color="tab:red", label="conditioned")
    _title(ax, f"Microsoft not yet repaid: prior vs conditioned ({paths_text(conditioned)})")


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


#: the most SMC runs whose colours the diagnostics' legend names
LEGEND_RUNS = 6


def plot_smc_diagnostics(diag, axes=None):
    """The tempering of every SMC run, one line per run: the temperature (log scale), the
    ESS of each step's incremental weights over the particles (dotted: the ESS the
    tempering keeps), and the moves' acceptance (shaded: the band the move's step size
    steers it into, ``acceptance_band``: 0.4-0.6 for the preconditioned move, 0.2-0.4 for
    pCN and in summaries written before the bands were recorded), by step. ``diag``:
    :func:`mcsim.posterior.diagnostics` (summary.json's ``smc``).
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
    runs = len(diag["runs_detail"])
    # a legend of up to LEGEND_RUNS runs fits in a corner; more (16 by default) would
    # cover the curves, and colours repeat after 10: the count in the title instead
    ax_t.set_title("temperature (1: the posterior)" if runs <= LEGEND_RUNS
                   else f"temperature (1: the posterior), {runs} runs", fontsize=10)
    ax_e.axhline(diag["ess_fraction"], color="black", lw=0.8, ls=":",
                 label=f"kept: {diag['ess_fraction']:g}")
    ax_e.set_ylim(0.0, 1.05)
    ax_e.set_title(f"ESS / particles ({n:,} particles)", fontsize=10)
    lo, hi = diag.get("acceptance_band", (0.2, 0.4))
    ax_a.axhspan(lo, hi, color="tab:green", alpha=0.15, lw=0, label=f"target {lo:g}-{hi:g}")
    ax_a.set_ylim(0.0, 1.0)
    ax_a.set_title(f"move acceptance (at most {diag['moves']} moves a step)", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tempering step")
        ax.grid(alpha=0.3)
    if runs <= LEGEND_RUNS:
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
                    label="observed ± 1.96 sd (observation error)" if i == 0 else None)
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


def write_plots(results: Results, out: Path, summary: dict | None = None,
                on_plot: Callable[[str], None] | None = None) -> list[Path]:
    """The report's PNGs: fan chart, annual Azure spend, repayment and credit-exhaustion
    survival curves S(m) = P(not yet by month m) (and the cap's and the commitment's where
    the deal has them; the files keep their historical ``*_cdf.png`` names); with
    conditioned results, prior vs
    conditioned fan and survival; with an SMC posterior, the parameters' shifts, the SMC
    diagnostics and the posterior predictive check (drawn from ``summary``'s
    ``conditioned`` block when given, else from the results' own tables).
    ``on_plot(name)`` is called as each file is begun (progress: a plot takes about a
    second)."""
    files = []
    deal = results.config.deal
    # one chart per event the deal has (the event table's ``shown``), in the table's order
    events = [(f"{e.name}_cdf.png", functools.partial(event_cdf, results, which=e.name))
              for e in results.layout.events if e.shown(deal)]
    meta = png_metadata(results)

    def save(name: str, draw, figsize=(8, 4.5), panels: int = 1) -> None:
        if on_plot is not None:
            on_plot(name)
        # a bare Figure (no pyplot): the report's files never touch the user's backend
        fig = Figure(figsize=figsize, layout="constrained")
        draw(fig.add_subplot() if panels == 1 else fig.subplots(1, panels))
        fig.savefig(out / name, dpi=110, metadata=meta)
        files.append(out / name)

    for name, draw in (("fan_chart.png", lambda ax: fan_chart(results, ax)),
                       ("annual_azure_spend.png", lambda ax: annual_chart(results, ax)),
                       *events):
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
