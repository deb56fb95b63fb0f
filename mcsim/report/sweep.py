"""A sweep's files (:func:`write_sweep`): sweep.csv (:func:`sweep_long_table`, tidy: one
row per point and statistic, every column of one type: the swept values and ``value`` are
numbers, with a ``unit`` column), sweep.png (:func:`sweep_figure`: the repayment month's
median and P(repaid by the horizon) against the swept value) and every point's report, in
a folder named by its values (``deal.revenue_share=0.1/``, :func:`point_dir_names`) that
parses back to them (:func:`parse_point_dir_name`). The points are run by
:func:`mcsim.api.run_sweep`.

A point with ``[observations]`` reports its conditioned results (what the observations
say), as the point's own report does in its headline; otherwise its prior results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_report
from .outdir import output_directory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import Results

#: what :func:`mcsim.api.run_sweep` returns: (point, Results) in grid order
Runs = Sequence[tuple[Mapping[str, Any], "Results"]]

#: sweep.csv's columns after ``point`` and the swept keys (one per key, named by the key)
LONG_COLUMNS = ("statistic", "unit", "value", "se", "ci95_low", "ci95_high", "horizon")
#: the statistics of sweep.csv, in order, with their units: a month as a decimal year
#: (the month's first day: 2027-03 is 2027 + 2/12 = 2027.1667), so that ``value`` is a
#: number in every row (it mixed "YYYY-MM" text with probabilities and dollars)
STATISTICS = {
    "median_repayment_month": "year",
    "p_repaid_by_horizon": "probability",
    "median_cumulative_azure_spend_at_horizon": "$",
    "mean_cumulative_azure_spend_at_horizon": "$",
}


def _headline(res: Results) -> Results:
    """The results a sweep reports: the conditioned ones when the run has them."""
    cond = getattr(res, "conditioned", None)
    return cond if cond is not None else res


def _point_stats(res: Results) -> dict[str, dict[str, Any]]:
    """statistic -> {value, se, ci95_low, ci95_high} ("YYYY-MM" months; None: beyond the
    horizon, or an interval end the paths cannot bound)."""
    res = _headline(res)
    rep = res.repayment
    med, lo, hi = rep.quantiles[50]
    p = 1.0 - rep.censored
    se = rep.censored_se
    cum = res.quantiles("cumulative_azure_spend", (50,))
    mean, mean_se = res.mean("cumulative_azure_spend")

    def finite(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    return {
        "median_repayment_month": {"value": res.month_label(med), "se": None,
                                   "ci95_low": res.month_label(lo),
                                   "ci95_high": res.month_label(hi)},
        "p_repaid_by_horizon": {"value": p, "se": se, "ci95_low": max(0.0, p - 1.96 * se),
                                "ci95_high": min(1.0, p + 1.96 * se)},
        "median_cumulative_azure_spend_at_horizon": {
            "value": float(cum.value[-1, 0]), "se": None,
            "ci95_low": finite(cum.ci_low[-1, 0]), "ci95_high": finite(cum.ci_high[-1, 0])},
        "mean_cumulative_azure_spend_at_horizon": {
            "value": float(mean[-1]), "se": float(mean_se[-1]),
            "ci95_low": float(mean[-1] - 1.96 * mean_se[-1]),
            "ci95_high": float(mean[-1] + 1.96 * mean_se[-1])},
    }


def decimal_year(label: str | None) -> float | None:
    """"YYYY-MM" as a decimal year at the month's first day (``"2027-03"`` -> 2027.1667);
    None stays None (beyond the horizon)."""
    if label is None:
        return None
    year, month = label.split("-")
    return int(year) + (int(month) - 1) / 12.0


def month_of_decimal_year(value: float) -> str:
    """The inverse of :func:`decimal_year`: 2027.1667 -> ``"2027-03"``."""
    months = round(value * 12.0)
    return f"{months // 12:04d}-{months % 12 + 1:02d}"


def swept_columns(points: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each swept key's values as sweep.csv holds them, one type per column: numbers in
    the config's own units when every value of the key is a number or a rate given as "%
    per year" (read as the config reads it: ``"-40%/yr"`` is the log rate ln(0.6) =
    -0.511); otherwise (true/false, a string, a distribution) every value as its TOML
    literal text. The values as given are in the ``point`` column (the folder's name)."""
    from ..rates import log_rate, parse_percent

    out: dict[str, list[Any]] = {}
    for key in (points[0] if points else {}):
        values = [p[key] for p in points]
        numbers = []
        for v in values:
            if isinstance(v, int | float) and not isinstance(v, bool):
                numbers.append(float(v))
            elif parse_percent(v) is not None and parse_percent(v) > -100.0:
                numbers.append(log_rate(parse_percent(v)))
            else:
                numbers = None
                break
        out[key] = numbers if numbers is not None else [toml_literal(v) for v in values]
    return out


