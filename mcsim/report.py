"""Report: turn :class:`~mcsim.results.Results` into summary.json, CSV tables and plots.

``summarize`` returns plain data; ``write_report`` writes files (into a staging directory
swapped into place at the end, :mod:`mcsim.outdir`, so a failed run never leaves a
half-written report, and an earlier report at the same place survives a failure);
``format_summary`` gives the short terminal text.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import __version__
from .accumulators import MoneyBins
from .layout import ANNUAL_FLOWS, HORIZON_TOTALS
from .outdir import output_directory
from .results import DEFAULT_PERCENTILES, MonthDistribution, QuantileTable, Results

SCHEMA = "mcsim.summary/1"
NOT_BY_HORIZON = "not by the horizon"


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pkey(p: float) -> str:
    return f"p{p:g}"


def _beyond(v) -> str | None:
    """"above" / "below" for a quantile beyond the histogram's range (+-inf), else None."""
    v = float(v)
    return None if not math.isinf(v) else ("above" if v > 0 else "below")


def _quantile_block(q: QuantileTable, i: int | slice) -> dict:
    """Each percentile's value and 95% interval; ``beyond_range`` is "above" (or "below")
    where the quantile lies beyond the histogram's range (value null, the interval from the
    range's edge), else null."""
    out = {}
    for j, p in enumerate(q.percentiles):
        val, lo, hi = q.value[i, j], q.ci_low[i, j], q.ci_high[i, j]
        if isinstance(i, slice):
            out[_pkey(p)] = {"value": [_num(v) for v in val],
                             "ci95_low": [_num(v) for v in lo],
                             "ci95_high": [_num(v) for v in hi],
                             "beyond_range": [_beyond(v) for v in val]}
        else:
            out[_pkey(p)] = {"value": _num(val), "ci95_low": _num(lo), "ci95_high": _num(hi),
                             "beyond_range": _beyond(val)}
    return out


def _month_text(results: Results, m: int | None) -> str:
    return results.month_label(m) if m is not None else NOT_BY_HORIZON


def _month_block(results: Results, dist: MonthDistribution) -> dict:
    quantiles = {}
    for p, (m, lo, hi) in dist.quantiles.items():
        quantiles[_pkey(p)] = {
            "month": results.month_label(m),
            "label": _month_text(results, m),
            "ci95_low": results.month_label(lo),
            "ci95_low_label": _month_text(results, lo),
            "ci95_high": results.month_label(hi),
            "ci95_high_label": _month_text(results, hi),
        }
    return {
        "probability_not_by_horizon": dist.censored,
        "probability_not_by_horizon_se": dist.censored_se,
        "quantiles": quantiles,
        "cdf": {"months": results.grid.labels,
                "probability": [float(v) for v in dist.cdf],
                "se": [float(v) for v in dist.cdf_se]},
    }


