"""Compare finished runs: their headline numbers side by side, each difference with its
standard error, and their fan charts and repayment CDFs overlaid.

Works from the report directories alone (``summary.json``), so runs done on other machines
or days compare as well. A run with observations is compared on its conditioned block
(the output says "conditioned on N observations"). The rows: mean and median cumulative
Azure spend at the horizon, P(not repaid by the horizon), the median repayment month and
the median revenue-share cap month (absolute months; their differences in months), P(Azure
commitment met) where a run has a commitment, two horizon totals and P(repaid by) two
months. The error of a difference treats the runs as independent,
``se = sqrt(se_a^2 + se_b^2)``; runs sharing a seed are positively correlated, for which
this overstates the error (conservative: the text says so and points to ``mcsim compare
--paired``, :mod:`mcsim.paired`, which runs two configs on common paths). A median's
standard error is read off its 95% interval as half its width over 1.96. "±" is 1.96
standard errors (95%).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import _MISSING, ConfigError
from ..months import parse_month
from .format import json_restore, money_text
from .outdir import output_directory
from .summary import READABLE_SCHEMAS, SCHEMA

Z_95 = 1.959964


def load_summary(out_dir: str | Path) -> dict:
    """The summary.json of a report directory (or that file itself), checked against the
    keys a comparison reads: ConfigError naming the file, the key that is wrong and what
    was expected, where there is none, or it is not one mcsim wrote."""
    path = Path(out_dir) if Path(out_dir).is_file() else Path(out_dir) / "summary.json"
    summary = read_summary(path)
    _check(summary, COMPARED, path, "")
    conditioned = summary.get("conditioned")  # empty or null: the run's own block is read
    if conditioned:
        _check(conditioned, _CONDITIONED, path, "conditioned.")
    _check_lengths(summary, path, "")
    if conditioned:
        _check_lengths(conditioned, path, "conditioned.")
    return summary


def read_summary(path: str | Path) -> dict:
    """A summary.json as a JSON object with a schema mcsim writes; ConfigError naming the
    file where it cannot be read, is not UTF-8 JSON, or holds something else."""
    src = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("<file>", src, f"a readable summary.json ({exc.strerror or exc})",
                          source=src) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("<file>", f"byte {exc.start}", "UTF-8 text (a summary.json "
                          "mcsim wrote)", source=src) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:  # truncated or not JSON at all
        raise ConfigError("<json>", str(exc), "valid JSON (a summary.json mcsim wrote)",
                          source=src) from None
    except RecursionError:
        raise ConfigError("<json>", "<nested too deeply>", "a summary.json mcsim wrote",
                          source=src) from None
    if not isinstance(doc, dict):
        raise ConfigError("<document>", doc, f"a JSON object {{\"schema\": "
                          f"\"{SCHEMA}\", ...}} (a summary.json mcsim wrote)", source=src)
    if doc.get("schema") not in READABLE_SCHEMAS:
        raise ConfigError("schema", doc.get("schema", _MISSING),
                          " or ".join(f'"{s}"' for s in READABLE_SCHEMAS) +
                          " (a summary.json mcsim wrote)", source=src)
    return doc


def load_provenance(path: str | Path) -> dict:
    """The provenance of a summary.json, checked for everything a rerun needs
    (``mcsim reproduce``), with ``config_resolved`` restored to the TOML document
    (:func:`mcsim.report.format.json_restore`). ConfigError naming the file and key."""
    summary = read_summary(path)
    _check(summary, {"provenance": PROVENANCE}, path, "")
    prov = dict(summary["provenance"])
    try:
        prov["config_resolved"] = json_restore(prov["config_resolved"])
    except (ValueError, TypeError, RecursionError):
        raise ConfigError("provenance.config_resolved", "<not restorable>", "the resolved "
                          "config as mcsim stores it (numbers, strings, tables)",
                          source=str(path)) from None
    return prov


class _Leaf(NamedTuple):
    """A value's expected form: its wording in an error, and the test."""

    text: str
    ok: Callable[[Any], bool]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_month(v: Any) -> bool:
    try:
        parse_month(v)
    except ValueError:
        return False
    return True


def _list(item: _Leaf) -> _Leaf:
    return _Leaf(f"a non-empty list, each item {item.text}",
                 lambda v: isinstance(v, list) and bool(v) and all(item.ok(x) for x in v))