def sweep_long_table(runs: Runs) -> list[dict[str, Any]]:
    """sweep.csv's rows: one per point and statistic (tidy, long form), each column of
    one type. Columns: ``point`` (the point's folder name, which
    :func:`parse_point_dir_name` reads back to its values as given), one per swept key
    (named by the key: a number, see :func:`swept_columns`), then :data:`LONG_COLUMNS`:
    the statistic's name (:data:`STATISTICS`), its unit ("year", "probability", "$"), its
    value, standard error (empty for a quantile) and 95% interval (all numbers), and the
    run's horizon ("YYYY-MM"). A month is a decimal year (:func:`decimal_year`); an empty
    one is beyond the horizon (the median: fewer than half the paths repaid by then; an
    interval end: not bounded by the paths)."""
    points = [p for p, _ in runs]
    names = point_dir_names(points)
    swept = swept_columns(points)
    rows = []
    for i, (point, res) in enumerate(runs):
        keys = {k: swept[k][i] for k in point}
        horizon = res.grid.label(res.grid.num_months - 1)
        for name, stat in _point_stats(res).items():
            if STATISTICS[name] == "year":
                stat = {k: decimal_year(v) if k != "se" else v for k, v in stat.items()}
            rows.append({"point": names[i], **keys, "statistic": name,
                         "unit": STATISTICS[name], **stat, "horizon": horizon})
    return rows


def sweep_table(runs: Runs) -> list[dict[str, Any]]:
    """One row per point (wide, for the terminal and the API): the swept keys, then
    ``median_repayment_month`` ("YYYY-MM", or "after YYYY-MM" beyond the horizon) with
    ``median_repayment_month_ci95_low`` / ``_high``, ``p_repaid_by_horizon``,
    ``p_not_repaid_by_horizon`` with ``p_not_repaid_se``, and the median (with its 95%
    interval) and mean (with its SE) of cumulative Azure spend at the horizon ($).
    Column names hold no dates: the horizon is its own column."""
    rows = []
    for point, res in runs:
        stats = _point_stats(res)
        end = res.grid.label(res.grid.num_months - 1)
        rep, p = stats["median_repayment_month"], stats["p_repaid_by_horizon"]
        med, mean = (stats["median_cumulative_azure_spend_at_horizon"],
                     stats["mean_cumulative_azure_spend_at_horizon"])
        row = {k: _text(v) for k, v in point.items()}
        row.update({
            "horizon": end,
            "median_repayment_month": rep["value"] or f"after {end}",
            "median_repayment_month_ci95_low": rep["ci95_low"] or f"after {end}",
            "median_repayment_month_ci95_high": rep["ci95_high"] or f"after {end}",
            "p_repaid_by_horizon": p["value"],
            "p_not_repaid_by_horizon": 1.0 - p["value"], "p_not_repaid_se": p["se"],
            "median_cumulative_azure_spend_at_horizon": med["value"],
            "median_cumulative_azure_spend_at_horizon_ci95_low": _nan(med["ci95_low"]),
            "median_cumulative_azure_spend_at_horizon_ci95_high": _nan(med["ci95_high"]),
            "mean_cumulative_azure_spend_at_horizon": mean["value"],
            "mean_cumulative_azure_spend_at_horizon_se": mean["se"],
        })
        rows.append(row)
    return rows


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _text(v: Any) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return str(v)