def json_safe(value):
    """A TOML document as strict JSON: inf and nan become {"__float__": "inf"} (see
    :func:`json_restore`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def json_restore(value):
    """Inverse of :func:`json_safe`."""
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


def provenance(results: Results) -> dict:
    cfg, info = results.config, results.info
    return {
        "mcsim_version": __version__,
        "jax_version": info.jax_version,
        "device": info.device,
        "num_devices": info.num_devices,
        "num_processes": info.num_processes,
        "kernel_options": info.options._asdict(),
        "batch": info.batch,
        "conditioned": results.conditioned is not None,
        "dtype": info.dtype,
        "paths": info.paths,
        "seed": info.seed,
        "chunk_size": info.chunk_size,
        "run_seconds": round(info.seconds, 3),
        "compile_seconds": round(info.compile_seconds, 3),
        "config_path": cfg.source_path,
        "config_sha256": hashlib.sha256(cfg.source_text.encode()).hexdigest(),
        "config_text": cfg.source_text,
        "config_resolved": json_safe(cfg.resolved),
        "reproduce": "mcsim reproduce THIS_FILE --out DIR (config_resolved with the paths, "
                     "seed and dtype above)",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _nonfinite_block(results: Results) -> dict:
    """Paths with a NaN or inf: how many, which month first, how many by first month."""
    acc, grid = results.accumulator, results.grid
    counts = acc.nonfinite_months
    months = [int(m) for m in np.flatnonzero(counts)]
    def label(m):
        return (grid.label(m) if m < grid.num_months else "unlocated")
    return {
        "paths": acc.nonfinite_paths,
        "fraction": acc.nonfinite_paths / max(acc.paths, 1),
        "max_fraction": results.config.simulation.max_nonfinite_fraction,
        "first_month": label(months[0]) if months else None,
        "by_first_month": {label(m): int(counts[m]) for m in months},
        "rule": "a path with a NaN or inf in any flow is counted here and left out of "
                "every statistic; above max_fraction the run fails instead",
    }


def _statistics(results: Results, percentiles) -> dict:
    """The distributions a run reports: cumulative spend by month, annual flows, horizon
    totals and the two first-passage months (prior or conditioned alike)."""
    grid = results.grid
    cum_q = results.quantiles("cumulative_azure_spend", percentiles)
    cum_m, cum_se = results.mean("cumulative_azure_spend")
    annual = {"years": grid.year_labels(), "partial": grid.year_is_partial()}
    for flow in ANNUAL_FLOWS:
        q = results.quantiles(flow, percentiles)
        m, se = results.mean(flow)
        annual[flow] = {"mean": [_num(v) for v in m], "mean_se": [_num(v) for v in se],
                        "quantiles": _quantile_block(q, slice(None))}
    hq = results.quantiles("horizon", percentiles)
    hm, hse = results.mean("horizon")
    horizon = {name: {"mean": _num(hm[i]), "mean_se": _num(hse[i]),
                      "quantiles": _quantile_block(hq, i)}
               for i, name in enumerate(HORIZON_TOTALS)}
    return {
        "cumulative_azure_spend": {
            "months": grid.labels,
            "mean": [_num(v) for v in cum_m],
            "mean_se": [_num(v) for v in cum_se],
            "quantiles": _quantile_block(cum_q, slice(None)),
        },
        "annual": annual,
        "repayment": _month_block(results, results.repayment),
        "credit_exhaustion": _month_block(results, results.credit_exhaustion),
        "horizon": horizon,
    }


MEAN_SE_METHOD = {
    "none": "sqrt(sample variance / paths)",
    "antithetic": "sqrt(sample variance of the antithetic pairs' means / pairs)",
    "sobol": "sqrt(sample variance / paths), the i.i.d. formula: with scrambled Sobol "
             "parameters the true error is usually smaller (benchmarks/variance_reduction.py "
             "measures it over independent scramblings)",
}


def _conditioned_block(results: Results, percentiles) -> dict:
    cond = results.conditioned
    obs = [{"name": o.name, "flow": o.flow, "start": o.start, "end": o.end,
            "value": o.value, "sd": o.sd} for o in results.config.observations]
    return {
        "observations": obs,
        "paths": cond.num_paths,
        "reference_log_likelihood": cond.reference_loglik,
        "effective_sample_size": cond.ess,
        "ess_fraction": cond.ess_fraction,
        "warning": cond.warning,
        "method": "paths weighted by their likelihood of the observations (independent "
                  "Gaussian errors) relative to the best path of the run "
                  "(reference_log_likelihood), self-normalized; the effective sample size "
                  "(Kish, over paths) replaces the number of paths in every interval; "
                  "means carry the delta-method error",
        **_statistics(cond, percentiles),
    }


def summarize(results: Results, percentiles=DEFAULT_PERCENTILES) -> dict:
    """Everything MODEL.md's "What every run reports" asks, as JSON-ready data; with
    observations, the same again conditioned on them (``"conditioned"``)."""
    grid = results.grid
    reduction = results.config.simulation.variance_reduction
    return {
        "schema": SCHEMA,
        "provenance": provenance(results),
        "grid": {"start": grid.label(0), "horizon": grid.label(grid.num_months - 1),
                 "months": grid.num_months},
        "method": {
            "percentiles": list(percentiles),
            "quantile_ci": "95% interval from order statistics n*p -+ 1.96*sqrt(n*p*(1-p)), "
                           "widened to the edges of the histogram bins holding them",
            "bin_relative_width": results.bins.relative_width,
            "histogram_range": [-10.0 ** results.bins.max_exponent,
                                10.0 ** results.bins.max_exponent],
            "beyond_range": "a money quantile beyond histogram_range ($) has value null and "
                            "beyond_range \"above\" (or \"below\"); its interval runs from "
                            "the range's edge (the other end null: unbounded)",
            "variance_reduction": reduction,
            "mean_se": MEAN_SE_METHOD[reduction],
            "month_quantile": "smallest month m with P(event by m) >= p; null when beyond "
                              "the horizon",
        },
        "paths": results.num_paths,
        "nonfinite_paths": results.accumulator.nonfinite_paths,
        "nonfinite": _nonfinite_block(results),
        **({"precision": results.precision} if results.precision else {}),
        "investment": results.config.deal.investment,
        **_statistics(results, percentiles),
        **({"conditioned": _conditioned_block(results, percentiles)}
           if results.conditioned is not None else {}),
    }


# --------------------------------------------------------------------------------------
# tables


def _quantile_columns(percentiles) -> list[str]:
    cols = []
    for p in percentiles:
        k = _pkey(p)
        cols += [k, f"{k}_ci95_low", f"{k}_ci95_high"]
    return cols


def _quantile_cells(q: QuantileTable, i: int) -> list:
    cells = []
    for j in range(len(q.percentiles)):
        cells += [q.value[i, j], q.ci_low[i, j], q.ci_high[i, j]]
    return cells


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else
                        (f"{v:.10g}" if isinstance(v, float | np.floating) else v)
                        for v in row])


def write_tables(results: Results, out: Path, percentiles=DEFAULT_PERCENTILES) -> None:
    grid = results.grid
    q = results.quantiles("cumulative_azure_spend", percentiles)
    m, se = results.mean("cumulative_azure_spend")
    _write_csv(out / "cumulative_azure_spend.csv",
               ["month", "mean", "mean_se"] + _quantile_columns(percentiles),
               [[grid.label(t), m[t], se[t]] + _quantile_cells(q, t)
                for t in range(grid.num_months)])
    rows = []
    for flow in ANNUAL_FLOWS:
        qf = results.quantiles(flow, percentiles)
        mf, sef = results.mean(flow)
        for y, label in enumerate(grid.year_labels()):
            rows.append([flow, label, mf[y], sef[y]] + _quantile_cells(qf, y))
    _write_csv(out / "annual.csv", ["flow", "year", "mean", "mean_se"]
               + _quantile_columns(percentiles), rows)
    rep, cred = results.repayment, results.credit_exhaustion
    _write_csv(out / "repayment_cdf.csv",
               ["month", "p_repaid_by", "p_repaid_by_se", "p_credits_exhausted_by",
                "p_credits_exhausted_by_se"],
               [[grid.label(t), rep.cdf[t], rep.cdf_se[t], cred.cdf[t], cred.cdf_se[t]]
                for t in range(grid.num_months)])
    hq = results.quantiles("horizon", percentiles)
    hm, hse = results.mean("horizon")
    _write_csv(out / "horizon_totals.csv",
               ["statistic", "mean", "mean_se"] + _quantile_columns(percentiles),
               [[name, hm[i], hse[i]] + _quantile_cells(hq, i)
                for i, name in enumerate(HORIZON_TOTALS)])


# --------------------------------------------------------------------------------------
# files, atomically


def write_report(results: Results, out_dir: str | Path, *, plots: bool = True,
                 sample_paths: int = 0, force: bool = False) -> Path:
    """Write summary.json, the CSV tables, the plots and report.html under ``out_dir``;
    returns it.

    ``sample_paths``: also the parameters and monthly flows of the first K paths
    (:mod:`mcsim.sample_paths`).

    The files are written into a staging directory beside ``out_dir`` and moved into
    place only when all are complete; mcsim replaces only files it wrote itself
    (:mod:`mcsim.outdir`), and refuses a non-empty directory it did not write unless
    ``force``.
    """
    out_dir = Path(out_dir)
    with output_directory(out_dir, force=force) as tmp:
        summary = summarize(results)
        with open(tmp / "summary.json", "w") as fh:
            json.dump(summary, fh, indent=1, allow_nan=False)
            fh.write("\n")
        write_tables(results, tmp)
        if plots:
            from . import plots as plotting

            plotting.write_plots(results, tmp)
        from .html_report import write_html

        write_html(summary, tmp)
        if sample_paths:
            from .sample_paths import write_sample_paths

            write_sample_paths(results.config, min(sample_paths, results.num_paths), tmp,
                               results.info.dtype)
    return out_dir


# --------------------------------------------------------------------------------------
# terminal


def money_text(x: float | None) -> str:
    """Dollars for people: ``$1.23B``, ``-$45.6M``, ``$12,345``; ``n/a`` when undefined;
    ``> $10,000T`` beyond the histogram's range (+-inf, see :func:`histogram_quantiles`)."""
    if x is not None and math.isinf(x):
        edge = money_text(10.0 ** MoneyBins().max_exponent)
        return f"> {edge}" if x > 0 else f"< -{edge}"
    if x is None or not math.isfinite(x):
        return "n/a"
    sign, a = ("-" if x < 0 else ""), abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if a >= scale:
            return f"{sign}${a / scale:.3g}{suffix}"  # 3 significant digits: enough for a CI
    return f"{sign}${a:,.0f}"


