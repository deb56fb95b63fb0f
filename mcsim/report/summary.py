"""summary.json's content: :func:`summarize` turns :class:`~mcsim.results.Results` into plain,
JSON-ready data (every statistic with its error, the method, the provenance); it writes
nothing (:mod:`mcsim.report.files` does).
"""

from __future__ import annotations

import copy
import hashlib
import math
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..layout import ANNUAL_FLOWS, STOCK_UNITS
from ..results import DEFAULT_PERCENTILES
from .format import _beyond, _num, _pkey, json_safe
from .headline import headline

if TYPE_CHECKING:
    from ..months import MonthGrid
    from ..results import MonthDistribution, QuantileTable, Results

#: version 3 (model version 3): funding, present values and equity blocks when a config
#: uses them; a config that does not writes version 2's keys, same values
SCHEMA = "mcsim.summary/3"
#: Earlier schemas a reader of summaries (compare) still accepts: each only adds keys.
READABLE_SCHEMAS = ("mcsim.summary/1", "mcsim.summary/2", SCHEMA)
MONEY = "nominal US dollars, undiscounted"
REPAID = ("the first month in which what deal.recoup_from counts (profit share, revenue "
          "share, Microsoft's Azure margin), summed from the start, reaches the investment: "
          "an accounting line of the deal, not Microsoft's economic return (see "
          "horizon.microsoft_economic_return)")
NOT_BY_HORIZON = "not by the horizon"


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


def _month_text(grid: MonthGrid, m: int | None) -> str:
    """Month ``m``'s label, or "not by the horizon" where there is none (None)."""
    return grid.label(m) if m is not None else NOT_BY_HORIZON


def _month_block(results: Results, dist: MonthDistribution) -> dict:
    grid = results.grid
    quantiles = {}
    for p, (m, lo, hi) in dist.quantiles.items():
        quantiles[_pkey(p)] = {
            "month": results.month_label(m),
            "label": _month_text(grid, m),
            "ci95_low": results.month_label(lo),
            "ci95_low_label": _month_text(grid, lo),
            "ci95_high": results.month_label(hi),
            "ci95_high_label": _month_text(grid, hi),
        }
    return {
        "probability_not_by_horizon": dist.censored,
        "probability_not_by_horizon_se": dist.censored_se,
        "quantiles": quantiles,
        "cdf": {"months": grid.labels,
                "probability": [float(v) for v in dist.cdf],
                "se": [float(v) for v in dist.cdf_se]},
    }


def provenance(results: Results) -> dict:
    cfg, info = results.config, results.info
    return {
        "mcsim_version": __version__,
        "jax_version": info.jax_version,
        "device": info.device,
        "num_devices": info.num_devices,
        "num_processes": info.num_processes,
        "kernel_options": info.options._asdict(),
        # the month loop asked for but not run, and why (kernel_options: what ran)
        **({"fused_fallback": info.fused_fallback}
           if getattr(info, "fused_fallback", None) else {}),
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
        **_smc_timing(results),
    }


def _smc_timing(results: Results) -> dict:
    """An SMC posterior's seconds per run (tempering and moves): times belong with the
    provenance, the conditioned block holds what the config and seed alone fix."""
    cond = results.conditioned
    if cond is None or getattr(cond, "posterior", None) is None:
        return {}
    from ..posterior import timing

    return {"smc_run_seconds": [round(t, 3) for t in timing(cond.posterior)]}


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


#: summary.json's words for version 3's outputs (MODEL.md "Version 3 additions")
V3_METHOD = {
    "funding": {"cash": "OpenAI's cash K at each year end: funding.cash_0 + funding.rounds "
                        "to date + cumulative (profit - Microsoft's profit share), $; "
                        "negative is money still to be found",
                "funding_to_find": "max(0, -min over the run's months of K), $",
                "funding_gap_keeps_spending": "a path whose cash goes negative keeps "
                                              "spending: the model reports what it would "
                                              "take, not what would happen"},
    "discount": {"present_values": "sums of each month's flow times exp(-discount_rate "
                                   "t / 12), t months since the start; the investment and "
                                   "revenue share paid before the start are not discounted"},
    "equity": {"microsoft_equity_value": "microsoft_equity_stake x valuation_multiple x "
                                         "revenue over the run's last 12 months (all its "
                                         "months when shorter), at the horizon, $",
               "microsoft_whole_position": "Microsoft's economic return + its equity value; "
                                           "with a discount rate, pv_ figures discount the "
                                           "equity from the horizon's month"},
}


