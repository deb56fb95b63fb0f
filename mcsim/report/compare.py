"""Compare finished runs: their headline numbers side by side, each difference with its
standard error, and their fan charts and repayment CDFs overlaid.

Works from the report directories alone (``summary.json``), so runs done on other machines
or days compare as well. The error of a difference treats the runs as independent,
``se = sqrt(se_a^2 + se_b^2)``; runs sharing a seed are positively correlated, for which
this overstates the error (conservative). A median's standard error is read off its 95%
interval as half its width over 1.96.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ConfigError
from ..months import parse_month
from .format import money_text
from .outdir import output_directory
from .summary import READABLE_SCHEMAS, SCHEMA

Z_95 = 1.959964


def load_summary(out_dir: str | Path) -> dict:
    """The summary.json of a report directory (ConfigError naming ``compare`` where there is
    none, or it is not one mcsim wrote)."""
    path = Path(out_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("compare", str(out_dir),
                          f"a report directory holding summary.json ({exc})") from None
    if summary.get("schema") not in READABLE_SCHEMAS:
        raise ConfigError("compare", str(out_dir), f"a summary.json of schema {SCHEMA}")
    return summary


def _median_se(block: dict) -> tuple[float | None, float | None]:
    p = block["quantiles"]["p50"]
    value, lo, hi = (p[k] if not isinstance(p[k], list) else p[k][-1]
                     for k in ("value", "ci95_low", "ci95_high"))
    if value is None or lo is None or hi is None:
        return value, None
    return value, (hi - lo) / (2 * Z_95)


def headline(summary: dict) -> dict[str, tuple[float | None, float | None, str]]:
    """name -> (value, standard error, unit) of the numbers a comparison reports."""
    cum = summary["cumulative_azure_spend"]
    horizon = summary["grid"]["horizon"]
    out = {
        f"mean cumulative Azure spend by {horizon}": (cum["mean"][-1], cum["mean_se"][-1], "$"),
        f"median cumulative Azure spend by {horizon}": (*_median_se(cum), "$"),
        f"P(Microsoft not repaid by {horizon})": (
            summary["repayment"]["probability_not_by_horizon"],
            summary["repayment"]["probability_not_by_horizon_se"], "probability"),
    }
    for name in ("microsoft_net", "deepest_cumulative_loss"):
        block = summary["horizon"][name]
        out[f"mean {name.replace('_', ' ')}"] = (block["mean"], block["mean_se"], "$")
    months = summary["repayment"]["cdf"]["months"]
    cdf = summary["repayment"]["cdf"]["probability"]
    se = summary["repayment"]["cdf"]["se"]
    for label in (months[len(months) // 2], months[-1]):
        i = months.index(label)
        out[f"P(repaid by {label})"] = (cdf[i], se[i], "probability")
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "$":
        return money_text(value)
    return f"{value:.4f}"


def compare_text(summaries: list[dict], names: list[str]) -> str:
    """A table: each run's headline numbers, then each later run minus the first with the
    standard error of the difference and the difference in standard errors (z)."""
    heads = [headline(s) for s in summaries]
    lines = []
    for key in heads[0]:
        unit = heads[0][key][2]
        lines.append(key)
        for name, h in zip(names, heads, strict=True):
            v, se, _ = h.get(key, (None, None, unit))
            lines.append(f"  {name}: {_fmt(v, unit)}" + (f" +- {_fmt(Z_95 * se, unit)}"
                                                         if se is not None else ""))
        v0, se0, _ = heads[0][key]
        for name, h in zip(names[1:], heads[1:], strict=True):
            v, se, _ = h.get(key, (None, None, unit))
            if v is None or v0 is None:
                continue
            diff = v - v0
            if se is None or se0 is None:
                lines.append(f"  {name} - {names[0]}: {_fmt(diff, unit)}")
                continue
            se_d = math.hypot(se, se0)
            z = diff / se_d if se_d > 0 else math.inf if diff else 0.0
            lines.append(f"  {name} - {names[0]}: {_fmt(diff, unit)} +- "
                         f"{_fmt(Z_95 * se_d, unit)} (z = {z:.1f})")
    return "\n".join(lines)


def plot_compare(summaries: list[dict], names: list[str], path: Path) -> Path:
    """Fan charts (median and 5-95% band) and repayment CDFs of every run, overlaid."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_fan, ax_cdf = fig.subplots(1, 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for k, (s, name) in enumerate(zip(summaries, names, strict=True)):
        c = colors[k % len(colors)]
        cum = s["cumulative_azure_spend"]
        labels = cum["months"]
        x = np.array([parse_month(m) / 12 for m in labels])  # years, as plots.py
        q = cum["quantiles"]

        def series(p, q=q):
            return np.array([np.nan if v is None else v / 1e9 for v in q[p]["value"]])

        ax_fan.fill_between(x, series("p5"), series("p95"), color=c, alpha=0.15)
        ax_fan.plot(x, series("p50"), color=c, lw=2, label=f"{name}: median, 5-95%")
        rep = s["repayment"]["cdf"]
        xr = np.array([parse_month(m) / 12 for m in rep["months"]])
        ax_cdf.step(xr, rep["probability"], where="post", color=c, lw=2, label=name)
        lo = np.clip(np.array(rep["probability"]) - Z_95 * np.array(rep["se"]), 0, 1)
        hi = np.clip(np.array(rep["probability"]) + Z_95 * np.array(rep["se"]), 0, 1)
        ax_cdf.fill_between(xr, lo, hi, step="post", color=c, alpha=0.2, lw=0)
    ax_fan.set(xlabel="year", ylabel="cumulative Azure spend ($B)",
               title="Cumulative Azure spend")
    ax_cdf.set(xlabel="year", ylabel="P(repaid by month)", ylim=(0, 1.02),
               title="Microsoft repaid: CDF with 95% bands")
    for ax in (ax_fan, ax_cdf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=110)
    return path


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