NUMBER = _Leaf("a number", _is_number)
NUMBER_OR_NULL = _Leaf("a number or null", lambda v: v is None or _is_number(v))
MONTH = _Leaf('a month "YYYY-MM"', _is_month)
MONTH_OR_NULL = _Leaf('a month "YYYY-MM" or null', lambda v: v is None or _is_month(v))
INTEGER = _Leaf("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = _Leaf("a string", lambda v: isinstance(v, str))
ANY = _Leaf("anything", lambda v: True)
#: a spec is a _Leaf or a dict of specs (a key ending in "?" may be absent)
_QUANTILE_SERIES = {"value": _list(NUMBER_OR_NULL), "ci95_low": _list(NUMBER_OR_NULL),
                    "ci95_high": _list(NUMBER_OR_NULL)}
_MEDIAN_MONTH = {"month": MONTH_OR_NULL, "ci95_low": MONTH_OR_NULL,
                 "ci95_high": MONTH_OR_NULL}
_EVENT = {"probability_not_by_horizon": NUMBER, "probability_not_by_horizon_se": NUMBER_OR_NULL,
          "quantiles": {"p50": _MEDIAN_MONTH},
          "cdf": {"months": _list(MONTH), "probability": _list(NUMBER), "se": _list(NUMBER)}}
_TOTAL = {"mean": NUMBER_OR_NULL, "mean_se": NUMBER_OR_NULL}
#: the statistics a comparison reads, in a run's own block and in its conditioned one
_STATISTICS = {
    "cumulative_azure_spend": {"months": _list(MONTH), "mean": _list(NUMBER_OR_NULL),
                               "mean_se": _list(NUMBER_OR_NULL),
                               "quantiles": {p: _QUANTILE_SERIES
                                             for p in ("p5", "p50", "p95")}},
    "repayment": _EVENT,
    "revenue_share_cap_reached?": {"quantiles?": {"p50?": _MEDIAN_MONTH}},
    "azure_commitment_met?": {"probability_not_by_horizon": NUMBER,
                              "probability_not_by_horizon_se": NUMBER_OR_NULL},
    "horizon": {"microsoft_net": _TOTAL, "deepest_cumulative_loss": _TOTAL},
}
#: what ``mcsim compare`` reads of a summary.json (README, "summary.json")
COMPARED = {
    "grid": {"horizon": MONTH},
    "paths": INTEGER,
    "provenance?": {"seed?": ANY},
    **_STATISTICS,
    "conditioned?": _Leaf("a table of conditioned statistics, or null",
                          lambda v: v is None or isinstance(v, dict)),
}
_CONDITIONED = {"observations?": _Leaf("a list", lambda v: isinstance(v, list)),
                "conditioning_method?": TEXT, **_STATISTICS}
#: what ``mcsim reproduce`` reads: the provenance a run needs to be run again
PROVENANCE = {
    "config_resolved": _Leaf("the resolved config, a table", lambda v: isinstance(v, dict)),
    "config_text": TEXT,
    "config_sha256": TEXT,
    "config_path?": TEXT,
    "paths": _Leaf("a positive integer", lambda v: INTEGER.ok(v) and v >= 1),
    "seed": _Leaf("an integer in [0, 2^63)", lambda v: INTEGER.ok(v) and 0 <= v < 2**63),
    "dtype": _Leaf('"float32" or "float64"', lambda v: v in ("float32", "float64")),
    "mcsim_version?": TEXT, "jax_version?": TEXT,
}


def _describe(spec: Any) -> str:
    if isinstance(spec, _Leaf):
        return spec.text
    keys = ", ".join(k.rstrip("?") for k in spec if not k.endswith("?"))
    return f"a table with {keys}" if keys else "a table"


def _check(doc: Any, spec: Any, path: str | Path, where: str) -> None:
    """Raise ConfigError (naming ``path``, the dotted key and the expected form) at the
    first value of ``doc``, in the spec's order, that does not fit ``spec``."""
    schema = f" (as mcsim run writes summary.json, schema {SCHEMA})"
    stack = [(doc, spec, where)]
    while stack:
        value, form, key = stack.pop()
        name = key.rstrip(".") or "<document>"
        if value is _MISSING:
            raise ConfigError(name, _MISSING, _describe(form) + schema, source=str(path))
        if isinstance(form, _Leaf):
            if not form.ok(value):
                raise ConfigError(name, value, form.text + schema, source=str(path))
            continue
        if not isinstance(value, dict):
            raise ConfigError(name, value, _describe(form) + schema, source=str(path))
        for k, sub in reversed(form.items()):  # popped in the spec's order
            field = k.rstrip("?")
            if field in value or not k.endswith("?"):
                stack.append((value.get(field, _MISSING), sub, f"{key}{field}."))


def _check_lengths(stats: dict, path: Path, where: str) -> None:
    """Series of one statistic run over the same months (a chart pairs them item by item)."""
    cum = stats.get("cumulative_azure_spend")
    series = {"cumulative_azure_spend": (cum, [cum["mean"], cum["mean_se"]] + [
        cum["quantiles"][p][k] for p in ("p5", "p50", "p95")
        for k in ("value", "ci95_low", "ci95_high")])}
    rep = stats["repayment"]["cdf"]
    series["repayment.cdf"] = (rep, [rep["probability"], rep["se"]])
    for name, (block, lists) in series.items():
        if any(len(x) != len(block["months"]) for x in lists):
            raise ConfigError(f"{where}{name}", "<series of different lengths>",
                              f"one value per month of {where}{name}.months "
                              f"({len(block['months'])})", source=str(path))


def statistics_block(summary: dict) -> dict:
    """The block a comparison reads: the conditioned statistics where the run has them
    (``summary["conditioned"]``), else the run's own."""
    return summary.get("conditioned") or summary


def condition_text(summary: dict) -> str:
    """How a run's compared numbers were made: "conditioned on N observations (method,
    effective sample size)" or "prior (no observations)"."""
    cond = summary.get("conditioned")
    if not cond:
        return "prior (no observations)"
    n = len(cond.get("observations", []))
    method = cond.get("conditioning_method", "importance")
    ess = cond.get("effective_sample_size")
    ess_text = f", effective sample size {ess:,.0f}" if isinstance(ess, int | float) else ""
    return f"conditioned on {n} observation{'s' * (n != 1)} ({method}{ess_text})"


def _median_se(block: dict) -> tuple[float | None, float | None]:
    p = block["quantiles"]["p50"]
    value, lo, hi = (p[k] if not isinstance(p[k], list) else p[k][-1]
                     for k in ("value", "ci95_low", "ci95_high"))
    if value is None or lo is None or hi is None:
        return value, None
    return value, (hi - lo) / (2 * Z_95)


def _month_number(label: str | None) -> int | None:
    return None if label is None else parse_month(label)


def _median_month(block: dict | None) -> tuple[float | None, float | None]:
    """A first-passage month's median as an absolute month number (``12*year + month-1``;
    None where it lies beyond the horizon) and its standard error read off its 95%
    interval (None where the interval reaches beyond the horizon)."""
    if not block or "p50" not in block.get("quantiles", {}):
        return None, None
    p = block["quantiles"]["p50"]
    value = _month_number(p["month"])
    lo, hi = _month_number(p["ci95_low"]), _month_number(p["ci95_high"])
    if value is None or lo is None or hi is None:
        return value, None
    return float(value), (hi - lo) / (2 * Z_95)


def headline(summary: dict) -> dict[str, tuple[float | None, float | None, str]]:
    """name -> (value, standard error, unit) of the numbers a comparison reports, from the
    conditioned block where the run has one (:func:`statistics_block`). Units: "$",
    "probability" or "month" (an absolute month number, shown as YYYY-MM; a difference of
    two in months)."""
    block = statistics_block(summary)
    cum = block["cumulative_azure_spend"]
    horizon = summary["grid"]["horizon"]
    rep = block["repayment"]
    out = {
        f"mean cumulative Azure spend by {horizon}": (cum["mean"][-1], cum["mean_se"][-1], "$"),
        f"median cumulative Azure spend by {horizon}": (*_median_se(cum), "$"),
        f"P(Microsoft not repaid by {horizon})": (
            rep["probability_not_by_horizon"], rep["probability_not_by_horizon_se"],
            "probability"),
        "median repayment month": (*_median_month(rep), "month"),
    }
    if "revenue_share_cap_reached" in block:
        out["median revenue-share cap month"] = (
            *_median_month(block["revenue_share_cap_reached"]), "month")
    met = block.get("azure_commitment_met")
    if met is not None and met["probability_not_by_horizon"] < 1.0:
        out[f"P(Azure commitment met by {horizon})"] = (
            1.0 - met["probability_not_by_horizon"], met["probability_not_by_horizon_se"],
            "probability")
    for name in ("microsoft_net", "deepest_cumulative_loss"):
        h = block["horizon"][name]
        out[f"mean {name.replace('_', ' ')}"] = (h["mean"], h["mean_se"], "$")
    months = rep["cdf"]["months"]
    cdf, se = rep["cdf"]["probability"], rep["cdf"]["se"]
    for label in (months[len(months) // 2], months[-1]):
        i = months.index(label)
        out[f"P(repaid by {label})"] = (cdf[i], se[i], "probability")
    return out


def _fmt(value: float | None, unit: str, *, difference: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "not by the horizon" if unit == "month" and not difference else "n/a"
    if unit == "$":
        return money_text(value)
    if unit == "month":
        if difference:
            return f"{value:+.1f} months" if value else "0 months"
        m = int(round(value))
        return f"{m // 12:04d}-{m % 12 + 1:02d}"
    return f"{value:.4f}"


def _fmt_se(value: float, unit: str) -> str:
    return _fmt(value, unit, difference=True).lstrip("+") if unit == "month" \
        else _fmt(value, unit)


def _shared_seed(summaries: list[dict]) -> tuple[int, int] | None:
    """(seed, paths) where every run has the same of both, else None."""
    keys = {(s.get("provenance", {}).get("seed"), s.get("paths")) for s in summaries}
    if len(keys) == 1:
        seed, paths = keys.pop()
        if seed is not None and paths is not None:
            return seed, paths
    return None


def compare_text(summaries: list[dict], names: list[str]) -> str:
    """A table: each run's headline numbers, then each later run minus the first with the
    standard error of the difference and the difference in standard errors (z). Where a
    run has a conditioned block, its conditioned numbers are compared (and said so)."""
    heads = [headline(s) for s in summaries]
    lines = ["± = 1.96 × SE, 95%; the error of a difference treats the runs as "
             "independent, sqrt(SE_a² + SE_b²)"]
    for name, s in zip(names, summaries, strict=True):
        lines.append(f"{name}: {condition_text(s)}, {s.get('paths', 0):,} paths")
    conditioned = {bool(s.get("conditioned")) for s in summaries}
    if len(conditioned) > 1:
        lines.append("note: some runs are conditioned on observations and some are not: "
                     "their differences mix a posterior with a prior")
    shared = _shared_seed(summaries)
    if shared is not None and len(summaries) > 1:
        lines.append(f"note: these runs share seed {shared[0]} and {shared[1]:,} paths, so "
                     "their errors are correlated and the ± of a difference overstates it; "
                     "`mcsim compare --paired A.toml B.toml` gives paired errors")
    keys = list(dict.fromkeys(k for h in heads for k in h))
    for key in keys:
        unit = next(h[key][2] for h in heads if key in h)
        lines.append(key)
        for name, h in zip(names, heads, strict=True):
            v, se, _ = h.get(key, (None, None, unit))
            lines.append(f"  {name}: {_fmt(v, unit)}" + (f" ± {_fmt_se(Z_95 * se, unit)}"
                                                         if se is not None else ""))
        v0, se0, _ = heads[0].get(key, (None, None, unit))
        for name, h in zip(names[1:], heads[1:], strict=True):
            v, se, _ = h.get(key, (None, None, unit))
            if v is None or v0 is None:
                continue
            diff = v - v0
            if se is None or se0 is None:
                lines.append(f"  {name} - {names[0]}: {_fmt(diff, unit, difference=True)}")
                continue
            se_d = math.hypot(se, se0)
            z = f" (z = {diff / se_d:.1f})" if se_d > 0 else ""
            lines.append(f"  {name} - {names[0]}: {_fmt(diff, unit, difference=True)} ± "
                         f"{_fmt_se(Z_95 * se_d, unit)}{z}")
    return "\n".join(lines)


def plot_compare(summaries: list[dict], names: list[str], path: Path) -> Path:
    """compare.png: :func:`compare_figure` saved to ``path``."""
    compare_figure(summaries, names).savefig(path, dpi=110)
    return path


def compare_figure(summaries: list[dict], names: list[str]):
    """Fan charts (median and 5-95% band) and repayment CDFs of every run (conditioned
    where a run has a conditioned block), overlaid on date axes (matplotlib dates: each
    month at its first day), each run in its own colour and line style, bands translucent,
    a legend by run name. A matplotlib Figure (no pyplot)."""
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.figure import Figure

    def dates(labels):
        return np.array([np.datetime64(m, "D") for m in labels])

    from ..plots import HATCHES, legend_on_top

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_fan, ax_cdf = fig.subplots(1, 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    styles = ["-", "--", "-.", ":"]
    last_change = 0  # the survival panel stops a year after the last run's last change
    for k, (s, name) in enumerate(zip(summaries, names, strict=True)):
        c, ls = colors[k % len(colors)], styles[k % len(styles)]
        block = statistics_block(s)
        label = name + (" (conditioned)" if s.get("conditioned") else "")
        cum = block["cumulative_azure_spend"]
        x = dates(cum["months"])
        q = cum["quantiles"]

        def series(p, q=q):
            return np.array([np.nan if v is None else v / 1e9 for v in q[p]["value"]])

        # the 2nd, 3rd, ... run's band hatched: identical bands blended into one colour
        look = ({"color": c, "alpha": 0.12} if k == 0 else
                {"facecolor": "none", "edgecolor": c, "alpha": 0.5,
                 "hatch": HATCHES[(k - 1) % len(HATCHES)]})
        ax_fan.fill_between(x, series("p5"), series("p95"), lw=0, **look)
        for p in ("p5", "p95"):
            ax_fan.plot(x, series(p), color=c, lw=0.8, ls=ls, alpha=0.7)
        ax_fan.plot(x, series("p50"), color=c, lw=2, ls=ls, alpha=0.9,
                    label=f"{label}: median, 5-95%")
        rep = block["repayment"]["cdf"]
        xr = dates(rep["months"])
        # one convention everywhere (mcsim.plots.plot_survival): S(m) = P(not yet repaid)
        surv = 1.0 - np.array(rep["probability"])
        changes = np.flatnonzero(np.diff(surv) != 0)
        last_change = max(last_change, int(changes[-1]) + 1 if len(changes) else 0)
        ax_cdf.step(xr, surv, where="post", color=c, lw=2, ls=ls, alpha=0.9,
                    label=f"{label}: {surv[-1]:.1%} not by {rep['months'][-1]}")
        lo = np.clip(surv - Z_95 * np.array(rep["se"]), 0, 1)
        hi = np.clip(surv + Z_95 * np.array(rep["se"]), 0, 1)
        ax_cdf.fill_between(xr, lo, hi, step="post", color=c, alpha=0.2, lw=0)
    ax_fan.set(xlabel="month", ylabel="cumulative Azure spend ($B)",
               title="Cumulative Azure spend")
    ax_cdf.set(xlabel="month", ylabel="S(m) = P(not yet repaid by month m)",
               title="Microsoft not yet repaid, with 95% bands")
    # the x axis to the data: a year (or an eighth of the grid) after the last change, so
    # a curve that reaches 0 early does not leave most of the width empty (the legend
    # says each run's "not by the horizon")
    months = len(xr)
    stop = last_change + max(12, months // 8)
    if stop < months:
        ax_cdf.set_xlim(xr[0], xr[stop])
    ax_cdf.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    for ax in (ax_fan, ax_cdf):
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
    # the fan's legend where spend is still small; the survival curves start at S = 1 at
    # the left, so their legend goes in a band above them (it sat on the curves there)
    ax_fan.legend(fontsize=8, loc="upper left", framealpha=0.8)
    legend_on_top(ax_cdf, -0.03, 1.02)
    return fig


def write_compare(summaries: list[dict], names: list[str], out_dir: str | Path, *,
                  force: bool = False) -> Path:
    """compare.txt (:func:`compare_text`) and compare.png (:func:`plot_compare`), written
    atomically into ``out_dir`` (:mod:`mcsim.report.outdir`); returns it."""
    out_dir = Path(out_dir)
    text = compare_text(summaries, names)
    with output_directory(out_dir, force=force) as tmp:
        (tmp / "compare.txt").write_text(text + "\n")
        plot_compare(summaries, names, tmp / "compare.png")
    return out_dir