def _v3_method(results: Results) -> dict:
    """The method notes of the version-3 mechanisms a run uses."""
    out: dict = {}
    for mechanism in sorted(results.layout.v3):
        out.update(V3_METHOD[mechanism])
    return out


def _v3_terms(config) -> dict:
    """The version-3 inputs that are not parameters: the rounds and the discount rate."""
    out: dict = {}
    if config.funding is not None:
        out["funding_rounds"] = [[month, dollars] for month, dollars in config.funding.rounds]
    if config.simulation.discount_rate is not None:
        out["discount_rate"] = config.simulation.discount_rate
    return out


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
               for i, name in enumerate(results.layout.horizon_totals)}
    stocks = {"years": grid.year_labels(),
              "at": "the last month of each calendar year (the horizon in a partial last "
                    "year)", "units": {s: STOCK_UNITS[s] for s in results.layout.stocks}}
    for name in results.layout.stocks:
        q = results.quantiles(name, percentiles)
        m, se = results.mean(name)
        stocks[name] = {"mean": [_num(v) for v in m], "mean_se": [_num(v) for v in se],
                        "quantiles": _quantile_block(q, slice(None))}
    return {
        "cumulative_azure_spend": {
            "months": grid.labels,
            "mean": [_num(v) for v in cum_m],
            "mean_se": [_num(v) for v in cum_se],
            "quantiles": _quantile_block(cum_q, slice(None)),
        },
        "annual": annual,
        # one block per event of the run's table (mcsim.events), under its summary key
        **{e.summary_key: _month_block(results, results.event(e.name))
           for e in results.layout.events},
        "horizon": horizon,
        "stocks": stocks,
        **({"parameters": {**results.parameter_table,
                           "units": {name: parameter_unit(name)
                                     for name in results.parameter_table["prior"]}}}
           if results.parameter_table else {}),
    }


#: a parameter's unit in a table, from the words of its description
#: (:data:`mcsim.parameters.UNITS`): first match wins; else the description itself
_UNIT_RULES = (
    ("per year, in log", "log per year"),
    ("per year, logistic rate", "per year (logistic)"),
    ("mean reversion per year", "per year (mean reversion)"),
    ("per sqrt(year), of logit", "per sqrt(year) (of logit)"),
    ("per sqrt(year)", "per sqrt(year)"),
    ("years", "years"),
    ("$ per H100-equivalent GPU-hour", "$ per GPU-hour"),
    ("$ per paying subscriber per month", "$ per subscriber per month"),
    ("$ per million API tokens", "$ per million tokens"),
    ("$ per month", "$ per month"),
    ("$ available", "$"),
    ("per $ of revenue", "$ per $ of revenue"),
    ("per $ of its revenue", "x trailing 12-month revenue"),
    ("API price over inference cost", "x inference cost"),
    ("tokens served per month", "tokens per month"),
    ("tokens per GPU-hour", "tokens per GPU-hour"),
    ("paying subscribers per weekly active user", "fraction"),
    ("weekly active users", "users"),
)


def parameter_unit(name: str) -> str:
    """A drawn parameter's unit, short, for the report's parameter table: ``"log per
    year"``, ``"$ per GPU-hour"``, ``"fraction"``, ``"years"``, ... (read from its
    description in :data:`mcsim.parameters.UNITS`; a share, utilization, conversion or
    margin is a fraction)."""
    from ..parameters import UNITS

    text = UNITS.get(name, "")
    for words, unit in _UNIT_RULES:
        if words in text:
            return unit
    if any(w in text for w in ("fraction", "share", "utilization", "conversion",
                               "margin")):
        return "fraction"
    return text


MEAN_SE_METHOD = {
    "none": "sqrt(sample variance / paths)",
    "antithetic": "sqrt(sample variance of the antithetic pairs' means / pairs)",
    "sobol": "sqrt(sample variance / paths), the i.i.d. formula: with scrambled Sobol "
             "parameters the true error is usually smaller (benchmarks/variance_reduction.py "
             "measures it over independent scramblings)",
}