def _name_value(v: Any) -> str:
    """A value as it reads in a folder name: 0.1, 13000000000, -40%/yr, ..."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return _text(v) if math.isinf(v) else f"{v:.15g}"
    if isinstance(v, dict):
        return "_".join(f"{k}-{_name_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "-".join(_name_value(x) for x in v)
    return str(v)


def toml_literal(v: Any, compact: bool = False) -> str:
    """``v`` as a TOML literal that :func:`mcsim.overrides.parse_override` reads back to
    an equal value: ``0.1``, ``13000000000``, ``true``, ``"2030-12"``, ``-40%/yr`` (a rate
    as "% per year" is read unquoted), ``[1, 2]``, ``{dist = "normal", mean = 0}``
    (``compact``: without the spaces, ``{dist="normal",mean=0}``)."""
    import json

    from ..overrides import parse_override

    comma, equals = (",", "=") if compact else (", ", " = ")

    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        text = f"{v:.15g}"
        return text if float(text) == v else repr(v)
    if isinstance(v, str):
        try:  # bare where it reads back as itself ("-40%/yr"), else quoted
            if parse_override(f"k={v}")[1] == v:
                return v
        except Exception:  # noqa: BLE001 - not a bare literal: quoted below
            pass
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + comma.join(toml_literal(x, compact) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + comma.join(f"{k}{equals}{toml_literal(x, compact)}"
                                for k, x in v.items()) + "}"
    return str(v)


def _name_text(v: Any) -> str:
    """A value as a folder name holds it: its compact TOML literal, but a string that is
    no other TOML value bare (``2030-12``, not ``"2030-12"``: :func:`parse_point_dir_name`
    reads what is not TOML as a string)."""
    if isinstance(v, str):
        from ..config import ConfigError
        from ..overrides import parse_override

        try:
            parse_override(f"k={v}")
        except ConfigError:
            return v
    return toml_literal(v, compact=True)


#: characters kept as they are in a folder name's value; every other one is written
#: %XX (its UTF-8 bytes, as in a URL), so that the name parses back to the value
_SAFE_VALUE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-")
_SAFE_KEY = _SAFE_VALUE | {"_"}
#: a folder name's longest (file systems allow 255 bytes; room for the staging prefix)
MAX_NAME = 200
#: the suffix of a name that would coincide with another's (``~2``, ``~3``, ...): ``~``
#: never appears unescaped otherwise, so the suffix is told apart from the value
_TWIN = re.compile(r"~(\d+)$")


def _escape(text: str, safe: frozenset) -> str:
    """``text`` with every character outside ``safe`` as the %XX of its UTF-8 bytes
    (urllib's quote keeps ``~`` and ``_``, which the names use themselves)."""
    return "".join(ch if ch in safe else "".join(f"%{b:02X}" for b in ch.encode())
                   for ch in text)


def point_dir_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each point's folder name, by its values, which :func:`parse_point_dir_name` reads
    back: ``deal.revenue_share=0.1``, or with two keys
    ``deal.revenue_share=0.1,deal.investment=13000000000``.

    A value is its compact TOML literal (:func:`toml_literal`; a string that is no other
    TOML value, bare) with every character other than letters, digits and ``. _ + -``
    written ``%XX`` as in a URL (``-40%/yr`` -> ``-40%25%2Fyr``; a key's ``[1]`` ->
    ``%5B1%5D``): no name holds a ``/``, a space, a quote or a glob character. A name that
    would coincide with another's on a case-insensitive file system gets ``~2``, ``~3``,
    ... appended; one longer than :data:`MAX_NAME` characters (a long distribution) is
    cut there and gets ``~1``: those do not parse back (the point's summary.json holds
    its config)."""
    names, seen = [], set()
    for point in points:
        name = ",".join(f"{_escape(k, _SAFE_KEY)}={_escape(_name_text(v), _SAFE_VALUE)}"
                        for k, v in point.items()) or "point"
        if name.startswith("."):
            name = "%2E" + name[1:]
        cut = len(name) > MAX_NAME
        base = name
        if cut:  # room for "~N", never inside a %XX
            end = MAX_NAME - 4
            end -= 2 if name[end - 2] == "%" else 1 if name[end - 1] == "%" else 0
            base = name[:end]
        n = 1
        name = f"{base}~1" if cut else base
        while name.lower() in seen:  # case-insensitive file systems
            n += 1
            name = f"{base}~{n}"
        seen.add(name.lower())
        names.append(name)
    return names


def parse_point_dir_name(name: str) -> dict[str, Any]:
    """The swept values a point's folder is named by (:func:`point_dir_names`), as
    :func:`mcsim.overrides.parse_sweep` reads them: ``"deal.revenue_share=0.1"`` ->
    ``{"deal.revenue_share": 0.1}``. A name with a ``~N`` suffix (cut, or a twin on a
    case-insensitive file system) raises ValueError: its point is in its summary.json."""
    from urllib.parse import unquote

    from ..config import ConfigError
    from ..overrides import parse_override

    if _TWIN.search(name):
        raise ValueError(f"{name!r} was cut or told apart from a twin (~N): read the "
                         "point's summary.json instead")
    point = {}
    for pair in name.split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{name!r} is not a sweep point's folder (KEY=VALUE,...)")
        key, text = unquote(key), unquote(value)
        try:
            point[key] = parse_override(f"{key}={text}")[1]
        except ConfigError:  # no TOML value: a string written bare (_name_text)
            point[key] = text
    return point


def write_sweep(runs: Runs, out: str | Path, plots: bool = True, force: bool = False,
                on_point: Callable[[int, str], None] | None = None,
                on_stage: Callable[[str], None] | None = None) -> Path:
    """sweep.csv, sweep.png and every point's report (in a folder named by its values,
    :func:`point_dir_names`) under ``out``, atomically. ``on_point(k, folder)`` is called
    as the k-th point's report is written (1, 2, ...: for progress), ``on_stage(part)`` as
    each part of a report is begun ("folder/fan_chart.png", ..., "sweep.png")."""
    import csv

    out = Path(out)
    with output_directory(out, force=force) as tmp:
        rows = sweep_long_table(runs)
        with open(tmp / "sweep.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()}
                             for row in rows)
        for k, (name, (_, res)) in enumerate(zip(point_dir_names([p for p, _ in runs]), runs,
                                                 strict=True), 1):
            write_report(res, tmp / name, plots=plots, on_stage=None if on_stage is None
                         else lambda part, name=name: on_stage(f"{name}/{part}"))
            if on_point is not None:
                on_point(k, name)
        if plots:
            if on_stage is not None:
                on_stage("sweep.png")
            plot_sweep(runs, tmp / "sweep.png")
    return out


def _month_date(label: str) -> datetime:
    """"YYYY-MM" as the first day of the month (where pandas puts ``Timestamp("YYYY-MM")``)."""
    year, month = label.split("-")
    return datetime(int(year), int(month), 1)


def _numeric(values: Sequence[Any]) -> list[float] | None:
    """The swept values as numbers for an x axis: numbers as they are, rates given as
    "% per year" as their percentages (and then log rates given as numbers as theirs);
    None when any value is neither (categorical)."""
    from ..rates import parse_percent, percent_per_year

    percent = any(parse_percent(v) is not None for v in values)
    out = []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            # beside "% per year" values, a number is a log rate: shown as its % too
            out.append(percent_per_year(float(v)) if percent else float(v))
        elif parse_percent(v) is not None:
            out.append(parse_percent(v))
        else:
            return None
    return out


def _axis_label(key: str, values: Sequence[Any]) -> str:
    from ..parameters import UNITS
    from ..rates import parse_percent

    table, _, name = key.partition(".")
    name = re.sub(r"^change\[\d+\]\.", "", name)  # a [[deal.change]]'s term: its unit
    if any(parse_percent(v) is not None for v in values):
        return f"{key} (% per year)"
    if table == "parameters" and name in UNITS:
        return f"{key} ({UNITS[name]})"
    if table == "deal" and name in ("revenue_share", "profit_share_until_recouped",
                                    "profit_share_after", "reverse_share"):
        return f"{key} (fraction)"
    if table == "deal" and name in ("investment", "revenue_share_cap", "profit_cap",
                                    "azure_credits", "azure_commitment",
                                    "losses_before_start"):
        return f"{key} ($)"
    return key


def sweep_figure(runs: Runs) -> Figure:
    """The sweep's figure: the median repayment month (a date, with its 95% interval) and
    P(repaid by the horizon) (with its 95% interval) against the first swept key's values
    (a numeric axis when they are numbers, or rates as "% per year"; categorical
    otherwise), one line per value of the other keys. A median beyond the horizon is drawn
    at the horizon as an open triangle; interval ends beyond it stop at the horizon line.
    Each data line's label is the other keys' values ("" with one key)."""
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    from ..plots import legend_on_top

    points = [p for p, _ in runs]
    keys = list(points[0])
    first, others = keys[0], keys[1:]
    xs_raw = list(dict.fromkeys(_hashable(p[first]) for p in points))
    values = [next(p[first] for p in points if _hashable(p[first]) == h) for h in xs_raw]
    numeric = _numeric(values)
    x_of = dict(zip(xs_raw, numeric if numeric is not None else range(len(values)),
                    strict=True))
    series: dict[tuple, list[tuple[float, Results]]] = {}
    for point, res in runs:
        tag = tuple(_hashable(point[k]) for k in others)
        series.setdefault(tag, []).append((x_of[_hashable(point[first])], res))

    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax_m, ax_p = fig.subplots(1, 2)
    horizon = _month_date(runs[0][1].grid.label(runs[0][1].grid.num_months - 1))
    markers = "osD^vP*X"
    censored_any = False
    for i, (tag, members) in enumerate(series.items()):
        members.sort(key=lambda m: m[0])
        x = np.array([m[0] for m in members], dtype=float)
        label = ", ".join(f"{k.split('.')[-1]}={_short(v)}"
                          for k, v in zip(others, tag, strict=True))
        color = f"C{i % 10}"
        stats = [_point_stats(r) for _, r in members]
        rep = [s["median_repayment_month"] for s in stats]
        med = [_month_date(r["value"]) if r["value"] else horizon for r in rep]
        lo = [_month_date(r["ci95_low"]) if r["ci95_low"] else horizon for r in rep]
        hi = [_month_date(r["ci95_high"]) if r["ci95_high"] else horizon for r in rep]
        y = mdates.date2num(med)
        yerr = np.array([y - mdates.date2num(lo), mdates.date2num(hi) - y])
        cont = ax_m.errorbar(x, y, yerr=np.maximum(yerr, 0), fmt="-",
                             marker=markers[i % len(markers)], capsize=4, color=color,
                             label=label or "median repayment month")
        cont.lines[0].set_gid("median_repayment_month")
        out = np.array([r["value"] is None for r in rep])
        if out.any():
            censored_any = True
            ax_m.plot(x[out], y[out], "^", ms=11, mfc="white", color=color, zorder=3)
        p = np.array([s["p_repaid_by_horizon"]["value"] for s in stats])
        p_lo = np.array([s["p_repaid_by_horizon"]["ci95_low"] for s in stats])
        p_hi = np.array([s["p_repaid_by_horizon"]["ci95_high"] for s in stats])
        cont = ax_p.errorbar(x, p, yerr=[p - p_lo, p_hi - p], fmt="-",
                             marker=markers[i % len(markers)], capsize=4, color=color,
                             label=label or "P(repaid by the horizon)")
        cont.lines[0].set_gid("p_repaid_by_horizon")

    ax_m.yaxis.set_major_locator(mdates.AutoDateLocator())
    ax_m.yaxis.set_major_formatter(mdates.ConciseDateFormatter(ax_m.yaxis.get_major_locator()))
    # both panels scaled to the data (the months' axis ran to the horizon, squeezing
    # medians of 2027 into its bottom tenth; the probabilities' ran 0-100% with every
    # point near 100%); the horizon drawn only where the data reach near it
    y0, y1 = ax_m.dataLim.intervaly
    h = mdates.date2num(horizon)
    pad = max(0.08 * (y1 - y0), 45.0)
    if censored_any or y1 + 3 * pad >= h:
        ax_m.axhline(h, color="0.4", ls="--", lw=1)
        ax_m.annotate(f"horizon {horizon:%Y-%m}", (0.01, h),
                      xycoords=("axes fraction", "data"), va="bottom", fontsize=8,
                      color="0.3")
        y1 = max(y1, h)
        pad = max(0.08 * (y1 - y0), 45.0)
    ax_m.set_ylim(y0 - pad, y1 + pad)
    note = " (open triangle: after the horizon)" if censored_any else ""
    ax_m.set(ylabel="median repayment month (95% interval)",
             title="When is Microsoft repaid? Median month" + note)
    p0, p1 = ax_p.dataLim.intervaly
    pad = max(0.1 * (p1 - p0), 0.01)
    bottom = max(0.0, p0 - pad)
    ax_p.set(ylabel="P(repaid by the horizon) (95% interval)",
             ylim=(bottom, min(p1 + pad, 1.0 + 0.04 * (p1 + pad - bottom))),
             title=f"P(Microsoft repaid by {horizon:%Y-%m})")
    # room above 100% for the markers there, but no tick label claims more than 100%
    ax_p.yaxis.set_major_formatter(FuncFormatter(
        lambda v, _: "" if v > 1.0 + 1e-9 else f"{100 * v:.4g}%"))
    xlabel = _axis_label(first, values)
    for ax in (ax_m, ax_p):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if numeric is None:
            ax.set_xticks(range(len(values)), [_name_value(v) for v in values], fontsize=8)
        else:
            ax.set_xticks(sorted(set(numeric)))
            ax.tick_params(axis="x", labelsize=8)
            pad = 0.06 * ((max(numeric) - min(numeric)) or 1.0)
            ax.set_xlim(min(numeric) - pad, max(numeric) + pad)
        if others:  # in a band above the points (best placed, it sat on some)
            legend_on_top(ax, *ax.get_ylim())
            ax.get_legend().set_title(", ".join(k.split(".")[-1] for k in others),
                                      prop={"size": 8})
    if any(getattr(r, "conditioned", None) is not None for _, r in runs):
        fig.suptitle("conditioned on the config's observations", fontsize=9)
    return fig


def _short(v: Any) -> str:
    """A value in a legend: 1.3e+10, 0.1, "-40%/yr"."""
    if isinstance(v, float) and not isinstance(v, bool):
        return f"{v:g}"
    return _name_value(v) if not isinstance(v, tuple) else str(v[1])


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, _hashable(x)) for k, x in v.items())))
    if isinstance(v, list):
        return ("list", tuple(_hashable(x) for x in v))
    return v


def plot_sweep(runs: Runs, path: Path, dpi: int = 110) -> Path:
    """:func:`sweep_figure` saved as a PNG at ``path``."""
    sweep_figure(runs).savefig(path, dpi=dpi)
    return path