def _money_ci(q, i: int, j: int) -> str:
    """A quantile with its 95% interval: ``$1.2B [$1.1B..$1.3B]``; an interval end that is
    infinite is open (too few paths, or beyond the histogram's range): ``-inf``/``inf``."""
    low, high = interval_end_text(q.ci_low[i, j]), interval_end_text(q.ci_high[i, j])
    return f"{money_text(q.value[i, j])} [{low}..{high}]"


def interval_end_text(x: float) -> str:
    """An interval end: dollars, or ``-inf``/``inf`` where it is open (null in JSON)."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return money_text(x)


def _month_ci(results: Results, dist: MonthDistribution, pct: float) -> str:
    m, lo, hi = dist.quantiles[float(pct)]
    if lo == hi == m:  # exact to the month, or all beyond the horizon
        return _month_text(results, m)
    return f"{_month_text(results, m)} [{_month_text(results, lo)}..{_month_text(results, hi)}]"


def format_summary(results: Results) -> str:
    """A short text of the headline numbers, each quantile with its 95% interval in [..]."""
    grid = results.grid
    T = grid.num_months
    end = grid.label(T - 1)
    lines = [f"mcsim: {results.num_paths:,} paths, {grid.label(0)} .. {end}, "
             f"seed {results.info.seed}, {results.info.seconds:.1f} s on {results.info.device}"
             "  (quantiles with 95% intervals in [..])"]
    q = results.quantiles("cumulative_azure_spend", (5, 50, 95))
    lines.append(f"  cumulative Azure spend by {end}: median {_money_ci(q, T - 1, 1)}; "
                 f"5%: {_money_ci(q, T - 1, 0)}; 95%: {_money_ci(q, T - 1, 2)}")
    ai = results.quantiles("azure_inference_spend", (50,))
    labels = grid.year_labels()
    shown = ", ".join(f"{labels[y]}: {_money_ci(ai, y, 0)}" for y in range(min(3,
                                                                              len(labels))))
    lines.append(f"  Azure inference spend, median by year: {shown}")
    for title, dist in (("Microsoft repaid", results.repayment),
                        ("Azure credits exhausted", results.credit_exhaustion)):
        lines.append(f"  {title}: median {_month_ci(results, dist, 50)}; "
                     f"5%: {_month_ci(results, dist, 5)}; 95%: {_month_ci(results, dist, 95)}; "
                     f"P(not by the horizon) = {dist.censored:.3f} +- "
                     f"{1.96 * dist.censored_se:.3f}")
    hm, hse = results.mean("horizon")
    hq = results.quantiles("horizon", (50,))
    for i, name in enumerate(HORIZON_TOTALS):
        lines.append(f"  {name.replace('_', ' ')} at {end}: median {_money_ci(hq, i, 0)}, "
                     f"mean {money_text(hm[i])} +- {money_text(1.96 * hse[i])}")
    if results.conditioned is not None:
        cond = results.conditioned
        cq = cond.quantiles("cumulative_azure_spend", (50,))
        lines.append(f"  conditioned on {len(results.config.observations)} observations "
                     f"(effective sample size {cond.ess:,.0f}): cumulative Azure spend by "
                     f"{end}: median {_money_ci(cq, T - 1, 0)}; Microsoft repaid: median "
                     f"{_month_ci(cond, cond.repayment, 50)}; P(not by the horizon) = "
                     f"{cond.repayment.censored:.3f} +- {1.96 * cond.repayment.censored_se:.3f}")
        if cond.warning:
            lines.append(f"  WARNING: {cond.warning}")
    if results.accumulator.nonfinite_paths:
        block = _nonfinite_block(results)
        lines.append(f"  WARNING: {block['paths']:,} paths had a NaN or inf (first in "
                     f"{block['first_month']}) and are left out of every statistic above")
    return "\n".join(lines)