IMPORTANCE_METHOD = ("paths weighted by their likelihood of the observations (independent "
                     "Gaussian errors) relative to the best path of the run "
                     "(reference_log_likelihood), self-normalized; the effective sample size "
                     "(Kish, over paths) replaces the number of paths in every interval; "
                     "means carry the delta-method error")
SMC_METHOD = ("independent tempered SMC runs (runs, of particles paths each: moves on the "
              "paths' latent normals, [conditioning] move), each final particle forecast as "
              "one path and the runs pooled; resampling makes one run's particles dependent, "
              "so errors come from the spread of the independent runs: a mean's error is the "
              "sd of the runs' means over sqrt(runs), and every interval counts the "
              "independent paths its own statistic is worth (the pooled particles over the "
              "design effect that spread measures for it: a quantile's from its statistic's "
              "mean, an event's months from its cumulative probabilities); "
              "effective_sample_size is the pooled particles over the design effect "
              "averaged over the statistics")


def plain(value: Any) -> Any:
    """Plain JSON data: NumPy scalars and arrays as Python numbers and lists, tuples as
    lists, and a non-finite number as null (an undefined value, as everywhere in
    summary.json)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _num(value)
    return value


def _bias(bias) -> dict | float | None:
    """An observation's bias factor: null (none), a number (fixed) or its distribution
    ``{kind, params}`` (with ``lower``/``upper`` where truncated)."""
    if bias is None:
        return None
    if isinstance(bias, (int, float)):
        return float(bias)
    out = {"kind": bias.kind, "params": plain(dict(bias.params))}
    for end in ("lower", "upper"):
        if math.isfinite(getattr(bias, end)):
            out[end] = float(getattr(bias, end))
    return out


def observation_block(o) -> dict:
    """One observation as summary.json writes it (version 1's keys first: ``flow`` is the
    series joined by "+"); ``dof`` is null for a Gaussian error."""
    return {"name": o.name, "flow": o.flow, "start": o.start, "end": o.end,
            "value": o.value, "sd": o.sd, "series": list(o.series), "stock": o.stock,
            "error": o.error, "dof": _num(o.dof), "bias": _bias(o.bias)}


#: each SMC posterior's tables, computed once (the parameter table runs the sampler):
#: id(posterior) -> (a weak reference to it, its blocks)
_POSTERIOR_BLOCKS: dict[int, tuple[weakref.ref, dict]] = {}


def posterior_blocks(cond) -> dict:
    """The SMC posterior's tables as plain data: ``smc`` (the tempering diagnostics of
    every run), ``posterior_parameters`` (:func:`mcsim.posterior.posterior_table`) and
    ``posterior_predictive`` (:func:`mcsim.posterior.observation_table`); computed once per
    posterior (summary.json, the CSVs, the plots and the text share them)."""
    post = cond.posterior
    key = id(post)
    hit = _POSTERIOR_BLOCKS.get(key)
    if hit is not None and hit[0]() is post:
        return copy.deepcopy(hit[1])
    from ..posterior import diagnostics, observation_table, posterior_table

    blocks = {"smc": plain(diagnostics(post)),
              "posterior_parameters": plain(posterior_table(cond.config, post)),
              "posterior_predictive": plain(observation_table(cond.config, post))}
    _POSTERIOR_BLOCKS[key] = (weakref.ref(post, lambda _, k=key: _POSTERIOR_BLOCKS.pop(k, None)),
                              blocks)
    return copy.deepcopy(blocks)


def _median_month(dist: MonthDistribution) -> int | None:
    return dist.quantiles[50.0][0]


#: what per_run_se says of a month median instead of a spread error
MONTH_RESOLUTION = "1 month"
MONTH_RESOLUTION_NOTE = (
    "month medians (repayment_p50, revenue_share_cap_reached_p50) are whole months, the "
    "grid's resolution, so no spread-of-runs error is given for them (runs whose medians "
    "fall in the same month would show an error of 0); their 95% interval is the pooled "
    "one, counting the event's own effective paths")


def per_run_block(cond) -> tuple[list[dict], dict]:
    """Each SMC run's own headline numbers (its particles forecast alone), and the Monte
    Carlo error of the pooled ones from their spread (sd / sqrt(runs)). A month median has
    none: it is a whole month (``month_resolution``, with ``note``), its interval the
    pooled one (from the event's own effective paths)."""
    from ..posterior import spread_error

    rows = []
    for k, r in enumerate(cond.run_results):
        T = r.grid.num_months
        rep, cap = _median_month(r.repayment), _median_month(r.cap_reached)
        rows.append({
            "run": k, "paths": r.num_paths,
            "cumulative_azure_spend_p50": _num(
                r.quantiles("cumulative_azure_spend", (50.0,)).value[T - 1, 0]),
            "repayment_p50": r.month_label(rep), "repayment_p50_label": _month_text(r.grid,
                                                                                    rep),
            "revenue_share_cap_reached_p50": r.month_label(cap),
            "revenue_share_cap_reached_p50_label": _month_text(r.grid, cap),
            "p_azure_commitment_met": 1.0 - r.commitment_met.censored})

    def spread(values) -> float | None:
        if len(values) < 2 or any(v is None for v in values):
            return None
        return _num(spread_error([np.float64(v) for v in values]))

    se = {"cumulative_azure_spend_p50": spread([r["cumulative_azure_spend_p50"]
                                                for r in rows]),
          "p_azure_commitment_met": spread([r["p_azure_commitment_met"] for r in rows]),
          "month_resolution": MONTH_RESOLUTION, "note": MONTH_RESOLUTION_NOTE}
    return rows, se


def _conditioned_block(results: Results, percentiles) -> dict:
    """The conditioned statistics and how they were made: ``conditioning_method``
    "importance" (the run's paths weighted; version 1's keys) or "smc" (tempered SMC runs,
    with their diagnostics, the posterior of every parameter, the posterior predictive
    check of every observation and each run's headline numbers)."""
    cond = results.conditioned
    smc = getattr(cond, "posterior", None) is not None
    obs = [observation_block(o) for o in results.config.observations]
    block = {
        "observations": obs,
        "paths": cond.num_paths,
        "reference_log_likelihood": None if smc else cond.reference_loglik,
        "effective_sample_size": cond.ess,
        "ess_fraction": cond.ess_fraction,
        "warning": cond.warning,
        "method": SMC_METHOD if smc else IMPORTANCE_METHOD,
        "conditioning_method": "smc" if smc else "importance",
    }
    if smc:
        rows, se = per_run_block(cond)
        blocks = posterior_blocks(cond)
        block.update({"particles": blocks["smc"]["particles"],
                      "runs": blocks["smc"]["runs"], **blocks,
                      "per_run": rows, "per_run_se": se})
    return {**block, **_statistics(cond, percentiles)}


def summarize(results: Results, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict:
    """Everything MODEL.md's "What every run reports" asks, as JSON-ready data; with
    observations, the same again conditioned on them (``"conditioned"``)."""
    grid = results.grid
    reduction = results.config.simulation.variance_reduction
    return {
        "schema": SCHEMA,
        "provenance": provenance(results),
        "grid": {"start": grid.label(0), "horizon": grid.label(grid.num_months - 1),
                 "months": grid.num_months},
        # the figures a run leads with (mcsim.report.headline): only an added key, every
        # other key as before
        "headline": plain(headline(results)),
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
            "money": MONEY,
            "repaid": REPAID,
            **{e.summary_key: e.reaches for e in results.layout.events
               if e.summary_key not in ("repayment", "credit_exhaustion")},
            **_v3_method(results),
            "stock_quantiles": "stocks are binned scaled into the money histogram's range "
                               "(x 1e6 for the GPU price, x 1e9 for the Azure share, "
                               "x 1e-6 for tokens); their bins are as fine in relative terms",
        },
        "paths": results.num_paths,
        "nonfinite_paths": results.accumulator.nonfinite_paths,
        "nonfinite": _nonfinite_block(results),
        **({"precision": results.precision} if results.precision else {}),
        "investment": results.config.deal.investment,
        **_v3_terms(results.config),
        **_statistics(results, percentiles),
        **({"facts": {"rule": "each public fact (calibration.md row in source), the "
                              "model's distribution of the same quantity over the run's "
                              "first paths, and the fact's percentile in it (its standard "
                              "error sqrt(q(1-q)/n)); firm facts are expected between the "
                              "25th and 75th percentiles, the others between the 5th and "
                              "95th",
                      "rows": results.facts}} if results.facts else {}),
        **({"conditioned": _conditioned_block(results, percentiles)}
           if results.conditioned is not None else {}),
    }
