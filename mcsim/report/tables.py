"""The report's CSV tables (:func:`write_tables`): cumulative Azure spend by month, annual
flows, the repayment and credit-exhaustion CDFs and the horizon totals, each quantile with
its 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import ANNUAL_FLOWS, HORIZON_TOTALS, STOCKS
from ..results import DEFAULT_PERCENTILES
from .format import _pkey, write_csv
from .summary import posterior_blocks

if TYPE_CHECKING:
    from ..results import QuantileTable, Results


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


def _by_year(results: Results, groups: Sequence[str], percentiles) -> list[list]:
    """One row per group and calendar year: name, year, mean, its error, the quantiles."""
    rows = []
    for name in groups:
        q = results.quantiles(name, percentiles)
        mean, se = results.mean(name)
        for y, label in enumerate(results.grid.year_labels()):
            rows.append([name, label, mean[y], se[y]] + _quantile_cells(q, y))
    return rows


def write_tables(results: Results, out: Path,
                 percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> None:
    """cumulative_azure_spend.csv, annual.csv, repayment_cdf.csv (every first-passage
    month), horizon_totals.csv, stocks.csv and (when computed) parameters.csv in ``out``;
    with an SMC posterior also posterior_parameters.csv, posterior_predictive.csv and
    smc_steps.csv (:func:`write_posterior_tables`)."""
    grid = results.grid
    q = results.quantiles("cumulative_azure_spend", percentiles)
    m, se = results.mean("cumulative_azure_spend")
    write_csv(out / "cumulative_azure_spend.csv",
              ["month", "mean", "mean_se"] + _quantile_columns(percentiles),
              [[grid.label(t), m[t], se[t]] + _quantile_cells(q, t)
               for t in range(grid.num_months)])
    write_csv(out / "annual.csv", ["flow", "year", "mean", "mean_se"]
              + _quantile_columns(percentiles), _by_year(results, ANNUAL_FLOWS, percentiles))
    rep, cred = results.repayment, results.credit_exhaustion
    cap, commit = results.cap_reached, results.commitment_met
    write_csv(out / "repayment_cdf.csv",
              ["month", "p_repaid_by", "p_repaid_by_se", "p_credits_exhausted_by",
               "p_credits_exhausted_by_se", "p_cap_reached_by", "p_cap_reached_by_se",
               "p_commitment_met_by", "p_commitment_met_by_se"],
              [[grid.label(t), rep.cdf[t], rep.cdf_se[t], cred.cdf[t], cred.cdf_se[t],
                cap.cdf[t], cap.cdf_se[t], commit.cdf[t], commit.cdf_se[t]]
               for t in range(grid.num_months)])
    write_csv(out / "stocks.csv", ["stock", "year_end", "mean", "mean_se"]
              + _quantile_columns(percentiles), _by_year(results, STOCKS, percentiles))
    if results.parameter_table:
        table = results.parameter_table
        columns = ["parameter"] + [k for k in next(iter(table["prior"].values()))]
        write_csv(out / "parameters.csv", ["weighting"] + columns,
                  [[which, name] + list(row.values())
                   for which in ("prior", "conditioned") if table.get(which)
                   for name, row in table[which].items()])
    hq = results.quantiles("horizon", percentiles)
    hm, hse = results.mean("horizon")
    write_csv(out / "horizon_totals.csv",
              ["statistic", "mean", "mean_se"] + _quantile_columns(percentiles),
              [[name, hm[i], hse[i]] + _quantile_cells(hq, i)
               for i, name in enumerate(HORIZON_TOTALS)])
    cond = results.conditioned
    if cond is not None and getattr(cond, "posterior", None) is not None:
        write_posterior_tables(posterior_blocks(cond), out)


#: smc_steps.csv's columns: one row per (SMC run, tempering step)
STEP_COLUMNS = ("run", "step", "temperature", "ess", "ess_over_particles",
                "distinct_after_resampling", "acceptance", "rho")


def write_posterior_tables(blocks: dict, out: Path) -> None:
    """An SMC posterior's tables (:func:`mcsim.report.summary.posterior_blocks`):
    posterior_parameters.csv (every drawn parameter and bias factor, prior vs posterior,
    sorted by the shift's size), posterior_predictive.csv (every observation) and
    smc_steps.csv (every run's tempering steps)."""
    for name, rows in (("posterior_parameters.csv", blocks["posterior_parameters"]),
                       ("posterior_predictive.csv", blocks["posterior_predictive"])):
        header = list(rows[0]) if rows else []
        write_csv(out / name, header, [[_cell(r[k]) for k in header] for r in rows])
    diag = blocks["smc"]
    n = diag["particles"]
    steps = []
    for run in diag["runs_detail"]:
        for k in range(run["steps"]):
            ess = run["ess"][k]
            steps.append([run["run"], k + 1, _cell(run["temperature"][k]), _cell(ess),
                          _cell(ess / n if ess is not None else None),
                          run["distinct_after_resampling"][k], _cell(run["acceptance"][k]),
                          _cell(run["rho"][k])])
    write_csv(out / "smc_steps.csv", list(STEP_COLUMNS), steps)


def _cell(v):
    """A CSV cell: null (undefined) as an empty cell, like a non-finite number."""
    return math.nan if v is None else v
